"""Two evaluated methods compared on the examples both answered: is A's lead over B more than chance?

Per task (the results table's columns) and over all tasks: the accuracies, the discordant pairs (A right and
B wrong, and the reverse), McNemar's exact test on those pairs, and a paired bootstrap interval of the
accuracy difference A - B. A win is claimed only where that interval excludes 0. The `average` row is the
macro average over tasks, as the table's avg column: its interval resamples each task's examples and
averages the per-task differences; its p-value tests the discordant pairs of every task pooled.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from math import comb

import numpy as np

from dllg.errors import DllgError
from dllg.pipeline.report import task_column, task_columns

AVERAGE = "average"  # the row over all tasks
RESAMPLES = 10_000
CONFIDENCE = 0.95
CHUNK = 1_000  # resamples drawn at once: bounds memory at CHUNK x examples indices

Pair = tuple[dict, dict]  # (A's record, B's record) of one example


@dataclass(frozen=True)
class PairedStats:
    task: str  # a task column, or AVERAGE
    n: int  # examples both methods have a record for
    accuracy_a: float  # % correct
    accuracy_b: float
    a_right_b_wrong: int
    a_wrong_b_right: int
    p_value: float  # exact two-sided McNemar test on the discordant pairs
    difference: float  # accuracy_a - accuracy_b, in points
    low: float  # the bootstrap interval of the difference
    high: float
    excludes_zero: bool  # the interval lies on one side of 0: only then is a win claimed
    winner: str | None  # "a" or "b" where the interval excludes 0, else None


def mcnemar_p(a_right_b_wrong: int, a_wrong_b_right: int) -> float:
    """Exact two-sided McNemar: under no difference each discordant pair is a fair coin, so
    p = min(1, 2 P(X <= min(b, c))) with X ~ Bin(b + c, 1/2); computed in integers, then divided once."""
    discordant = a_right_b_wrong + a_wrong_b_right
    tail = sum(comb(discordant, k) for k in range(min(a_right_b_wrong, a_wrong_b_right) + 1))
    return min(1.0, 2 * tail / 2**discordant)


def paired_records(records: Sequence[dict], a: str, b: str) -> dict[str, list[Pair]]:
    """Per task column (first-seen order), the records of A and B on each example both have, by example id.

    A file may hold a record twice (merged shards): the last one counts."""
    present = list(dict.fromkeys(str(r.get("method")) for r in records))
    for name in (a, b):
        if name not in present:
            raise DllgError(f"no records of method {name!r}: the records hold {', '.join(present) or 'none'}")
    by_method: dict[str, dict[tuple, dict]] = {a: {}, b: {}}
    for r in records:
        if r.get("method") in by_method:
            by_method[r["method"]][(r["task"], r["split"], r["example_id"])] = r
    shared = [key for key in by_method[a] if key in by_method[b]]
    if not shared:
        raise DllgError(f"{a} and {b} have no example in common: evaluate both on the same tasks")
    columns, multi = task_columns([by_method[a][key] for key in shared])
    pairs: dict[str, list[Pair]] = {column: [] for column in columns}
    for key in sorted(
        shared, key=lambda k: natural_order(str(k[2]))
    ):  # an order the file's order cannot change
        record = by_method[a][key]
        pairs[task_column(record, multi)].append((record, by_method[b][key]))
    return pairs


def natural_order(example_id: str) -> tuple:
    """`test-2` before `test-10`: the id's digit runs compare as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", example_id))


def bootstrap_differences(differences: Sequence[np.ndarray], resamples: int, seed: int) -> np.ndarray:
    """(tasks, resamples): each task's mean difference over its examples resampled with replacement."""
    rng = np.random.default_rng(seed)
    means = np.empty((len(differences), resamples))
    for t, values in enumerate(differences):
        for start in range(0, resamples, CHUNK):
            size = min(CHUNK, resamples - start)
            means[t, start : start + size] = values[rng.integers(0, len(values), (size, len(values)))].mean(1)
    return means


def _stats(
    task: str,
    n: int,
    accuracies: tuple[float, float],
    discordant: tuple[int, int],
    difference: float,
    resampled: np.ndarray,
    confidence: float,
) -> PairedStats:
    tail = (1 - confidence) / 2
    low, high = (float(q) for q in np.quantile(resampled, [tail, 1 - tail]))
    excludes_zero = low > 0 or high < 0
    return PairedStats(
        task=task,
        n=n,
        accuracy_a=round(float(accuracies[0]), 2),
        accuracy_b=round(float(accuracies[1]), 2),
        a_right_b_wrong=discordant[0],
        a_wrong_b_right=discordant[1],
        p_value=float(f"{mcnemar_p(*discordant):.4g}"),
        difference=round(float(difference), 2),
        low=round(low, 2),
        high=round(high, 2),
        excludes_zero=excludes_zero,
        winner=("a" if low > 0 else "b") if excludes_zero else None,
    )


def paired_stats(
    records: Sequence[dict],
    a: str,
    b: str,
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> list[PairedStats]:
    """A against B: one row per task, then the `average` row; the same seed gives the same intervals."""
    if resamples < 1 or not 0 < confidence < 1:
        raise DllgError(
            f"resamples={resamples}, confidence={confidence}: give resamples >= 1, 0 < confidence < 1"
        )
    pairs = paired_records(records, a, b)
    correct = {
        task: np.array([[int(ra["correct"]), int(rb["correct"])] for ra, rb in rows], dtype=float)
        for task, rows in pairs.items()
    }
    # differences in points, so that the intervals read as the table's columns do
    differences = [100.0 * (c[:, 0] - c[:, 1]) for c in correct.values()]
    resampled = bootstrap_differences(differences, resamples, seed)
    rows = []
    for (task, c), values, means in zip(correct.items(), differences, resampled, strict=True):
        discordant = (
            int(((c[:, 0] == 1) & (c[:, 1] == 0)).sum()),
            int(((c[:, 0] == 0) & (c[:, 1] == 1)).sum()),
        )
        accuracies = (100.0 * c[:, 0].mean(), 100.0 * c[:, 1].mean())
        rows.append(_stats(task, len(c), accuracies, discordant, values.mean(), means, confidence))
    macro_a, macro_b = (float(np.mean([100.0 * c[:, i].mean() for c in correct.values()])) for i in (0, 1))
    rows.append(
        _stats(
            AVERAGE,
            sum(len(c) for c in correct.values()),
            (macro_a, macro_b),
            (sum(r.a_right_b_wrong for r in rows), sum(r.a_wrong_b_right for r in rows)),
            float(np.mean([values.mean() for values in differences])),
            resampled.mean(0),
            confidence,
        )
    )
    return rows
