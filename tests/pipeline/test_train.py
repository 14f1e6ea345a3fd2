"""Features and training on tiny experts: the gate learns a prompt-dependent expert; runs resume exactly."""

import json

import pytest
import torch

from dllg.errors import DllgError
from dllg.gate import GateConfig, build_gate, load_gate
from dllg.pipeline.features import FeatureCache, FeatureExample, extract_features, pool_meta
from dllg.pipeline.train import GateExample, TrainConfig, evaluate, train_gate
from dllg.tiny import tiny_model, tiny_pool, tiny_tokenizer

CODE = ["def add(a, b):", "def f(x): return", "Write a Python function", "def reverse(s):"]
CHAT = ["Hello world! How are", "How are you today?", "I am fine, thank you.", "Hello there, friend"]


@pytest.fixture(scope="module")
def pool():
    return tiny_pool(dtype="fp32", device="cpu")


def synthetic(pool, repeat: int = 3) -> tuple[list[FeatureExample], dict[str, torch.Tensor]]:
    """Code prompts: expert 0 was right; chat prompts: expert 1. The response is the same text for all."""
    tok = pool.tokenizer
    response = tok(" The answer is 7.")["input_ids"]
    examples, labels = [], {}
    for r in range(repeat):
        for i, (code, chat) in enumerate(zip(CODE, CHAT, strict=True)):
            for kind, text, label in (("code", code, [1.0, 0.0]), ("chat", chat, [0.0, 1.0])):
                eid = f"{kind}-{i}-{r}"
                examples.append(FeatureExample(eid, tok(text + " " * r)["input_ids"], response))
                labels[eid] = torch.tensor(label)
    return examples, labels


def gate_examples(cache: FeatureCache, labels: dict[str, torch.Tensor], ids: list[str]) -> list[GateExample]:
    states = cache.load_all(ids)
    return [GateExample(i, states[i], labels[i]) for i in ids]


def features_split(pool, tmp_path) -> tuple[list[GateExample], list[GateExample], dict]:
    """The synthetic examples' features (cached under tmp_path), split into training and validation."""
    examples, labels = synthetic(pool)
    cache = extract_features(pool, examples, tmp_path / "features", batch_size=5)
    ids = [e.example_id for e in examples]
    val_ids = [i for i in ids if i.endswith("-2")]
    train = gate_examples(cache, labels, [i for i in ids if i not in val_ids])
    return train, gate_examples(cache, labels, val_ids), pool_meta(pool)


def test_gate_learns_which_expert_is_right_from_the_prompt(pool, tmp_path):
    train, val, meta = features_split(pool, tmp_path)
    gate = build_gate(
        GateConfig(variant="mlp", expert_names=meta["experts"], hidden_sizes=meta["hidden_sizes"])
    )
    before = evaluate(gate, val, 8)
    after = train_gate(
        gate, train, val, TrainConfig(steps=80, batch_size=8, lr=3e-3, eval_every=40), tmp_path / "run"
    )
    assert before["val_mse"] == pytest.approx(0.25, abs=1e-3)  # the zero-initialised head says 0.5 everywhere
    assert after["val_mse"] < 0.5 * before["val_mse"]
    assert after["val_top_correct"] == 1.0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 80 and log[-1]["loss"] < log[0]["loss"]
    reloaded = load_gate(tmp_path / "run" / "gate")
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(val[0].states and [s[None] for s in val[0].states]),
            gate.eval()([s[None] for s in val[0].states]),
        )


def test_bf16_training_learns_and_is_not_resumed_as_fp32(pool, tmp_path):
    """train.precision=bf16 runs the gate's forward under bf16 autocast (its weights come out bf16-rounded)
    and still learns; a bf16 run folder is another run than an fp32 one."""
    train, val, meta = features_split(pool, tmp_path)
    config = GateConfig(variant="mlp", expert_names=meta["experts"], hidden_sizes=meta["hidden_sizes"])
    gate = build_gate(config)
    seen = []
    gate.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    settings = {"steps": 80, "batch_size": 8, "lr": 3e-3, "eval_every": 40}
    after = train_gate(gate, train, val, TrainConfig(**settings, precision="bf16"), tmp_path / "run")
    assert set(seen) == {torch.bfloat16}
    assert after["val_mse"] < 0.125 and after["val_top_correct"] == 1.0
    with pytest.raises(DllgError, match="trained with other train settings"):
        train_gate(build_gate(config), train, val, TrainConfig(**settings), tmp_path / "run")


