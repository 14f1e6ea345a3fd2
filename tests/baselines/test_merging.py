"""Merges of tiny experts through mergekit: exact end points, hand-computed cases, the shape error."""

import json
import math

import pytest
import torch

pytest.importorskip("mergekit")

from dllg.baselines.merging import merge_experts
from dllg.errors import DllgError
from dllg.experts.loading import load_expert
from dllg.tiny import tiny_expert


def state(source) -> dict[str, torch.Tensor]:
    return load_expert(str(source), device="cpu", dtype="float32").model.state_dict()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Three same-shape experts (width 32) saved once as HF folders, and their state dicts."""
    root = tmp_path_factory.mktemp("experts")
    out = {}
    for seed in (0, 4, 8):
        expert = tiny_expert(seed, hidden=32)
        expert.model.save_pretrained(root / str(seed))
        expert.tokenizer.save_pretrained(root / str(seed))
        out[seed] = (str(root / str(seed)), expert.model.state_dict())
    return out


def assert_same(merged: dict, expected: dict) -> None:
    assert merged.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(merged[name], tensor), name


def test_linear_at_weights_one_zero_is_the_first_model(tmp_path):
    out = merge_experts("linear", ["tiny:0", "tiny:4"], tmp_path / "m", weights=[1, 0])
    expert = load_expert(str(out), device="cpu", dtype="float32")  # a normal HF folder: loads as an expert
    assert expert.tokenizer.get_vocab() == tiny_expert(0).tokenizer.get_vocab()
    assert_same(expert.model.state_dict(), tiny_expert(0, hidden=32).model.state_dict())
    assert json.loads((out / "dllg-merge.json").read_text())["method"] == "linear"


@pytest.mark.parametrize(("t", "seed"), [(0.0, 0), (1.0, 4)])
def test_slerp_end_points_are_the_inputs(folders, tmp_path, t, seed):
    out = merge_experts("slerp", [folders[0][0], folders[4][0]], tmp_path / "m", t=t)
    assert_same(state(out), folders[seed][1])


def test_task_arithmetic_at_lambda_zero_is_the_base(folders, tmp_path):
    out = merge_experts(
        "task_arithmetic", [folders[4][0], folders[8][0]], tmp_path / "m", base=folders[0][0], lambda_=0.0
    )
    assert_same(state(out), folders[0][1])


def test_linear_and_task_arithmetic_match_hand_formulas(folders, tmp_path):
    a, b, base = folders[4][1], folders[8][1], folders[0][1]
    linear = state(merge_experts("linear", [folders[4][0], folders[8][0]], tmp_path / "l", weights=[1, 3]))
    arithmetic = state(
        merge_experts(
            "task_arithmetic", [folders[4][0], folders[8][0]], tmp_path / "t", base=folders[0][0], lambda_=0.5
        )
    )
    for name in base:
        torch.testing.assert_close(linear[name], (a[name] + 3 * b[name]) / 4)
        expected = base[name] + 0.5 * ((a[name] - base[name]) + (b[name] - base[name]))
        torch.testing.assert_close(arithmetic[name], expected)


def slerp_tensor(t: float, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Reference: spherical interpolation of the whole flattened tensor, linear when nearly parallel."""
    x, y = a.flatten().double(), b.flatten().double()
    cos = float(torch.dot(x / x.norm(), y / y.norm()).clamp(-1, 1))
    if abs(cos) > 0.9995:
        return ((1 - t) * a + t * b).float()
    theta = math.acos(cos)
    out = (math.sin((1 - t) * theta) * x + math.sin(t * theta) * y) / math.sin(theta)
    return out.reshape(a.shape).float()


def test_slerp_matches_hand_computed_case(folders, tmp_path):
    # The reference on a 2x2 case worked by hand: orthogonal unit-norm tensors meet halfway at sin(pi/4) each.
    a, b = torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(
        slerp_tensor(0.5, a, b), torch.tensor([[1.0, 0.0], [0.0, 1.0]]) * math.sqrt(0.5)
    )
    merged = state(merge_experts("slerp", [folders[0][0], folders[4][0]], tmp_path / "m", t=0.3))
    for name in ("model.layers.0.self_attn.q_proj.weight", "lm_head.weight", "model.norm.weight"):
        expected = slerp_tensor(0.3, folders[0][1][name], folders[4][1][name])
        torch.testing.assert_close(merged[name], expected, rtol=1e-4, atol=1e-5)


def test_different_shapes_give_a_clear_error(tmp_path):
    with pytest.raises(DllgError, match=r"cannot merge: shapes differ: lm_head\.weight is 320x32 in tiny:0"):
        merge_experts("linear", ["tiny:0", "tiny:1"], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_bad_options_are_clear(folders, tmp_path):
    two = [folders[0][0], folders[4][0]]
    with pytest.raises(DllgError, match="exactly two"):
        merge_experts("slerp", [*two, folders[8][0]], tmp_path / "m", t=0.5)
    with pytest.raises(DllgError, match="outside"):
        merge_experts("slerp", two, tmp_path / "m", t=1.5)
    with pytest.raises(DllgError, match="one weight per expert"):
        merge_experts("linear", two, tmp_path / "m", weights=[1.0])
    with pytest.raises(DllgError, match="needs the base"):
        merge_experts("task_arithmetic", two, tmp_path / "m")
    with pytest.raises(DllgError, match="unknown merge method"):
        merge_experts("ties", two, tmp_path / "m")
    with pytest.raises(DllgError, match="takes no option"):
        merge_experts("linear", two, tmp_path / "m", t=0.5)
