"""collect -> train -> generate from one YAML config on tiny experts via the CLI; resumes; bad configs."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dllg.cli.common import expand_multi_value_options
from dllg.cli.main import app
from dllg.config import load_config
from dllg.errors import DllgError
from dllg.jsonl import read_records

runner = CliRunner()
TINY = Path(__file__).parents[2] / "configs" / "tiny.yaml"


def invoke(args: list[str]):
    result = runner.invoke(app, expand_multi_value_options(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    shutil.copy(TINY, path)
    return path


def outputs(tmp_path: Path) -> list[str]:
    return [
        f"collect.out={tmp_path}/labels.jsonl",
        f"features.dir={tmp_path}/features",
        f"train.out_dir={tmp_path}/gate",
        "collect.max_new_tokens=6",
        "tasks=[{name: gsm_symbolic, limit: 3}]",
    ]


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def test_collect_train_generate_from_one_config(config, tmp_path):
    base = sets(outputs(tmp_path))
    invoke(["collect", "--config", str(config), *base, "--limit", "2"])  # a first, partial run
    invoke(["collect", "--config", str(config), *base])  # resumes: only the missing pairs
    records = list(read_records(tmp_path / "labels.jsonl"))
    pairs = [(r["example_id"], r["expert"]) for r in records]
    assert len(pairs) == len(set(pairs)) == 3 * 2
    assert {r["expert"] for r in records} == {"tiny:0", "tiny:1"}
    assert all(r["verdict"] in {"pass", "fail", "error", "timeout"} and r["label"] in (0, 1) for r in records)

    result = invoke(["train", "--config", str(config), *base, "--steps", "4"])
    gate = tmp_path / "gate" / "gate"
    assert (gate / "gate.safetensors").is_file() and str(gate) in result.output.replace("\n", "")
    log = [json.loads(line) for line in (tmp_path / "gate" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 4

    result = invoke(
        [
            "generate",
            "--experts",
            "tiny:0",
            "tiny:1",
            "--gate",
            str(gate),
            "--show-weights",
            "-n",
            "4",
            "What is 3 + 4?",
        ]
    )
    assert "mean weights" in result.output


def test_collect_refuses_evaluation_splits(config, tmp_path):
    result = runner.invoke(
        app,
        [
            "collect",
            "--config",
            str(config),
            *sets(outputs(tmp_path)),
            "--set",
            "tasks=[{name: dataframebench, split: test}]",
        ],
    )
    assert result.exit_code == 1 and "evaluation-only" in result.output


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.steps=0", "train.steps: Input should be greater than or equal to 1"),
        ("gate.variant=transformer", "gate.variant"),
        ("collect.batchsize=3", "collect.batchsize: Extra inputs are not permitted"),
        ("experts=[]", "experts: List should have at least 1 item"),
        ("train", "write section.field=value"),
    ],
)
def test_bad_config_values_are_one_line_errors(config, override, message):
    with pytest.raises(DllgError, match=message):
        load_config(config, [override])


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(DllgError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("experts: [\n")
    with pytest.raises(DllgError, match="not valid YAML"):
        load_config(bad)


def test_committed_configs_are_valid():
    for path in sorted((Path(__file__).parents[2] / "configs").glob("*.yaml")):
        assert load_config(path).experts


@pytest.mark.parametrize("variant", ["mlp", "lowrank_aux_lm"])
def test_the_gate_starts_from_the_training_seed(variant):
    """Same seed, same initial gate (head, projection and LoRA): `dllg train` twice gives one gate."""
    import torch

    from dllg.gate import GateConfig
    from dllg.pipeline.run import build_seeded_gate
    from dllg.tiny import named_tiny_expert

    hidden = named_tiny_expert(0, "cpu", torch.float32).hidden_size
    config = GateConfig(
        variant=variant, expert_names=["tiny:0", "tiny:1"], hidden_sizes=[hidden, hidden],
        aux_model="tiny:0", proj_rank=4, lora_rank=2, head_hidden=8,
    )  # fmt: skip
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first, again, other = (build_seeded_gate(config, seed).state_dict() for seed in (3, 3, 4))
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's generator is untouched
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if "lora" in k or "head" in k)


def test_features_backend_switches_every_expert_and_drops_llamacpp_options():
    from dllg.pipeline.run import feature_experts

    experts = "experts=[{name: a.gguf, backend: llamacpp, llamacpp: {context_tokens: 4096}}, {name: b}]"
    run = load_config(TINY, [experts])
    assert feature_experts(run) == run.experts  # unset: as the config names them
    on_hf = feature_experts(load_config(TINY, [experts, "features.backend=hf"]))
    assert [(e.name, e.backend, e.llamacpp.context_tokens) for e in on_hf] == [
        ("a.gguf", "hf", None),
        ("b", "hf", None),
    ]
    on_llama = feature_experts(load_config(TINY, [experts, "features.backend=llamacpp"]))
    assert [(e.backend, e.llamacpp.context_tokens) for e in on_llama] == [
        ("llamacpp", 4096),
        ("llamacpp", None),
    ]
    with pytest.raises(DllgError, match=r"features\.backend"):
        load_config(TINY, ["features.backend=vllm"])
