"""`dllg tasks list|show` and `dllg verify`: look at benchmark data and score responses to it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dllg.cli.common import user_errors
from dllg.errors import DllgError
from dllg.tasks import all_tasks, get_task
from dllg.tasks.scoring import FINISH_REASONS, require_verifiers, verify_responses
from dllg.tasks.sources import read_jsonl
from dllg.verify import STATUSES

app = typer.Typer(help="Benchmark tasks: list them, show examples.", no_args_is_help=True)
console = Console()


@app.command("list")
def list_tasks() -> None:
    """List every task with its splits, the splits that may be trained on, and its data source."""
    table = Table("task", "verifier", "splits", "trainable", "source", "description")
    for name, task in sorted(all_tasks().items()):
        trainable = ", ".join(task.training_splits) or "-"
        table.add_row(name, task.verifier, ", ".join(task.splits), trainable, task.source, task.description)
    console.print(table)


@app.command("show")
@user_errors
def show(
    name: str = typer.Argument(..., help="task name (see `dllg tasks list`)"),
    split: str | None = typer.Option(None, "--split", "-s", help="split; default: the task's default"),
    n: int = typer.Option(3, "-n", help="number of examples to show"),
    data: Path | None = typer.Option(None, "--data", help="a local JSONL instead of the task's source"),
) -> None:
    """Print the first N examples of a split: id, prompt, reference."""
    examples = get_task(name).load(split, limit=n, data_path=data)
    for example in examples:
        console.rule(f"{example.id}  [dim]({example.verifier})[/dim]")
        for message in example.messages:
            _field(message["role"], message["content"])
        ref = example.reference
        if ref.answer is not None:
            _field("answer", ref.answer)
        if ref.tests:
            _field(f"tests ({ref.test_kind})", ref.tests[:600])


def _field(label: str, text: str) -> None:
    # Text, not markup: prompts and tests are full of square brackets.
    console.print(Text.assemble((f"{label}: ", "bold"), text))


@user_errors
def verify_command(
    task: str = typer.Option(..., "--task", help="task name (see `dllg tasks list`)"),
    responses: Path = typer.Option(
        ..., "--responses", help='JSONL of {id, response, finish?}; finish "length": max_new_tokens cut it'
    ),
    split: str | None = typer.Option(None, "--split", help="split the ids come from; default: the task's"),
    data: Path | None = typer.Option(None, "--data", help="a local JSONL instead of the task's source"),
    workers: int = typer.Option(2, "--workers", help="code programs run in parallel"),
    out: Path | None = typer.Option(None, "--out", help="write one verdict per line here (JSONL)"),
) -> None:
    """Score a JSONL of {id, response} against a task; print the score and the count of each verdict.

    A record's optional `finish` ("eos", "stop", "length") is its generation's finish reason: a "length"
    response was cut off by max_new_tokens and gets no final answer it did not state explicitly.
    """
    examples = {e.id: e for e in get_task(task).load(split, data_path=data)}
    rows = read_jsonl(responses)
    unknown = [str(r.get("id")) for r in rows if r.get("id") not in examples]
    if unknown:
        raise DllgError(
            f"{len(unknown)} response ids are not in task {task!r} (first: {unknown[0]!r}): "
            "check --task and --split"
        )
    finishes = [row.get("finish") for row in rows]
    odd = [(row["id"], f) for row, f in zip(rows, finishes, strict=True) if f not in (None, *FINISH_REASONS)]
    if odd:
        first_id, first = odd[0]
        raise DllgError(
            f"{len(odd)} records have an unknown finish reason (first: id {first_id!r}, finish {first!r}): "
            f"use one of {', '.join(FINISH_REASONS)} or leave it out"
        )
    chosen = [examples[row["id"]] for row in rows]
    require_verifiers(chosen)
    verdicts = verify_responses(chosen, [str(row["response"]) for row in rows], workers, finishes)
    counts = Counter(v.status for v in verdicts)
    passed = counts["pass"]
    total = len(verdicts)
    score = passed / total if total else 0.0
    console.print(f"{task}: {passed}/{total} passed, score {score:.4f}")
    console.print("  ".join(f"{status} {counts[status]}" for status in STATUSES))
    if out is not None:
        lines = (
            json.dumps({"id": row["id"], "status": v.status, "reason": v.reason})
            for row, v in zip(rows, verdicts, strict=True)
        )
        out.write_text("".join(line + "\n" for line in lines))
