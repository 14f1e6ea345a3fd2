"""`dllg tasks list|show` and `dllg verify`, through typer's CliRunner."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from dllg.cli.tasks import app, verify_command
from dllg.tasks import get_task

runner = CliRunner()


def verify_app() -> typer.Typer:
    # main.py registers verify_command as the top-level `dllg verify`; a one-command app stands in here.
    single = typer.Typer()
    single.command()(verify_command)
    return single


def test_list_names_every_task():
    result = runner.invoke(app, ["list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for name in ("gsm8k", "humaneval", "dataframebench", "code_r1", "bbh"):
        assert name in result.output


def test_show_prints_examples():
    result = runner.invoke(app, ["show", "humaneval", "-n", "2"])
    assert result.exit_code == 0, result.output
    assert (
        "HumanEval/0" in result.output
        and "HumanEval/1" in result.output
        and "HumanEval/2" not in result.output
    )
    result = runner.invoke(app, ["show", "gsm8k", "--split", "eval", "-n", "1"])
    assert result.exit_code == 0 and "answer:" in result.output


def test_show_reports_user_errors_on_one_line():
    result = runner.invoke(app, ["show", "humaneval", "--split", "train"])
    assert result.exit_code == 1 and "no split 'train'" in result.output
    result = runner.invoke(app, ["show", "nope"])
    assert result.exit_code == 1 and "unknown task" in result.output


def test_verify_scores_code_and_prints_counts(tmp_path):
    examples = get_task("humaneval").load(limit=4)
    rows = [{"id": e.id, "response": e.metadata["solution"]} for e in examples[:3]]
    rows.append({"id": examples[3].id, "response": "no code here"})
    responses = tmp_path / "responses.jsonl"
    responses.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "verdicts.jsonl"
    result = runner.invoke(
        verify_app(), ["--task", "humaneval", "--responses", str(responses), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "3/4 passed" in result.output and "pass 3" in result.output and "error 1" in result.output
    assert [json.loads(line)["status"] for line in out.read_text().splitlines()] == ["pass"] * 3 + ["error"]


def test_verify_scores_math(tmp_path):
    examples = get_task("gsm8k").load("eval", limit=2)
    rows = [
        {"id": examples[0].id, "response": f"... so \\boxed{{{examples[0].reference.answer}}}"},
        {"id": examples[1].id, "response": "The answer is 123456789."},
    ]
    responses = tmp_path / "r.jsonl"
    responses.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = runner.invoke(verify_app(), ["--task", "gsm8k", "--responses", str(responses)])
    assert result.exit_code == 0, result.output
    assert "1/2 passed" in result.output and "fail 1" in result.output


def test_verify_rejects_ids_of_another_task(tmp_path):
    responses = tmp_path / "r.jsonl"
    responses.write_text(json.dumps({"id": "HumanEval/0", "response": "x"}) + "\n")
    result = runner.invoke(verify_app(), ["--task", "gsm8k", "--responses", str(responses)])
    assert result.exit_code == 1 and "not in task 'gsm8k'" in result.output


def test_verify_reads_finish_and_denies_a_truncated_last_number(tmp_path):
    example = get_task("gsm8k").load("eval", limit=1)[0]
    # Its last number is the answer: enough for a complete response, not for one cut off by max_new_tokens.
    record = {"id": example.id, "response": f"So far: 9 * 2 = {example.reference.answer}, and then she"}
    plain, cut, odd = tmp_path / "plain.jsonl", tmp_path / "cut.jsonl", tmp_path / "odd.jsonl"
    plain.write_text(json.dumps(record) + "\n")
    cut.write_text(json.dumps({**record, "finish": "length"}) + "\n")
    odd.write_text(json.dumps({**record, "finish": "max_tokens"}) + "\n")
    result = runner.invoke(verify_app(), ["--task", "gsm8k", "--responses", str(plain)])
    assert result.exit_code == 0 and "1/1 passed" in result.output, result.output
    out = tmp_path / "verdicts.jsonl"
    result = runner.invoke(verify_app(), ["--task", "gsm8k", "--responses", str(cut), "--out", str(out)])
    assert result.exit_code == 0 and "0/1 passed" in result.output, result.output
    verdict = json.loads(out.read_text())
    assert verdict["status"] == "error" and "truncated (max_new_tokens)" in verdict["reason"]
    result = runner.invoke(verify_app(), ["--task", "gsm8k", "--responses", str(odd)])
    assert result.exit_code == 1 and "unknown finish reason" in result.output
