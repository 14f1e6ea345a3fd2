"""router:FOLDER and merge:METHOD as evaluation methods: each generates with what it picked or merged."""

import pytest
import torch

import dllg.baselines.methods as methods_module
from dllg.baselines.routing import RouterTrainConfig, fit_router, make_encoder
from dllg.decode import GenerationConfig, generate
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.experts.loading import load_expert
from dllg.fusion import make_rule
from dllg.jsonl import read_records
from dllg.pipeline.evaluate import EvalTask, evaluate
from dllg.pipeline.methods import EvalItem, encode_items, make_method
from dllg.tasks.base import Example, user
from dllg.verify.base import Reference

CONFIG = GenerationConfig(max_new_tokens=5, min_new_tokens=5)


def items(texts: list[str]) -> list[EvalItem]:
    return [
        EvalItem("t", "test", Example(f"t/{i}", user(t), Reference(answer="1"), "math"))
        for i, t in enumerate(texts)
    ]


def pool_of(*names: str) -> ExpertPool:
    return ExpertPool([load_expert(n, device="cpu", dtype="float32") for n in names])


CODE = [f"def add_{i}(a, b): return a + b" for i in range(12)]
CHAT = [f"Hello world! How are you today, friend {i}?" for i in range(12)]


@pytest.fixture(scope="module")
def pool():
    return pool_of("tiny:0", "tiny:1")


@pytest.fixture(scope="module")
def router_dir(pool, tmp_path_factory):
    """A router that sends code to tiny:0 and chat to tiny:1."""
    labels = torch.tensor([[1.0, 0.0]] * 12 + [[0.0, 1.0]] * 12)
    encoder = make_encoder("expert-mean", expert="tiny:0")
    router = fit_router(
        CODE + CHAT, labels, torch.ones_like(labels), pool.names, encoder, RouterTrainConfig(steps=80)
    )
    return str(router.save(tmp_path_factory.mktemp("router") / "router"))


def test_router_method_generates_with_the_expert_it_routes_to(pool, router_dir):
    method = make_method(f"router:{router_dir}")
    method.prepare(pool)
    batch = items([CODE[0], CHAT[0], CODE[1]])
    outputs = method.run(pool, batch, CONFIG, {})
    assert [o.extra["routed_to"] for o in outputs] == ["tiny:0", "tiny:1", "tiny:0"]
    for item, output in zip(batch, outputs, strict=True):
        expert = pool.names.index(output.extra["routed_to"])
        alone = generate(pool, make_rule("single", expert=expert), encode_items(pool, [item]), CONFIG)[0]
        assert output.response == alone.text and output.weights is None


def no_generation(*args, **kwargs):
    raise AssertionError("the router generated although its experts' answers were recorded")


def test_router_reuses_the_recorded_answers_of_its_experts(pool, router_dir, monkeypatch):
    batch = items([CODE[0], CHAT[0], CODE[1]])
    # the experts under either of their method names: by name, or by position in the pool
    done = {
        (method, item.task, item.split, item.example.id): {
            "method": method,
            "response": f"{method} answers {item.example.id}",
            "tokens": 3,
            "finish": finish,
        }
        for item in batch
        for method, finish in (("expert:tiny:0", "eos"), ("expert:1", "length"))
    }
    monkeypatch.setattr(methods_module, "generate", no_generation)
    method = make_method(f"router:{router_dir}")
    method.prepare(pool)
    outputs = method.run(pool, batch, CONFIG, done)
    assert [(o.response, o.finish, o.extra) for o in outputs] == [
        ("expert:tiny:0 answers t/0", "eos", {"routed_to": "tiny:0", "answer_from": "expert:tiny:0"}),
        ("expert:1 answers t/1", "length", {"routed_to": "tiny:1", "answer_from": "expert:1"}),
        ("expert:tiny:0 answers t/2", "eos", {"routed_to": "tiny:0", "answer_from": "expert:tiny:0"}),
    ]


def test_router_generates_only_what_its_experts_have_not_answered(pool, router_dir, monkeypatch):
    batch = items([CODE[0], CHAT[0], CODE[1], CHAT[1]])
    done = {
        ("expert:tiny:0", i.task, i.split, i.example.id): {"response": "kept", "tokens": 1, "finish": "eos"}
        for i in batch
    }
    generated: list[int] = []

    def counting(pool, rule, prompts, config):
        generated.append(len(prompts))
        return generate(pool, rule, prompts, config)

    monkeypatch.setattr(methods_module, "generate", counting)
    method = make_method(f"router:{router_dir}")
    method.prepare(pool)
    outputs = method.run(pool, batch, CONFIG, done)
    assert generated == [2]  # the two chat prompts, routed to tiny:1, which has no records
    for item, output in zip(batch, outputs, strict=True):
        if output.extra["routed_to"] == "tiny:0":
            assert output.response == "kept"
            continue
        alone = generate(pool, make_rule("single", expert=1), encode_items(pool, [item]), CONFIG)[0]
        assert output.response == alone.text and "answer_from" not in output.extra


