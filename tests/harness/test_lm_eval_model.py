"""The lm-eval model `dllg` request by request: log-likelihoods against the experts read directly with
transformers, rolling windows, and generation against the one decode loop."""

import pytest
import torch
from harness_reference import hf_logits, token_logprobs  # tests/harness/harness_reference.py
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from dllg.decode import GenerationConfig, generate
from dllg.errors import DllgError
from dllg.harness import DllgLM

TEXT = "Hello world! How are you today? I am fine, thank you. The answer is 42."


def make_lm(folders: list[str], args: str, batch_size: int = 2) -> DllgLM:
    """Built as lm-eval builds it: by name from the registry, from a model_args string."""
    experts = "+".join(folders)
    return get_model("dllg").create_from_arg_string(
        f"experts={experts},dtype=fp32,device=cpu,{args}", {"batch_size": batch_size}
    )


def loglikelihood_request(context: str, continuation: str) -> Instance:
    return Instance("loglikelihood", {}, (context, continuation), 0)


@pytest.mark.parametrize("expert", [0, 1])
def test_single_rule_loglikelihood_equals_the_expert_alone(folders, hf_models, expert):
    lm = make_lm(folders, f"fusion=single,expert={expert}")
    pairs = [("def add(a, b):", "\n    return a + b"), ("The answer is", " 42"), ("", "Hello world")]
    got = lm.loglikelihood([loglikelihood_request(c, t) for c, t in pairs])
    tok = lm.tokenizer
    for (context, continuation), (logprob, greedy) in zip(pairs, got, strict=True):
        # an empty context is the prefix token (EOS: the tiny tokenizer has no BOS), as lm-eval's HF model
        start = tok(context)["input_ids"] if context else [tok.eos_token_id]
        ids = (
            start + tok(continuation)["input_ids"]
            if not context
            else tok(context + continuation)["input_ids"]
        )
        logprobs = torch.log_softmax(hf_logits(hf_models[expert], ids), -1)
        assert logprob == pytest.approx(float(token_logprobs(logprobs, ids, len(start)).sum()), abs=1e-4)
        assert greedy == all(int(logprobs[i - 1].argmax()) == ids[i] for i in range(len(start), len(ids)))


def test_uniform_loglikelihood_equals_the_mean_of_the_experts_probabilities(folders, hf_models):
    lm = make_lm(folders, "fusion=uniform")
    [(logprob, _)] = lm.loglikelihood([loglikelihood_request("The answer is", " 42.")])
    context = lm.tokenizer("The answer is")["input_ids"]
    ids = lm.tokenizer("The answer is 42.")["input_ids"]
    p0, p1 = (torch.softmax(hf_logits(m, ids), -1) for m in hf_models)
    by_hand = token_logprobs(torch.log((p0 + p1) / 2), ids, len(context)).sum()
    assert logprob == pytest.approx(float(by_hand), abs=1e-4)


def test_rolling_loglikelihood_is_the_sum_over_tokens(folders, hf_models):
    """One window: every token given all before it (after the prefix token). Short windows: lm-eval's
    disjoint windows, each token predicted once, from the window's context."""
    request = Instance("loglikelihood_rolling", {}, (TEXT,), 0)
    whole = make_lm(folders, "fusion=single,expert=1,max_length=512")
    tokens = whole.tokenizer(TEXT)["input_ids"]
    ids = [whole.tokenizer.eos_token_id, *tokens]
    logprobs = torch.log_softmax(hf_logits(hf_models[1], ids), -1)
    [total] = whole.loglikelihood_rolling([request])
    assert total == pytest.approx(float(token_logprobs(logprobs, ids, 1).sum()), abs=1e-4)

    short = make_lm(folders, "fusion=single,expert=1,max_length=8", batch_size=3)
    windows = [make_disjoint_window(w) for w in get_rolling_token_windows(tokens, ids[0], 8, 1)]
    assert len(windows) > 2 and sum(len(w[1]) for w in windows) == len(tokens)
    by_window = 0.0
    for context, predicted in windows:
        seq = context + predicted
        by_window += float(
            token_logprobs(torch.log_softmax(hf_logits(hf_models[1], seq), -1), seq, len(context)).sum()
        )
    [total_short, empty] = short.loglikelihood_rolling(
        [request, Instance("loglikelihood_rolling", {}, ("",), 1)]
    )
    assert total_short == pytest.approx(by_window, abs=1e-4)
    assert total_short != pytest.approx(total, abs=1e-3)  # shorter contexts really were used
    assert empty == 0.0


def test_generate_until_is_the_decode_loop_cut_at_the_stop_string(folders):
    lm = make_lm(folders, "fusion=uniform")
    prompt = "def add(a, b):"
    ids = lm.tok_encode(prompt)
    free = generate(lm.pool, lm.rule, [ids], GenerationConfig(max_new_tokens=12))[0].text
    stop = free[len(free) // 2 :][:2]  # a string the free generation certainly reaches
    assert stop and stop in free
    requests = [
        Instance(
            "generate_until", {}, (prompt, {"until": [stop], "max_gen_toks": 12, "do_sample": False}), 0
        ),
        Instance("generate_until", {}, (prompt, {"until": ["\x00"], "max_gen_toks": 12}), 1),
        Instance("generate_until", {}, ("Hello", {"until": stop, "max_gen_toks": 5}), 2),
    ]
    stopped, unstopped, other = lm.generate_until(requests)
    expected = generate(lm.pool, lm.rule, [ids], GenerationConfig(max_new_tokens=12, stop=(stop,)))[0].text
    assert stopped == expected == free[: free.index(stop)]
    assert unstopped == free
    alone = generate(
        lm.pool, lm.rule, [lm.tok_encode("Hello")], GenerationConfig(max_new_tokens=5, stop=(stop,))
    )
    assert other == alone[0].text


def test_a_run_config_names_the_experts(folders, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "experts:\n" + "".join(f"  - name: {f}\n    dtype: fp32\n    device: cpu\n" for f in folders)
    )
    lm = get_model("dllg").create_from_arg_string(f"config={config},fusion=single,expert=1", {})
    assert lm.pool.names == make_lm(folders, "fusion=uniform").pool.names
    assert lm.rule.name == "single"
    # rule dllg without gate= reads the gate `dllg train` writes for the config (none was trained here)
    with pytest.raises(DllgError, match=r"runs/gate/gate is not a gate checkpoint"):
        get_model("dllg").create_from_arg_string(f"config={config},fusion=dllg", {})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("", "either config=RUN.yaml or experts=A\\+B"),
        ("experts=a,config=b.yaml", "either config=RUN.yaml or experts=A\\+B"),
        ("experts=tiny:0,fusion=dllg", "needs a trained gate"),
        ("experts=tiny:0,batch_size=auto", "no 'auto'"),
        ("experts=tiny:0+tiny:1,fusion=static,weights=1", "got 1 weights for 2 experts"),
        ("experts=tiny:0,fusion=nope", "unknown fusion rule 'nope'"),
    ],
)
def test_bad_model_args_are_one_line_errors(args, message):
    with pytest.raises(DllgError, match=message):
        get_model("dllg").create_from_arg_string(args, {})


def test_unsupported_generation_kwargs_are_refused(folders):
    lm = make_lm(folders, "fusion=uniform")
    with pytest.raises(DllgError, match="num_beams are not supported"):
        lm.generate_until([Instance("generate_until", {}, ("Hi", {"num_beams": 4}), 0)])
