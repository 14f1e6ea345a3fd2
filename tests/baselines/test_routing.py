"""Routers on tiny experts: a separable synthetic assignment, save/load, and the label-table path."""

import json

import pytest
import torch

from dllg.baselines.routing import (
    RouterTrainConfig,
    fit_router,
    load_router,
    make_encoder,
    train_router_from_table,
)
from dllg.errors import DllgError


def kind_a(i: int) -> str:
    return f"def add_{i}(a, b):\n    return a + b + {i}"


def kind_b(i: int) -> str:
    return f"Hello world! How are you today, friend number {i}? I am fine, thank you."


@pytest.fixture(scope="module")
def encoder():
    return make_encoder("expert-mean", expert="tiny:0")


@pytest.fixture(scope="module")
def data():
    """Expert 0 is right on kind A and wrong on B; expert 1 the other way round."""
    train = [kind_a(i) for i in range(0, 40, 2)] + [kind_b(i) for i in range(0, 40, 2)]
    held_out = [kind_a(i) for i in range(41, 81, 2)] + [kind_b(i) for i in range(41, 81, 2)]
    truth = [0] * 20 + [1] * 20
    labels = torch.tensor([[1.0, 0.0] if t == 0 else [0.0, 1.0] for t in truth])
    return train, held_out, truth, labels


@pytest.mark.parametrize("kind", ["embedllm", "routerdc"])
def test_router_learns_separable_assignment_and_round_trips(kind, encoder, data, tmp_path):
    train, held_out, truth, labels = data
    config = RouterTrainConfig(kind=kind, steps=100)
    router = fit_router(train, labels, torch.ones_like(labels), ["tiny:0", "tiny:1"], encoder, config)
    chosen = router.choose(held_out)
    accuracy = sum(c == t for c, t in zip(chosen, truth, strict=True)) / len(truth)
    assert accuracy >= 0.9, (kind, chosen)

    router.save(tmp_path / "r")
    again = load_router(tmp_path / "r")  # rebuilds the encoder from its spec (tiny:0 is deterministic)
    assert again.experts == ["tiny:0", "tiny:1"]
    assert again.choose(held_out) == chosen
    embeddings = encoder.encode(held_out[:4])
    with torch.no_grad():
        assert torch.allclose(again.head.scores(embeddings), router.head.scores(embeddings), atol=1e-6)


def test_train_from_label_table_with_prompt_fields(encoder, data, tmp_path):
    train, _, truth, _ = data
    table = tmp_path / "labels.jsonl"
    unsolved = set(range(0, len(train), 5))  # no expert answered these: the oracle cannot reach 1
    records = [
        {
            "example_id": f"ex{n}",
            "task": "",
            "expert": name,
            "label": int(t == k and n not in unsolved),
            "prompt": prompt,
        }
        for n, (prompt, t) in enumerate(zip(train, truth, strict=True))
        for k, name in enumerate(["tiny:0", "tiny:1"])
    ]
    table.write_text("".join(json.dumps(r) + "\n" for r in records))
    _, metrics = train_router_from_table(
        table, ["tiny:0", "tiny:1"], encoder, RouterTrainConfig(kind="routerdc", steps=60), tmp_path / "out"
    )
    solved = [n for n in range(len(train)) if n not in unsolved]
    by_expert = [sum(truth[n] == k for n in solved) / len(train) for k in (0, 1)]
    assert metrics["oracle"] == pytest.approx(len(solved) / len(train))
    assert metrics["best_single"] == pytest.approx(max(by_expert))
    assert metrics["best_single"] < metrics["routed"] <= metrics["oracle"]
    assert (tmp_path / "out" / "router.safetensors").is_file()
    with pytest.raises(DllgError, match="no labels"):
        train_router_from_table(table, ["tiny:0", "tiny:7"], encoder, RouterTrainConfig(), tmp_path / "x")


def test_unknown_kind_and_encoder_are_clear(encoder):
    with pytest.raises(DllgError, match="unknown router kind"):
        fit_router(
            ["a"], torch.ones(1, 2), torch.ones(1, 2), ["a", "b"], encoder, RouterTrainConfig(kind="knn")
        )
    with pytest.raises(DllgError, match="unknown prompt encoder"):
        make_encoder("bert")