def test_interrupted_training_resumes_to_the_same_gate(pool, tmp_path):
    examples, labels = synthetic(pool, repeat=1)
    cache = extract_features(pool, examples, tmp_path / "features")
    data = gate_examples(cache, labels, [e.example_id for e in examples])
    aux = tmp_path / "aux"
    tiny_model(3, vocab_rows=16, hidden=32).save_pretrained(aux)
    meta = pool_meta(pool)

    def fresh_gate():
        torch.manual_seed(0)
        return build_gate(
            GateConfig(
                variant="lowrank_aux_lm",
                expert_names=meta["experts"],
                hidden_sizes=meta["hidden_sizes"],
                aux_model=str(aux),
                proj_rank=4,
                lora_rank=2,
                head_hidden=8,
            )
        )

    config = TrainConfig(steps=12, batch_size=4, lr=1e-3, checkpoint_every=4, log_every=1, eval_every=6)
    straight = fresh_gate()
    train_gate(straight, data, data[:4], config, tmp_path / "straight")

    def kill_at_7(step: int, loss: float) -> None:
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_gate(fresh_gate(), data, data[:4], config, tmp_path / "resumed", on_step=kill_at_7)
    resumed = fresh_gate()
    train_gate(resumed, data, data[:4], config, tmp_path / "resumed")
    for (name, a), (_, b) in zip(
        straight.trainable_state_dict().items(), resumed.trainable_state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)
    steps = [
        json.loads(line)["step"] for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()
    ]
    assert steps == list(range(1, 13))


def test_feature_cache_resumes_and_refuses_other_experts(pool, tmp_path):
    examples, _ = synthetic(pool, repeat=1)
    folder = tmp_path / "features"
    extract_features(pool, examples[:6], folder, batch_size=3)
    index = folder / "index.jsonl"
    lines = index.read_text().splitlines()
    index.write_text("\n".join(lines[:4]) + '\n{"id": "cut-by-a-ki')  # a kill mid-line, two examples lost
    cache = extract_features(pool, examples, folder, batch_size=3)
    ids = [json.loads(line)["id"] for line in index.read_text().splitlines() if line.endswith("}")]
    assert sorted(ids) == sorted(e.example_id for e in examples) and len(cache) == len(examples)
    other = tiny_pool(dtype="fp32", device="cpu", count=3)
    with pytest.raises(DllgError, match="made with other experts"):
        extract_features(other, examples, folder)


def test_feature_cache_refuses_an_expert_retrained_under_the_same_name(tmp_path):
    """Same names, sizes and vocabulary, other weights: reusing the states would train on stale features."""
    from dllg.experts import ExpertPool
    from dllg.experts.loading import load_expert
    from dllg.tiny import tiny_expert, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    folders = []
    for seed in (0, 1):
        folder = tmp_path / f"expert-{seed}"
        tiny_expert(seed, tokenizer=tokenizer).model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders.append(str(folder))

    def local_pool() -> ExpertPool:
        return ExpertPool([load_expert(f, device="cpu", dtype="float32") for f in folders])

    examples, _ = synthetic(local_pool(), repeat=1)
    cache_dir = tmp_path / "features"
    extract_features(local_pool(), examples[:3], cache_dir)
    assert len(extract_features(local_pool(), examples[:3], cache_dir)) == 3  # unchanged files: reused
    tiny_expert(2, tokenizer=tokenizer).model.save_pretrained(folders[1])  # "retrained" in place
    with pytest.raises(DllgError, match="an expert's files changed since"):
        extract_features(local_pool(), examples, cache_dir)


def test_nan_features_stop_training_with_a_clear_error(pool, tmp_path):
    meta = pool_meta(pool)
    gate = build_gate(
        GateConfig(variant="mlp", expert_names=meta["experts"], hidden_sizes=meta["hidden_sizes"])
    )
    bad = GateExample(
        "x", [torch.full((3, d), float("nan")) for d in meta["hidden_sizes"]], torch.tensor([1.0, 0])
    )
    with pytest.raises(DllgError, match="loss became nan at step 1"):
        train_gate(gate, [bad], [], TrainConfig(steps=3, batch_size=1), tmp_path)
    assert not (tmp_path / "gate").exists()


