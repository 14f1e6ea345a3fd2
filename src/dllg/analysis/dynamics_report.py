"""The gate-dynamics analysis written out: `analysis.md` (the dynamic-vs-static table, then one table of
weight statistics per method and task) and `analysis.csv` (one row per method x task x group)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from dllg.analysis.dynamics import GROUPS, Analysis, GroupSummary, StaticComparison


def _number(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4g}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}" if value >= 1e-4 else f"{value:.1e}"


def comparison_table(comparisons: Sequence[StaticComparison]) -> str:
    lines = [
        "| gate | task | examples | dynamic % | static % | difference | dynamic right, static wrong "
        "| static right, dynamic wrong | McNemar p |",
        "|:---|:---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {c.gate} | {c.task} | {c.examples} | {c.dynamic:.2f} | {c.static:.2f} | {c.difference:+.2f} "
        f"| {c.dynamic_only} | {c.static_only} | {_p(c.mcnemar_p)} |"
        for c in comparisons
    ]
    return "\n".join(lines) + "\n"


def summary_table(summary: GroupSummary) -> str:
    sizes = summary.sizes
    lines = [
        f"| statistic | all (n={sizes['all']}) | correct (n={sizes['correct']}) "
        f"| incorrect (n={sizes['incorrect']}) | p |",
        "|:---|---:|---:|---:|---:|",
    ]
    for name, p_value in summary.p_values.items():
        cells = " | ".join(_number(summary.means[g][name]) for g in GROUPS)
        lines.append(f"| {name} | {cells} | {_p(p_value)} |")
    return "\n".join(lines) + "\n"


def render_markdown(analysis: Analysis) -> str:
    parts = [f"# Gate dynamics: {analysis.source}\n"]
    if analysis.skipped:
        parts.append(f"Skipped (no per-token weights): {', '.join(analysis.skipped)}.\n")
    if analysis.comparisons:
        parts.append("## Dynamic vs static weights, per task (paired over the same examples)\n")
        parts.append(comparison_table(analysis.comparisons))
    parts.append(
        "## Weights over the answer, by method and task\n\n"
        "Means over responses. Leader: the expert with the largest weight (`tie`: the top two are equal); "
        "a switch: a token led by another expert than the last led token, counted in the third of the answer "
        "it falls in. p: two-sided permutation test, correct vs incorrect responses.\n"
    )
    for summary in analysis.summaries:
        short = f"; {summary.short} with fewer than 2 tokens (no switches)" if summary.short else ""
        parts.append(f"### {summary.method} on {summary.task}{short}\n")
        parts.append(summary_table(summary))
    return "\n".join(parts)


def csv_rows(analysis: Analysis) -> list[dict]:
    """One row per method x task x group; the p-values (correct vs incorrect) sit on the `all` row."""
    rows = []
    for s in analysis.summaries:
        for group in GROUPS:
            row: dict = {"method": s.method, "task": s.task, "group": group, "responses": s.sizes[group]}
            row["accuracy"] = 100.0 * s.sizes["correct"] / s.sizes["all"] if group == "all" else None
            row |= s.means[group]
            row |= {f"p:{n}": p if group == "all" else None for n, p in s.p_values.items()}
            rows.append(row)
    return rows


def write_analysis(analysis: Analysis, out_dir: str | Path) -> tuple[Path, Path, str]:
    """`analysis.md` and `analysis.csv` in `out_dir`; returns their paths and the Markdown."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(analysis)
    md_path, csv_path = out_dir / "analysis.md", out_dir / "analysis.csv"
    md_path.write_text(markdown)
    rows = csv_rows(analysis)
    columns = list(dict.fromkeys(c for row in rows for c in row))  # experts may differ between methods
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _csv_cell(v) for c, v in row.items()})
    return md_path, csv_path, markdown


def _csv_cell(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return round(value, 6) if isinstance(value, float) else value
