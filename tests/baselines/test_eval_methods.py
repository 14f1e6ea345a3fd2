"""router:FOLDER and merge:METHOD as evaluation methods: each generates with what it picked or merged."""

import pytest
import torch

from dllg.baselines.routing import RouterTrainConfig, fit_router, make_encoder
from dllg.decode import GenerationConfig, generate
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.experts.loading import load_expert
from dllg.fusion import make_rule
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


def test_router_method_generates_with_the_expert_it_routes_to(tmp_path):
    pool = pool_of("tiny:0", "tiny:1")
    code = [f"def add_{i}(a, b): return a + b" for i in range(12)]
    chat = [f"Hello world! How are you today, friend {i}?" for i in range(12)]
    labels = torch.tensor([[1.0, 0.0]] * 12 + [[0.0, 1.0]] * 12)
    encoder = make_encoder("expert-mean", expert="tiny:0")
    router = fit_router(
        code + chat, labels, torch.ones_like(labels), pool.names, encoder, RouterTrainConfig(steps=80)
    )
    router.save(tmp_path / "router")
    method = make_method(f"router:{tmp_path / 'router'}")
    method.prepare(pool)
    batch = items([code[0], chat[0], code[1]])
    outputs = method.run(pool, batch, CONFIG, {})
    assert [o.extra["routed_to"] for o in outputs] == ["tiny:0", "tiny:1", "tiny:0"]
    for item, output in zip(batch, outputs, strict=True):
        expert = pool.names.index(output.extra["routed_to"])
        alone = generate(pool, make_rule("single", expert=expert), encode_items(pool, [item]), CONFIG)[0]
        assert output.response == alone.text and output.weights is None


def test_router_for_other_experts_is_refused(tmp_path):
    pool = pool_of("tiny:0", "tiny:1")
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