def test_tokenizer_fingerprint_differs():
    from dllg.pipeline.features import vocab_fingerprint

    assert vocab_fingerprint(tiny_tokenizer()) != vocab_fingerprint(tiny_tokenizer(extra_special="<|x|>"))


def test_loss_is_eq5_by_default_and_pooled_on_request():
    """Eq. 5 averages each response over its own tokens first: a 1-token response weighs as much as a
    3-token one. Pooled averaging lets the long one dominate."""
    from dllg.pipeline.train import masked_mse

    weights = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    labels = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    # response 0: one token, error 1 on one of 2 experts -> 0.5; response 1: every error 1 -> 1.0
    assert masked_mse(weights, mask, labels).item() == pytest.approx((0.5 + 1.0) / 2)
    assert masked_mse(weights, mask, labels, "pooled").item() == pytest.approx((1 + 6) / (4 * 2))
    assert TrainConfig().loss == "per_response"


def test_resume_refuses_a_checkpoint_that_does_not_fit_the_gate(pool, tmp_path):
    from safetensors.torch import load_file, save_file

    examples, labels = synthetic(pool, repeat=1)
    cache = extract_features(pool, examples, tmp_path / "features")
    data = gate_examples(cache, labels, [e.example_id for e in examples])
    meta = pool_meta(pool)

    def gate():
        return build_gate(
            GateConfig(variant="mlp", expert_names=meta["experts"], hidden_sizes=meta["hidden_sizes"])
        )

    config = TrainConfig(steps=4, batch_size=4, checkpoint_every=2)
    train_gate(gate(), data, [], config, tmp_path / "run")
    weights = tmp_path / "run" / "checkpoints" / "step-000004" / "gate.safetensors"
    tensors = load_file(str(weights))
    dropped = sorted(tensors)[0]
    save_file({k: v for k, v in tensors.items() if k != dropped}, str(weights))
    with pytest.raises(DllgError, match=f"does not fit its config \\(missing \\['{dropped}'\\]"):
        train_gate(gate(), data, [], config.model_copy(update={"steps": 6}), tmp_path / "run")


@pytest.mark.parametrize("form", ["per_response", "pooled"])
def test_micro_batches_of_similar_length_give_the_same_loss_and_gradient(tmp_path, form):
    """train.micro_batch sorts a step's answers by length and accumulates the gradient group by group: less
    padding, the same loss and gradient as the whole batch at once (up to float rounding)."""
    from dllg.pipeline.train import accumulate_step, collate, length_groups, masked_mse

    generator = torch.Generator().manual_seed(0)
    data = [
        GateExample(
            f"e{i}",
            [torch.randn(length, 8, generator=generator), torch.randn(length, 12, generator=generator)],
            torch.tensor([float(i % 2), float(i % 3 == 0)]),
        )
        for i, length in enumerate([3, 40, 7, 25, 2, 31, 11, 5])
    ]
    groups = length_groups(data, 3)
    assert [len(g) for g in groups] == [3, 3, 2]
    assert [e.states[0].shape[0] for e in groups[0]] == [2, 3, 5]  # the shortest together
    torch.manual_seed(0)
    gate = build_gate(GateConfig(variant="cross_attn", expert_names=["a", "b"], hidden_sizes=[8, 12]))
    torch.nn.init.normal_(gate.score.weight)  # zero-initialised: no gradient would reach the layers below
    states, mask, labels = collate(data)
    whole = masked_mse(gate(states, mask.long()).float(), mask, labels, form)
    whole.backward()
    expected = {n: p.grad.clone() for n, p in gate.named_parameters()}
    gate.zero_grad()
    loss = accumulate_step(gate, data, TrainConfig(batch_size=8, loss=form, micro_batch=3))
    assert loss == pytest.approx(whole.item(), rel=1e-5)
    for name, parameter in gate.named_parameters():
        torch.testing.assert_close(parameter.grad, expected[name], atol=1e-6, rtol=1e-4, msg=name)
    # micro_batch changes no step's result: a run resumes under another value
    config = TrainConfig(steps=2, batch_size=4, checkpoint_every=1, micro_batch=2)
    train_gate(gate, data, [], config, tmp_path / "run")
    train_gate(gate, data, [], config.model_copy(update={"steps": 3, "micro_batch": None}), tmp_path / "run")
