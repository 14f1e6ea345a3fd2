"""`dllg compare`: two methods of one records file, paired on the examples both answered: is A's lead over B
more than chance (McNemar, a bootstrap interval), and which examples make the difference."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from dllg.cli.common import console, user_errors
from dllg.errors import DllgError

if TYPE_CHECKING:  # numpy and the report come in only when the command runs
    from dllg.pipeline.paired import Pair, PairedStats

HEAD_CHARS, TAIL_CHARS = 700, 300  # a long answer keeps its start and its end (where the answer usually is)
MAX_SWITCHES = 12  # weight switches listed per answer
TIE = 5e-5  # half the records' rounding step (4 decimals): weights equal as recorded are a tie


def stats_table(stats: list[PairedStats], a: str, b: str) -> Table:
    table = Table(title=f"A = {a}, B = {b}: paired on the examples both answered")
    for i, column in enumerate(["task", "n", "A %", "B %", "A - B", "95% interval", "A only", "B only"]):
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=i == 0)
    table.add_column("McNemar p", justify="right")
    table.add_column("win", justify="left")
    for s in stats:
        table.add_row(
            s.task,
            str(s.n),
            f"{s.accuracy_a:.2f}",
            f"{s.accuracy_b:.2f}",
            f"{s.difference:+.2f}",
            f"[{s.low:+.2f}, {s.high:+.2f}]",
            str(s.a_right_b_wrong),
            str(s.a_wrong_b_right),
            f"{s.p_value:.3g}",
            {"a": "A", "b": "B"}.get(s.winner or "", "-"),
        )
    return table


def conclusion(average: PairedStats, a: str, b: str) -> str:
    interval = f"{average.difference:+.2f} points, 95% interval [{average.low:+.2f}, {average.high:+.2f}]"
    if average.winner is None:
        return f"average over tasks: A - B = {interval}: it includes 0, so no win is claimed either way."
    return f"average over tasks: A - B = {interval}: {a if average.winner == 'a' else b} is better."


def clip(text: str) -> str:
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    cut = len(text) - HEAD_CHARS - TAIL_CHARS
    return f"{text[:HEAD_CHARS]}\n[... {cut} characters cut ...]\n{text[-TAIL_CHARS:]}"


def fenced(text: str) -> str:
    """A code block no backtick run inside the answer can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def weights_summary(record: dict) -> str | None:
    """How a fused answer's per-token weights went: each expert's mean weight, on how many tokens each had the
    larger weight, and the tokens where that changed; None for an answer without weights."""
    weights = record.get("weights")
    if not weights:
        return None
    experts = len(weights[0])
    names = record.get("experts") or []
    names = names if len(names) == experts else [f"expert {k}" for k in range(experts)]
    means = [sum(row[k] for row in weights) / len(weights) for k in range(experts)]
    leaders = []
    for row in weights:
        top = max(row)
        tied = sum(w >= top - TIE for w in row) > 1
        leaders.append("tie" if tied else names[row.index(top)])
    counts = Counter(leaders)
    switches = [(t, leaders[t]) for t in range(1, len(leaders)) if leaders[t] != leaders[t - 1]]
    listed = ", ".join(f"{t} (to {leader})" for t, leader in switches[:MAX_SWITCHES])
    more = f" and {len(switches) - MAX_SWITCHES} more" if len(switches) > MAX_SWITCHES else ""
    return (
        "mean weight "
        + ", ".join(f"{n} {m:.2f}" for n, m in zip(names, means, strict=True))
        + f"; larger weight over {len(leaders)} tokens: "
        + ", ".join(f"{leader} {count}" for leader, count in counts.most_common())
        + f"; starts with {leaders[0]}, "
        + (f"switches at token {listed}{more}" if switches else "never switches")
    )


