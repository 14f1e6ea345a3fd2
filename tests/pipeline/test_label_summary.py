"""The label table's summary: accuracy and truncation per expert and task, and the overlap of right answers
that bounds what fusion can win (`dllg collect --summary`)."""

import json

from typer.testing import CliRunner

from dllg.cli.main import app
from dllg.pipeline.label_summary import expert_rows, overlap_rows


def label(example: str, task: str, expert: str, right: int, finish: str = "eos") -> dict:
    return {"example_id": example, "task": task, "expert": expert, "label": right, "finish": finish}


LABELS = [
    label("m1", "math", "big", 1),
    label("m2", "math", "big", 1, "length"),
    label("m3", "math", "big", 0),
    label("c1", "code", "big", 0),
    label("m1", "math", "small", 1),
    label("m2", "math", "small", 0),
    label("m3", "math", "small", 1, "length"),
    label("m4", "math", "small", 1),  # the big expert has no answer to m4: left out of the overlap
    label("c1", "code", "small", 0),
]


def test_each_experts_accuracy_and_truncation_per_task_tasks_first():
    rows = expert_rows(LABELS)
    assert [(r["task"], r["expert"], r["answers"]) for r in rows] == [
        ("math", "big", 3),
        ("math", "small", 4),
        ("code", "big", 1),
        ("code", "small", 1),
    ]
    assert rows[0]["% correct"] == 66.67 and rows[0]["% truncated"] == 33.33
    assert rows[1]["% correct"] == 75.0 and rows[1]["% truncated"] == 25.0


def test_the_overlap_counts_what_only_one_expert_gets_right_on_shared_examples():
    math, code = overlap_rows(LABELS)
    assert math == {
        "task": "math",
        "examples": 3,
        "all right": 1,
        "none right": 0,
        "only big": 1,
        "only small": 1,
        "% best expert": 66.67,
        "% oracle": 100.0,
    }
    assert code["examples"] == 1 and code["none right"] == 1 and code["% oracle"] == 0.0


def test_collect_summary_prints_the_tables_without_collecting(tmp_path):
    table = tmp_path / "labels.jsonl"
    table.write_text("".join(json.dumps(r) + "\n" for r in LABELS))
    config = tmp_path / "run.yaml"
    config.write_text("experts: [{name: no-such-model}, {name: nor-this}]\ntasks: [{name: gsm8k}]\n")
    result = CliRunner().invoke(app, ["collect", "--config", str(config), "--out", str(table), "--summary"])
    assert result.exit_code == 0, result.output
    assert "9 answers" in result.output and "| math | small | 4 | 75.00 | 25.00 |" in result.output
    empty = tmp_path / "empty.jsonl"
    result = CliRunner().invoke(app, ["collect", "--config", str(config), "--out", str(empty), "--summary"])
    assert result.exit_code != 0 and "no labels in" in result.output