def test_evaluated_router_records_are_its_experts_records_verified_again(
    pool, router_dir, tmp_path, monkeypatch
):
    examples = [
        Example(f"t/{i}", user(text), Reference(answer=answer), "math")
        for i, (text, answer) in enumerate([(CODE[2], "1"), (CHAT[2], "2"), (CODE[3], "3")])
    ]
    task = EvalTask("t", "test", examples)
    out = tmp_path / "records.jsonl"
    evaluate(pool, ["expert:tiny:0", "expert:tiny:1"], [task], out, CONFIG)
    monkeypatch.setattr(methods_module, "generate", no_generation)
    router = f"router:{router_dir}"
    counts = evaluate(pool, [router], [task], out, CONFIG)
    assert counts["generated"] == 3 and counts["skipped"] == 0
    by_key = {(r["method"], r["example_id"]): r for r in read_records(out)}
    routed = sorted(by_key[(router, e.id)]["routed_to"] for e in examples)
    assert routed == ["tiny:0", "tiny:0", "tiny:1"]
    for example in examples:
        mine = by_key[(router, example.id)]
        theirs = by_key[(f"expert:{mine['routed_to']}", example.id)]
        fields = ("response", "tokens", "finish", "verdict", "reason", "correct", "generation", "experts")
        assert {f: mine[f] for f in fields} == {f: theirs[f] for f in fields}
        assert mine["answer_from"] == theirs["method"] and "method_weights" in mine


def test_router_for_other_experts_is_refused(pool, tmp_path):
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    encoder = make_encoder("expert-mean", expert="tiny:0")
    fit_router(
        ["a", "b"], labels, torch.ones_like(labels), ["x", "y"], encoder, RouterTrainConfig(steps=2)
    ).save(tmp_path / "r")
    with pytest.raises(DllgError, match="trained for experts"):
        make_method(f"router:{tmp_path / 'r'}").prepare(pool)


def test_merge_method_merges_the_pool_once_and_generates_with_the_merge(tmp_path, monkeypatch):
    pytest.importorskip("mergekit")
    monkeypatch.setenv("DLLG_CACHE", str(tmp_path))
    pool = pool_of("tiny:0", "tiny:4")  # same width: mergeable
    method = make_method("merge:linear")
    method.prepare(pool)
    [folder] = list((tmp_path / "merges").iterdir())
    merged = pool_of(str(folder))
    for name, tensor in merged[0].model.state_dict().items():
        expected = (pool[0].model.state_dict()[name] + pool[1].model.state_dict()[name]) / 2
        torch.testing.assert_close(tensor, expected, msg=name)
    batch = items(["What is 3 + 4?"])
    output = method.run(pool, batch, CONFIG, {})[0]
    assert (
        output.response == generate(merged, make_rule("single"), encode_items(merged, batch), CONFIG)[0].text
    )
    with pytest.raises(DllgError, match=r"needs the experts' base, write merge:task_arithmetic@BASE"):
        make_method("merge:task_arithmetic").prepare(pool)
    with pytest.raises(DllgError, match="linear takes no base"):
        make_method("merge:linear@tiny:0").prepare(pool)
    with pytest.raises(DllgError, match="give a merged folder"):
        make_method("merge:ties").prepare(pool)


def test_task_arithmetic_method_adds_the_task_vectors_to_the_base(tmp_path, monkeypatch):
    """base + (e0 - base) + (e1 - base): with base = e0 that is e1 exactly, whatever the weights are."""
    pytest.importorskip("mergekit")
    monkeypatch.setenv("DLLG_CACHE", str(tmp_path))
    pool = pool_of("tiny:0", "tiny:4")
    make_method("merge:task_arithmetic@tiny:0").prepare(pool)
    [folder] = list((tmp_path / "merges").iterdir())
    assert folder.name.startswith("task_arithmetic-")
    merged = pool_of(str(folder))[0].model.state_dict()
    for name, tensor in pool[1].model.state_dict().items():
        torch.testing.assert_close(merged[name], tensor, msg=name)


def test_route_train_reads_experts_and_labels_from_a_run_config(tmp_path):
    import json

    from typer.testing import CliRunner

    from dllg.cli.main import app

    table = tmp_path / "labels.jsonl"
    rows = [(f"a{i}", f"def f_{i}(x): return x", [1, 0]) for i in range(6)]
    rows += [(f"b{i}", f"Hello there friend {i}, how are you?", [0, 1]) for i in range(6)]
    records = [
        {"example_id": eid, "prompt": text, "expert": expert, "label": label}
        for eid, text, labels in rows
        for expert, label in zip(["tiny:0", "tiny:1"], labels, strict=True)
    ]
    table.write_text("".join(json.dumps(r) + "\n" for r in records))
    config = tmp_path / "run.yaml"
    config.write_text(f"experts: [{{name: 'tiny:0'}}, {{name: 'tiny:1'}}]\ncollect: {{out: '{table}'}}\n")
    result = CliRunner().invoke(
        app, ["route", "train", "--config", str(config), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r" / "router.json").read_text())["experts"] == ["tiny:0", "tiny:1"]