def answer_block(label: str, record: dict) -> str:
    reason = str(record.get("reason") or "")
    reason = f" ({reason[:200]})" if reason else ""
    lines = [
        f"{label} `{record['method']}`: {record.get('verdict')}{reason}, finish {record.get('finish')}, "
        f"{record.get('tokens')} tokens"
    ]
    summary = weights_summary(record)
    if summary:
        lines.append(f"weights: {summary}")
    return "\n\n".join([*lines, fenced(clip(str(record.get("response", ""))))])


def examples_markdown(pairs: dict[str, list[Pair]], a: str, b: str, source: Path, limit: int) -> str:
    """Up to `limit` examples per task of each discordant kind, with both answers and the fused weights."""
    parts = [
        f"# {a} (A) against {b} (B)",
        f"From {source}: per task, up to {limit} examples A got right and B wrong, then the reverse. "
        "Token positions count from 0; each token's weights in colour: "
        f"`dllg show {source} --id ID --method METHOD`.",
    ]
    kinds = (("A right, B wrong", True), ("A wrong, B right", False))
    for task, rows in pairs.items():
        parts.append(f"## {task} ({len(rows)} examples)")
        for title, a_right in kinds:
            found = [
                (ra, rb)
                for ra, rb in rows
                if (bool(ra["correct"]), bool(rb["correct"])) == (a_right, not a_right)
            ]
            parts.append(
                f"### {title}: {len(found)}" + (f", the first {limit}" if len(found) > limit else "")
            )
            for ra, rb in found[:limit]:
                parts += [f"#### {ra['example_id']}", answer_block("A", ra), answer_block("B", rb)]
    return "\n\n".join(parts) + "\n"


def write_comparison(
    out: Path,
    stats: list[PairedStats],
    pairs: dict[str, list[Pair]],
    settings: dict,
    limit: int,
) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "paired.json", out / "examples.md"
    json_path.write_text(json.dumps(settings | {"rows": [asdict(s) for s in stats]}, indent=2) + "\n")
    md_path.write_text(
        examples_markdown(pairs, settings["a"], settings["b"], Path(settings["records"]), limit)
    )
    return json_path, md_path


@user_errors
def compare_command(
    records: Path = typer.Argument(..., help="A records file written by `dllg eval` (JSONL)."),
    a: str = typer.Option(..., "--a", help="Method A as the records name it, e.g. dllg:world:gate."),
    b: str = typer.Option(..., "--b", help="Method B, e.g. uniform or expert:world:arith."),
    out: Path = typer.Option(None, "--out", help="Also write paired.json and examples.md to this folder."),
    examples: int = typer.Option(5, "--examples", help="examples.md: examples of each kind per task."),
    resamples: int = typer.Option(10_000, "--resamples", help="Bootstrap resamples of the examples."),
    seed: int = typer.Option(0, "--seed", help="The bootstrap's seed: the same seed, the same intervals."),
) -> None:
    """Compare two evaluated methods example by example: accuracies, McNemar's exact test and a paired
    bootstrap 95% interval of A - B per task and averaged over tasks; a win only where it excludes 0."""
    from dllg.jsonl import read_records
    from dllg.pipeline.paired import AVERAGE, CONFIDENCE, paired_records, paired_stats

    if not records.is_file():
        raise DllgError(f"{records}: no such file: give the records.jsonl that `dllg eval --out` wrote")
    if examples < 0:
        raise DllgError(f"--examples {examples}: give 0 or more")
    rows = list(read_records(records))
    stats = paired_stats(rows, a, b, resamples=resamples, seed=seed)
    console.print(stats_table(stats, a, b))
    console.print(conclusion(next(s for s in stats if s.task == AVERAGE), a, b), highlight=False)
    if out is not None:
        settings = {
            "records": str(records),
            "a": a,
            "b": b,
            "resamples": resamples,
            "seed": seed,
            "confidence": CONFIDENCE,
        }
        paths = write_comparison(out, stats, paired_records(rows, a, b), settings, examples)
        console.print(f"written: {', '.join(map(str, paths))}", highlight=False)
