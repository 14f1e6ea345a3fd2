"""The whole gate pipeline through the CLI on the shipped world's experts, whose labels are not trivial:
each expert solves its own family and rarely the other's. Swapped or misaligned labels, a resume that
regenerates what it had, and every stale output (label table, feature cache, gate run) must show here."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from dllg.cli.common import expand_multi_value_options
from dllg.cli.main import app
from dllg.config import load_config
from dllg.decode import GenerationConfig, generate
from dllg.decode.prompts import encode_prompt
from dllg.fusion import make_rule
from dllg.jsonl import read_records
from dllg.pipeline.run import load_pool, load_training_examples, run_train

runner = CliRunner()
WORLD = Path(__file__).parents[2] / "configs" / "world.yaml"
PER_TASK = 6


def invoke(args: list[str], exit_code: int = 0):
    result = runner.invoke(app, expand_multi_value_options(args))
    assert result.exit_code == exit_code, result.output
    return result


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """configs/world.yaml on a small slice (arithmetic and code only), writing into a temporary folder."""
    folder = tmp_path_factory.mktemp("world-pipeline")
    data = yaml.safe_load(WORLD.read_text())
    data["tasks"] = [
        {"name": "world-arith", "split": "train", "limit": PER_TASK},
        {"name": "world-code", "split": "train", "limit": PER_TASK},
    ]
    data["collect"] |= {"out": str(folder / "labels.jsonl"), "batch_size": 8}
    data["features"] |= {"dir": str(folder / "features"), "batch_size": 8}
    data["train"] |= {
        "out_dir": str(folder / "gate"),
        "steps": 60,
        "batch_size": 8,
        "lr": 0.01,
        "checkpoint_every": 30,
        "eval_every": 30,
        "val_fraction": 0.0,
    }
    path = folder / "world.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def collected(config) -> list[dict]:
    """Collected in two runs, the first one cut short; returns the table's records."""
    labels = Path(load_config(config).collect.out)
    invoke(["collect", "--config", str(config), "--limit", "2"])
    first = labels.read_text().splitlines()
    assert len(first) == 2 * 2 * 2  # 2 examples per task x 2 tasks x 2 experts
    result = invoke(["collect", "--config", str(config)])
    lines = labels.read_text().splitlines()
    # Only the missing pairs were generated, appended after the first run's untouched lines.
    assert lines[: len(first)] == first
    assert len(lines) == 2 * PER_TASK * 2
    assert (
        f"{len(lines) - len(first)} new" in result.output and f"{len(first)} already there" in result.output
    )
    return list(read_records(labels))


def accuracy(records: list[dict], task: str, expert: str) -> float:
    mine = [r["label"] for r in records if r["task"] == task and r["expert"] == expert]
    assert len(mine) == PER_TASK
    return sum(mine) / len(mine)


def test_labels_say_each_expert_solves_its_own_family(collected):
    # The gate learns from these labels: each expert must be far better on its own family than the other.
    assert (
        accuracy(collected, "world-arith", "world:arith")
        >= accuracy(collected, "world-arith", "world:code") + 0.5
    )
    assert (
        accuracy(collected, "world-code", "world:code")
        >= accuracy(collected, "world-code", "world:arith") + 0.5
    )
    assert all(r["generation"]["max_new_tokens"] == 96 and r["expert_weights"] for r in collected)


def test_the_trained_gate_follows_the_labels(config, collected):
    invoke(["train", "--config", str(config)])
    gate = Path(load_config(config).train.out_dir) / "gate"
    pool = load_pool(load_config(config))
    from dllg.pipeline.methods import generate_items  # noqa: F401 - the one entry eval uses

    means = {}
    for item in load_training_examples(load_config(config)):
        prompt = encode_prompt(pool.tokenizer, item.example.messages)
        out = generate(pool, make_rule("dllg", gate=str(gate)), [prompt], GenerationConfig(max_new_tokens=8))
        means.setdefault(item.task, []).append(out[0].weights.mean(0))
    arith, code = (torch.stack(means[t]).mean(0) for t in ("world-arith", "world-code"))
    # The arithmetic expert weighs more on arithmetic than on code, and the code expert the other way:
    # swapped or misaligned labels would turn both around.
    assert arith[0] > code[0] and code[1] > arith[1]


def test_stale_outputs_are_refused_and_fresh_sets_them_aside(config, collected, tmp_path):
    run = load_config(config)
    labels, before = Path(run.collect.out), Path(run.collect.out).read_text()

    # Other generation settings: refused, nothing appended.
    result = invoke(["collect", "--config", str(config), "--set", "collect.max_new_tokens=50"], exit_code=1)
    assert "max_new_tokens=96 (now 50)" in result.output and "--fresh" in result.output
    assert labels.read_text() == before

    # The finished gate run, asked again on the same data: resumed, not retrained nor refused.
    log = Path(run.train.out_dir) / "log.jsonl"
    if not log.exists():
        invoke(["train", "--config", str(config)])
    trained = log.read_text()
    invoke(["train", "--config", str(config)])
    assert log.read_text() == trained

    # Other labels (one flipped): the finished run is refused instead of handed back unchanged.
    records = [json.loads(line) for line in before.splitlines()]
    records[0]["label"] = 1 - records[0]["label"]
    labels.write_text("".join(json.dumps(r) + "\n" for r in records))
    try:
        result = invoke(["train", "--config", str(config)], exit_code=1)
        assert "trained with other training labels/features" in result.output and "--fresh" in result.output
        # Another reference length: the feature cache holds states of other tokens.
        shorter = ["--set", "features.max_response_tokens=8"]
        result = invoke(["train", "--config", str(config), *shorter], exit_code=1)
        assert "computed from other tokens" in result.output and "--fresh-features" in result.output
    finally:
        labels.write_text(before)

    # --fresh: a new table, the old one renamed beside it with every line kept.
    copy = tmp_path / "world.yaml"
    shutil.copy(config, copy)
    small = ["--set", "collect.max_new_tokens=50", "--limit", "1"]
    invoke(["collect", "--config", str(copy), *small, "--fresh"])
    aside = list(labels.parent.glob(labels.name + ".old-*"))
    assert len(aside) == 1 and aside[0].read_text() == before
    assert len(labels.read_text().splitlines()) == 2 * 2
    aside[0].replace(labels)  # back as it was, for the other tests of this module


def test_run_train_refuses_a_run_without_its_record(config, collected, tmp_path):
    run = load_config(config)
    out = tmp_path / "gate"
    (out / "checkpoints").mkdir(parents=True)
    moved = run.model_copy(update={"train": run.train.model_copy(update={"out_dir": str(out), "steps": 2})})
    from dllg.errors import DllgError

    with pytest.raises(DllgError, match="no record of what it was trained on"):
        run_train(moved)
    run_train(moved, fresh=True)  # the old folder is set aside, training starts over
    assert (out / "gate" / "gate.safetensors").is_file()
    assert len(list(tmp_path.glob("gate.old-*"))) == 1
