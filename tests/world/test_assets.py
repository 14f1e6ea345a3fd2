"""The world's shipped models (`world:NAME`): they resolve, load together, and are the trained ones."""

import shutil

import pytest
import torch

import dllg.world.assets as assets
from dllg.baselines.routing import load_router
from dllg.decode import GenerationConfig, generate
from dllg.decode.prompts import encode_prompt
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.experts.loading import load_expert
from dllg.fusion import make_rule
from dllg.jsonl import read_records
from dllg.pipeline.evaluate import EvalTask, evaluate
from dllg.sources import resolve_source
from dllg.tasks.scoring import verify_responses
from dllg.world.tasks import WORLD_TASKS

EXPERTS = ("world:arith", "world:code")
SAMPLE = 20  # held-out problems per family


@pytest.fixture(scope="module")
def pool() -> ExpertPool:
    return ExpertPool([load_expert(name, device="cpu", dtype="float32") for name in EXPERTS])


def test_world_names_resolve_to_the_shipped_folders():
    source = resolve_source("world:arith")
    assert source.kind == "packaged" and source.name == "world:arith"
    assert (assets.ASSETS_DIR / "arith" / "config.json").samefile(f"{source.path}/config.json")


@pytest.mark.parametrize("name", ["world:nope", "world:../arith", "world:"])
def test_unknown_world_names_are_refused_with_the_shipped_list(name):
    with pytest.raises(DllgError, match=r"no shipped world asset .*world:arith.*build_world"):
        resolve_source(name)


def _accuracy(pool: ExpertPool, expert: int, family: str, tag: str | None = None) -> float:
    examples = WORLD_TASKS[family].load("test", limit=100 if tag else SAMPLE)
    examples = [e for e in examples if tag is None or tag in e.metadata["tags"]][:SAMPLE]
    prompts = [encode_prompt(pool.tokenizer, e.messages) for e in examples]
    with torch.no_grad():
        out = generate(pool, make_rule("single", expert=expert), prompts, GenerationConfig(max_new_tokens=96))
    verdicts = verify_responses(examples, [g.text for g in out])
    return sum(v.passed for v in verdicts) / len(verdicts)


def test_each_shipped_expert_has_its_skill_and_not_the_others(pool):
    """Trained weights, loaded with the tokenizer they were trained with: random or mis-tokenized
    experts score ~0 on their own family. Each knows only the other's easy cases (a quarter or less)."""
    assert _accuracy(pool, 0, "arith") >= 0.6 and _accuracy(pool, 0, "code") <= 0.4
    assert _accuracy(pool, 1, "code") >= 0.6 and _accuracy(pool, 1, "arith") <= 0.4
    assert max(_accuracy(pool, 0, "mixed", "needs-both"), _accuracy(pool, 1, "mixed", "needs-both")) <= 0.2


def test_the_shipped_gate_and_routers_fit_the_shipped_experts(pool):
    example = WORLD_TASKS["mixed"].load("test", limit=1)[0]
    prompt = encode_prompt(pool.tokenizer, example.messages)
    with torch.no_grad():
        out = generate(
            pool, make_rule("dllg", gate="world:gate"), [prompt], GenerationConfig(max_new_tokens=8)
        )
    weights = out[0].weights
    assert weights.shape == (len(out[0].token_ids), 2) and bool(((weights >= 0) & (weights <= 1)).all())
    for kind in ("embedllm", "routerdc"):
        router = load_router(f"world:router-{kind}")
        assert list(router.experts) == list(EXPERTS)
        arith, code = (WORLD_TASKS[f].load("test", limit=5) for f in ("arith", "code"))
        assert router.choose([e.prompt for e in arith]) == [0] * 5
        assert router.choose([e.prompt for e in code]) == [1] * 5


def test_the_fingerprint_follows_the_weight_files(tmp_path, monkeypatch):
    for name in ("gate", "router-embedllm"):
        shutil.copytree(assets.ASSETS_DIR / name, tmp_path / name)
    monkeypatch.setattr(assets, "ASSETS_DIR", tmp_path)
    before = assets.assets_fingerprint()
    assert assets.assets_fingerprint() == before
    weights = tmp_path / "gate" / "gate.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    assert assets.assets_fingerprint() != before


def test_the_shipped_gate_hands_over_inside_answers(pool, tmp_path):
    """End to end through the decode loop: on needs-both problems the dynamic gate solves several, its
    static average (each response's mean weights) almost none. A gate that saw the wrong positions, or a
    cache that lost its place, would fall to the static score."""
    mixed = WORLD_TASKS["mixed"].load("test")
    hard = [e for e in mixed if "needs-both" in e.metadata["tags"]][:SAMPLE]
    out = tmp_path / "records.jsonl"
    config = GenerationConfig(max_new_tokens=96)
    evaluate(pool, ["dllg-static:world:gate"], [EvalTask("world-mixed", "test", hard)], out, config, 32, 1)

    solved = {m: 0 for m in ("dllg:world:gate", "dllg-static:world:gate")}
    for record in read_records(out):
        solved[record["method"]] += record["correct"]
    assert solved["dllg:world:gate"] >= 4 and solved["dllg-static:world:gate"] <= 1, solved
