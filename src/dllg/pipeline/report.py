"""The results of `dllg eval`, from its records: the table (methods x tasks, with the experts' oracle), the
truncation table, the table by example tags, the dynamic-vs-static ablation, and their Markdown/CSV files."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dllg.pipeline.evaluate import STAT_DECIMALS, EvalTask


def select_records(records: Sequence[dict], methods: Sequence[str], tasks: Sequence[EvalTask]) -> list[dict]:
    """The records of these methods on exactly these examples (a file may hold more from other runs),
    ordered by method then task as given."""
    method_rank = {m: i for i, m in enumerate(methods)}
    task_rank = {(t.name, t.split): i for i, t in enumerate(tasks)}
    wanted = {(t.name, t.split, e.id) for t in tasks for e in t.examples}
    chosen = [
        r
        for r in records
        if r.get("method") in method_rank and (r.get("task"), r.get("split"), r.get("example_id")) in wanted
    ]
    # rows and columns follow the order asked for, not the order the file happens to hold
    return sorted(chosen, key=lambda r: (method_rank[r["method"]], task_rank[(r["task"], r["split"])]))


def task_column(record: dict, multi_split: set[str]) -> str:
    return f"{record['task']}:{record.get('split')}" if record["task"] in multi_split else record["task"]


def task_columns(records: Sequence[dict]) -> tuple[list[str], set[str]]:
    """Task columns in first-seen order; a task seen with several splits gets one column per split (and the
    set of those tasks, for `task_column`)."""
    splits: dict[str, set[str | None]] = {}
    for r in records:
        splits.setdefault(r["task"], set()).add(r.get("split"))
    multi = {task for task, found in splits.items() if len(found) > 1}
    return list(dict.fromkeys(task_column(r, multi) for r in records)), multi


def cell_counts(records: Sequence[dict]) -> tuple[Counter, dict[str, int]]:
    """Records per (method, task column), and each column's size: the most examples any method has there
    (a run still filling the table has a cell complete only at that size)."""
    columns, multi = task_columns(records)
    counts = Counter((r["method"], task_column(r, multi)) for r in records)
    return counts, {c: max(n for (_, column), n in counts.items() if column == c) for c in columns}


def _percent(values: list[int]) -> float:
    return 100.0 * sum(values) / len(values)


ORACLE = "oracle"  # the row of the examples at least one expert got right
TRUNCATION_TITLE = "% truncated (finish = length)"


def _score_row(method: str, columns: Sequence[str], cells: dict[str, list[int]]) -> dict:
    """{"method", <column>: % of the cell's 0/1 values that are 1, ..., "avg": their macro average}; a
    column without values is None, and so is avg: an average over fewer tasks would not compare."""
    scores = [_percent(cells[c]) if cells.get(c) else None for c in columns]
    # the macro average of the unrounded scores, rounded once
    avg = round(sum(scores) / len(scores), 2) if None not in scores else None
    return (
        {"method": method}
        | {c: None if s is None else round(s, 2) for c, s in zip(columns, scores, strict=True)}
        | {"avg": avg}
    )


def results_table(records: Sequence[dict], oracle: bool = False) -> list[dict]:
    """One row per method (first-seen order): {"method", <task>: % correct, ..., "avg": macro average}.

    A task the method has no records for is None, and so is its avg. With `oracle` and at least two
    `expert:*` methods, a last row `oracle`: an example is right if any expert got it right, counted on
    the examples every expert has a record for (the ceiling a perfect per-example router would reach)."""
    columns, multi = task_columns(records)
    by_method: dict[str, dict[str, list[int]]] = {}
    for r in records:
        by_method.setdefault(r["method"], {}).setdefault(task_column(r, multi), []).append(int(r["correct"]))
    rows = [_score_row(method, columns, cells) for method, cells in by_method.items()]
    experts = [m for m in by_method if m.startswith("expert:")]
    if oracle and len(experts) >= 2:
        rows.append(_score_row(ORACLE, columns, _oracle_cells(records, experts, multi)))
    return rows


def _oracle_cells(records: Sequence[dict], experts: list[str], multi: set[str]) -> dict[str, list[int]]:
    """Per column, 1 for each example some expert got right, 0 for one all got wrong; examples that not
    every expert has a record for are left out."""
    right: dict[tuple, dict[str, int]] = {}
    column_of: dict[tuple, str] = {}
    for r in records:
        if r["method"] in experts:
            key = (r["task"], r["split"], r["example_id"])
            right.setdefault(key, {})[r["method"]] = int(r["correct"])
            column_of[key] = task_column(r, multi)
    cells: dict[str, list[int]] = {}
    for key, by_expert in right.items():
        if len(by_expert) == len(experts):
            cells.setdefault(column_of[key], []).append(int(any(by_expert.values())))
    return cells


def truncation_table(records: Sequence[dict]) -> list[dict]:
    """One row per method, laid out as `results_table`: % of its answers cut off by the token limit
    (finish == "length") per task, and their macro average. A separate table, not columns of the results
    table, so that every column there stays a score. Records without `finish` (older files) are not
    counted: a cell with none is None rather than a false 0."""
    columns, multi = task_columns(records)
    by_method: dict[str, dict[str, list[int]]] = {}
    for r in records:
        cells = by_method.setdefault(r["method"], {})
        if "finish" in r:
            cells.setdefault(task_column(r, multi), []).append(int(r["finish"] == "length"))
    return [_score_row(method, columns, cells) for method, cells in by_method.items()]


def tag_table(records: Sequence[dict], task: EvalTask) -> list[dict]:
    """One row per method: % correct on each group of `task`'s examples that share the same metadata
    `tags` (the world's mixed problems: what each needs), groups largest first, with their sizes."""
    group_of = {e.id: "+".join(e.metadata.get("tags") or ()) or "untagged" for e in task.examples}
    sizes = Counter(group_of.values())
    columns = sorted(sizes, key=lambda g: (-sizes[g], g))
    by_cell: dict[tuple[str, str], list[int]] = {}
    for r in records:
        if r["task"] == task.name and r["split"] == task.split and r["example_id"] in group_of:
            by_cell.setdefault((r["method"], group_of[r["example_id"]]), []).append(int(r["correct"]))
    rows = []
    for method in dict.fromkeys(r["method"] for r in records):
        cells = {f"{g} (n={sizes[g]})": by_cell.get((method, g)) for g in columns}
        rows.append({"method": method} | {c: round(_percent(v), 2) if v else None for c, v in cells.items()})
    return rows


@dataclass(frozen=True)
class Ablation:
    """dllg:X against dllg-static:X on the examples both have."""

    gate: str
    examples: int
    dynamic: float  # macro-average % correct
    static: float
    weight_var: float  # mean over responses and experts of the per-token weight variance
    weight_entropy: float  # mean over responses of the mean per-token weight entropy (nats)

    @property
    def difference(self) -> float:
        return round(self.dynamic - self.static, 2)


def _macro(records: list[dict]) -> float:
    by_task: dict[tuple[str, str], list[int]] = {}
    for r in records:
        by_task.setdefault((r["task"], r["split"]), []).append(int(r["correct"]))
    return round(sum(_percent(v) for v in by_task.values()) / len(by_task), 2)


def ablations(records: Sequence[dict]) -> list[Ablation]:
    by_method: dict[str, dict[tuple, dict]] = {}
    for r in records:
        by_method.setdefault(r["method"], {})[(r["task"], r["split"], r["example_id"])] = r
    found = []
    for method, static in by_method.items():
        if not method.startswith("dllg-static:"):
            continue
        gate = method.removeprefix("dllg-static:")
        dynamic = by_method.get(f"dllg:{gate}", {})
        shared = [k for k in dynamic if k in static]
        if not shared:
            continue
        dyn = [dynamic[k] for k in shared]
        variances = [sum(r["weight_var"]) / len(r["weight_var"]) for r in dyn]
        found.append(
            Ablation(
                gate=gate,
                examples=len(shared),
                dynamic=_macro(dyn),
                static=_macro([static[k] for k in shared]),
                weight_var=round(sum(variances) / len(variances), STAT_DECIMALS),
                weight_entropy=round(sum(r["weight_entropy"] for r in dyn) / len(dyn), STAT_DECIMALS),
            )
        )
    return found


def ablation_line(a: Ablation) -> str:
    return (
        f"Dynamic vs static weights (dllg:{a.gate}, {a.examples} examples): dynamic {a.dynamic:.2f}, "
        f"static (each response's mean weights) {a.static:.2f}, difference {a.difference:+.2f} points; "
        f"weight variance across tokens {a.weight_var:.6f}, weight entropy {a.weight_entropy:.4f} nats."
    )


def _cell(value: object) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def markdown_table(rows: Sequence[dict]) -> str:
    if not rows:
        return "(no records)\n"
    columns = list(rows[0])
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(columns) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_tables(rows: Sequence[dict], out_dir: str | Path, notes: Sequence[str] = ()) -> tuple[Path, Path]:
    """`results.md` (the table, then `notes` such as the ablation lines) and `results.csv` in `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = markdown_table(rows) + "".join(f"\n{note}\n" for note in notes)
    md_path, csv_path = out_dir / "results.md", out_dir / "results.csv"
    md_path.write_text(markdown)
    with open(csv_path, "w", newline="") as handle:
        columns = list(rows[0]) if rows else ["method", "avg"]
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "" if row[c] is None else _cell(row[c]) for c in columns})
    return md_path, csv_path
