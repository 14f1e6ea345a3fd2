"""What a label table says before any gate is trained: each expert's accuracy and truncation per task, and
how the experts' right answers overlap (the examples only one expert gets right are what fusion or routing
can win over the best expert alone; the oracle is either-right)."""

from __future__ import annotations

from collections.abc import Sequence


def _share(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def expert_rows(labels: Sequence[dict]) -> list[dict]:
    """One row per (task, expert), tasks then experts in first-seen order: answers, % correct, % cut off
    by the token limit (of the records that say how they finished)."""
    cells: dict[tuple[str, str], list[dict]] = {}
    for record in labels:
        cells.setdefault((record["task"], record["expert"]), []).append(record)
    tasks = list(dict.fromkeys(r["task"] for r in labels))
    experts = list(dict.fromkeys(r["expert"] for r in labels))
    rows = []
    for task, expert in ((t, e) for t in tasks for e in experts if (t, e) in cells):
        records = cells[(task, expert)]
        truncated = [r for r in records if "finish" in r]
        rows.append(
            {
                "task": task,
                "expert": expert,
                "answers": len(records),
                "% correct": _share(sum(int(r["label"]) for r in records), len(records)),
                "% truncated": _share(sum(r["finish"] == "length" for r in truncated), len(truncated)),
            }
        )
    return rows


def overlap_rows(labels: Sequence[dict]) -> list[dict]:
    """One row per task over the examples every expert answered: how many all got right, none did, only
    each expert did; the best expert's % and the oracle's (any expert right)."""
    experts = list(dict.fromkeys(r["expert"] for r in labels))
    by_task: dict[str, dict[str, dict[str, int]]] = {}
    for record in labels:
        by_task.setdefault(record["task"], {}).setdefault(record["example_id"], {})[record["expert"]] = int(
            record["label"]
        )
    rows = []
    for task, examples in by_task.items():
        complete = [got for got in examples.values() if all(e in got for e in experts)]
        right = {e: sum(got[e] for got in complete) for e in experts}
        row: dict = {"task": task, "examples": len(complete)}
        row["all right"] = sum(all(got.values()) for got in complete)
        row["none right"] = sum(not any(got.values()) for got in complete)
        for expert in experts:
            row[f"only {expert}"] = sum(got[expert] and sum(got.values()) == 1 for got in complete)
        row["% best expert"] = _share(max(right.values(), default=0), len(complete))
        row["% oracle"] = _share(sum(any(got.values()) for got in complete), len(complete))
        rows.append(row)
    return rows
