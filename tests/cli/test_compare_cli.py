"""`dllg compare` on a small records file: the paired table, paired.json, examples.md, bad method names."""

import json
from dataclasses import asdict

from typer.testing import CliRunner

from dllg.cli.main import app
from dllg.pipeline.paired import paired_stats

runner = CliRunner()
FUSED, ALONE = "dllg:gate", "expert:e0"
# two experts' weights per token: e0 leads the first two tokens, e1 the last two
WEIGHTS = [[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6]]


def record(method: str, task: str, i: int, correct: int, response: str) -> dict:
    found = {
        "method": method,
        "task": task,
        "split": "test",
        "example_id": f"{task}/{i}",
        "experts": ["e0", "e1"],
        "response": response,
        "verdict": "pass" if correct else "fail",
        "reason": "" if correct else "wrong answer",
        "correct": correct,
        "tokens": 4,
        "finish": "eos",
    }
    return found | ({"weights": WEIGHTS} if method == FUSED else {})


def write_records(path, fused: dict[str, list[int]], alone: dict[str, list[int]]) -> list[dict]:
    records = [
        record(method, task, i, c, f"{method} says {task}/{i}")
        for method, tasks in ((FUSED, fused), (ALONE, alone))
        for task, correct in tasks.items()
        for i, c in enumerate(correct)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def test_compare_prints_writes_the_statistics_and_the_examples_that_differ(tmp_path):
    path = tmp_path / "records.jsonl"
    # t1: the fused method alone right on 0, 1, 2, alone right on 5; t2: both right everywhere
    fused = {"t1": [1, 1, 1, 0, 1, 0], "t2": [1, 1, 1]}
    alone = {"t1": [0, 0, 0, 0, 1, 1], "t2": [1, 1, 1]}
    records = write_records(path, fused, alone)
    records[0]["response"] = "x" * 5000  # a long answer is cut in the middle
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "cmp"
    args = ["compare", str(path), "--a", FUSED, "--b", ALONE, "--out", str(out), "--examples", "2"]
    result = runner.invoke(app, [*args, "--resamples", "500"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert all(word in result.output for word in ("t1", "t2", "average", FUSED, ALONE))

    written = json.loads((out / "paired.json").read_text())
    assert (written["a"], written["b"], written["resamples"], written["seed"]) == (FUSED, ALONE, 500, 0)
    expected = paired_stats(records, FUSED, ALONE, resamples=500, seed=0)
    assert written["rows"] == [asdict(s) for s in expected]
    t1, t2, average = written["rows"]
    assert (t1["n"], t1["a_right_b_wrong"], t1["a_wrong_b_right"]) == (6, 3, 1)
    assert (t2["a_right_b_wrong"], t2["a_wrong_b_right"], average["task"]) == (0, 0, "average")

    examples = (out / "examples.md").read_text()
    t1_part, t2_part = examples.split("\n## t1 (")[1].split("\n## t2 (")
    a_wins, b_wins = t1_part.split("### A wrong, B right")
    assert "A right, B wrong: 3, the first 2" in a_wins
    assert "#### t1/0" in a_wins and "#### t1/1" in a_wins and "t1/2" not in a_wins  # at most --examples
    assert "#### t1/5" in b_wins and "#### t1/4" not in examples  # both right: not an example
    assert f"{ALONE} says t1/0" in a_wins and "characters cut" in a_wins and "x" * 1001 not in a_wins
    # the fused answer's weights: means 0.55 / 0.45, e0 larger on two tokens, then e1 from token 2 on
    assert "mean weight e0 0.55, e1 0.45" in a_wins and "switches at token 2 (to e1)" in a_wins
    assert a_wins.count("weights:") == 2  # A's answers only: B has no per-token weights
    assert "A right, B wrong: 0" in t2_part and "####" not in t2_part


def test_a_method_not_in_the_records_is_one_error_line_naming_those_present(tmp_path):
    path = tmp_path / "records.jsonl"
    write_records(path, {"t": [1, 0]}, {"t": [0, 0]})
    result = runner.invoke(app, ["compare", str(path), "--a", "dllg:other", "--b", ALONE])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: no records of method 'dllg:other': the records hold {FUSED}, {ALONE}"
    )
