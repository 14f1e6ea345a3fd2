"""What the per-token expert weights in `dllg eval` records do, by method and task, split by correct and
incorrect responses; and the dynamic-vs-static ablation per task with its paired counts.

Per response, from the record's own diagnostics (`weight_mean`, `weight_var`, `weight_entropy`: eval
computed them from the unrounded weights) and, for what depends on token order, from `weights`:
- a token's leader is the expert with the largest weight; a token whose top two weights are equal (uniform,
  unite, majority where the experts agree) has none: a tie;
- a switch is a token led by another expert than the last token that had a leader; it falls in the third
  of the answer of that token (token i of n is in third min(2, 3i // n)); fewer than 2 tokens: no switches;
- lead shares: the fraction of the response's tokens (of each third) that each expert leads, or a tie.
A group's value is the mean over its responses; a response that lacks what a statistic needs (2 tokens for
switches, a token in that third) is left out of that mean. The correct-vs-incorrect p-value is a two-sided
permutation test of the difference of the two means (numpy only, fixed seed: the same file gives the same
p-values).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from dllg.errors import DllgError
from dllg.jsonl import read_records
from dllg.pipeline.paired import mcnemar_p
from dllg.pipeline.report import task_column, task_columns

THIRDS = ("first", "middle", "last")
GROUPS = ("all", "correct", "incorrect")
TIE = "tie"
PERMUTATIONS = 9999  # the smallest p-value reported is 1 / (PERMUTATIONS + 1)
DYNAMIC_PREFIX, STATIC_PREFIX = "dllg:", "dllg-static:"
REQUIRED_FIELDS = ("method", "task", "example_id", "correct")


def load_records(path: str | Path) -> list[dict]:
    """The evaluation records in `path`; a missing or empty file is an error."""
    path = Path(path)
    if not path.is_file():
        raise DllgError(f"{path}: no such records file; pass the records.jsonl that `dllg eval` wrote")
    records = [r for r in read_records(path) if all(key in r for key in REQUIRED_FIELDS)]
    if not records:
        raise DllgError(f"{path}: no evaluation records in it; pass the records.jsonl that `dllg eval` wrote")
    return records


def has_weights(record: dict) -> bool:
    return record.get("weights") is not None


def weighted_records(records: Sequence[dict], source: str | Path) -> tuple[list[dict], list[str]]:
    """The records that carry per-token weights, and the methods skipped for having none."""
    weighted = [r for r in records if has_weights(r)]
    with_weights = {r["method"] for r in weighted}
    skipped = [m for m in dict.fromkeys(r["method"] for r in records) if m not in with_weights]
    if not weighted:
        raise DllgError(
            f"{source}: no record carries per-token `weights`; only fused methods write them "
            "(e.g. `dllg eval --methods dllg:GATE uniform`)"
        )
    return weighted, skipped


def task_labels(records: Sequence[dict]) -> dict[tuple[str, str | None], str]:
    """(task, split) -> the results table's column for it: the task's name, or `task:split` for a task the
    file holds with several splits."""
    _, multi = task_columns(records)
    return {(r["task"], r.get("split")): task_column(r, multi) for r in records}


def weight_matrix(record: dict) -> np.ndarray:
    """The record's (tokens, K) weights; a malformed list is an error naming the record."""
    experts, rows = record.get("experts") or [], record["weights"]
    if not isinstance(rows, list) or any(
        not isinstance(row, list) or len(row) != len(experts) for row in rows
    ):
        raise DllgError(
            f"{record['method']} {record['example_id']}: `weights` is not a (tokens, {len(experts)}) list "
            f"for its experts {experts}; rewrite the record with `dllg eval`"
        )
    return np.asarray(rows, dtype=float).reshape(len(rows), len(experts))


def leaders(weights: np.ndarray) -> np.ndarray:
    """Per token the index of the expert with the largest weight, or -1 where the largest is shared."""
    lead = weights.argmax(axis=1) if len(weights) else np.zeros(0, dtype=int)
    if weights.shape[1] > 1 and len(weights):
        top_two = np.sort(weights, axis=1)[:, -2:]
        lead[top_two[:, 1] == top_two[:, 0]] = -1  # stored weights are rounded: equal means tied
    return lead


def switch_tokens(lead: np.ndarray) -> list[int]:
    """The tokens at which another expert takes the lead from the last token that had a leader."""
    found, last = [], -1
    for i, expert in enumerate(lead.tolist()):
        if expert < 0:
            continue
        if last >= 0 and expert != last:
            found.append(i)
        last = expert
    return found


def thirds(tokens: int) -> np.ndarray:
    """The third of the answer (0, 1, 2) each of `tokens` tokens falls in."""
    return np.minimum(2, 3 * np.arange(tokens) // max(tokens, 1))


def metric_names(experts: Sequence[str]) -> list[str]:
    """The per-response statistics, in the order the tables show them."""
    leads = [*experts, TIE]
    return [
        "tokens",
        *(f"weight_mean[{e}]" for e in experts),
        *(f"weight_var[{e}]" for e in experts),
        "weight_entropy",
        "switches",
        "switch_rate",
        *(f"switches_{t}" for t in THIRDS),
        *(f"lead[{e}]" for e in leads),
        *(f"lead_{t}[{e}]" for t in THIRDS for e in leads),
    ]


def response_metrics(record: dict) -> dict[str, float]:
    """One response's statistics (NaN where it lacks the tokens one needs), keyed as `metric_names`."""
    experts = record["experts"]
    weights = weight_matrix(record)
    tokens = len(weights)
    values: dict[str, float] = {"tokens": float(tokens)}
    for stat in ("weight_mean", "weight_var"):
        stored = record.get(stat) or [math.nan] * len(experts)
        values |= {f"{stat}[{e}]": float(v) for e, v in zip(experts, stored, strict=True)}
    values["weight_entropy"] = float(record.get("weight_entropy", math.nan))

    lead, third = leaders(weights), thirds(tokens)
    switches = switch_tokens(lead)
    per_third = np.bincount(third[switches], minlength=3) if switches else np.zeros(3, dtype=int)
    values["switches"] = float(len(switches)) if tokens >= 2 else math.nan
    values["switch_rate"] = len(switches) / (tokens - 1) if tokens >= 2 else math.nan
    values |= {
        f"switches_{t}": float(per_third[i]) if tokens >= 2 else math.nan for i, t in enumerate(THIRDS)
    }

    codes = [*range(len(experts)), -1]
    for scope, in_scope in [("lead", np.ones(tokens, bool))] + [
        (f"lead_{t}", third == i) for i, t in enumerate(THIRDS)
    ]:
        scoped = lead[in_scope]
        for code, name in zip(codes, [*experts, TIE], strict=True):
            values[f"{scope}[{name}]"] = float(np.mean(scoped == code)) if len(scoped) else math.nan
    return values


def mean(values: np.ndarray) -> float:
    """The mean of the defined values; NaN when there are none."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else math.nan


@lru_cache(maxsize=4)
def _permutations(size: int, count: int, seed: int) -> np.ndarray:
    """`count` shuffles of range(size), one per row; cached: every statistic of a group reuses them."""
    rng = np.random.default_rng(seed)
    return rng.permuted(np.tile(np.arange(size, dtype=np.int32), (count, 1)), axis=1)


def permutation_p(
    a: np.ndarray, b: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0
) -> float | None:
    """Two-sided permutation p-value of mean(a) - mean(b), NaNs left out; None when a side is empty."""
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if not len(a) or not len(b):
        return None
    pooled = np.concatenate([a, b])
    observed = abs(a.mean() - b.mean())
    shuffled = pooled[_permutations(len(pooled), permutations, seed)]
    differences = np.abs(shuffled[:, : len(a)].mean(1) - shuffled[:, len(a) :].mean(1))
    # a shuffle as extreme as the data counts, up to float noise in the means
    extreme = int((differences >= observed - 1e-12 * max(1.0, observed)).sum())
    return (extreme + 1) / (permutations + 1)


@dataclass(frozen=True)
class GroupSummary:
    """One method on one task: each statistic's mean over all, correct and incorrect responses."""

    method: str
    task: str
    experts: list[str]
    sizes: dict[str, int]  # group -> responses
    short: int  # responses with fewer than 2 tokens (counted, no switches)
    means: dict[str, dict[str, float]]  # group -> statistic -> mean
    p_values: dict[str, float | None]  # statistic -> correct vs incorrect


def summarize(method: str, task: str, records: Sequence[dict]) -> GroupSummary:
    experts = list(records[0]["experts"])
    if any(list(r["experts"]) != experts for r in records):
        raise DllgError(
            f"{method} on {task}: records with different experts; analyze one run's file at a time"
        )
    names = metric_names(experts)
    metrics = [response_metrics(r) for r in records]
    table = np.array([[values[name] for name in names] for values in metrics], dtype=float)
    correct = np.array([bool(r["correct"]) for r in records])
    masks = {"all": np.ones(len(records), bool), "correct": correct, "incorrect": ~correct}
    return GroupSummary(
        method=method,
        task=task,
        experts=experts,
        sizes={g: int(mask.sum()) for g, mask in masks.items()},
        short=int((table[:, 0] < 2).sum()),
        means={g: {n: mean(table[mask, j]) for j, n in enumerate(names)} for g, mask in masks.items()},
        p_values={n: permutation_p(table[correct, j], table[~correct, j]) for j, n in enumerate(names)},
    )


def summaries(records: Sequence[dict]) -> list[GroupSummary]:
    """One summary per method and task of the weighted records, in the file's order."""
    labels = task_labels(records)
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["method"], labels[(r["task"], r.get("split"))]), []).append(r)
    return [summarize(method, task, group) for (method, task), group in groups.items()]


@dataclass(frozen=True)
class StaticComparison:
    """dllg:GATE against dllg-static:GATE (its mean weights, fixed) on one task's shared examples."""

    gate: str
    task: str
    examples: int
    dynamic_correct: int
    static_correct: int
    dynamic_only: int  # dynamic right, static wrong
    static_only: int  # static right, dynamic wrong

    @property
    def dynamic(self) -> float:
        return 100.0 * self.dynamic_correct / self.examples

    @property
    def static(self) -> float:
        return 100.0 * self.static_correct / self.examples

    @property
    def difference(self) -> float:
        return self.dynamic - self.static

    @property
    def mcnemar_p(self) -> float:
        """Exact two-sided McNemar test: the discordant pairs against a fair coin."""
        return mcnemar_p(self.dynamic_only, self.static_only)


def static_comparisons(records: Sequence[dict]) -> list[StaticComparison]:
    """Each dllg:GATE / dllg-static:GATE pair in the records, per task, over the example ids both have."""
    labels = task_labels(records)
    by_method: dict[str, dict[tuple, dict]] = {}
    for r in records:
        by_method.setdefault(r["method"], {})[(r["task"], r.get("split"), r["example_id"])] = r
    found = []
    for method, static in by_method.items():
        if not method.startswith(STATIC_PREFIX):
            continue
        gate = method.removeprefix(STATIC_PREFIX)
        dynamic = by_method.get(DYNAMIC_PREFIX + gate, {})
        pairs: dict[str, list[tuple[bool, bool]]] = {}
        for key, record in dynamic.items():
            if key in static:
                pairs.setdefault(labels[key[:2]], []).append(
                    (bool(record["correct"]), bool(static[key]["correct"]))
                )
        for task, outcomes in pairs.items():
            found.append(
                StaticComparison(
                    gate=gate,
                    task=task,
                    examples=len(outcomes),
                    dynamic_correct=sum(d for d, _ in outcomes),
                    static_correct=sum(s for _, s in outcomes),
                    dynamic_only=sum(d and not s for d, s in outcomes),
                    static_only=sum(s and not d for d, s in outcomes),
                )
            )
    return found


@dataclass(frozen=True)
class Analysis:
    source: Path
    summaries: list[GroupSummary]
    comparisons: list[StaticComparison]
    skipped: list[str]  # methods without per-token weights


def analyze(path: str | Path, methods: Sequence[str] = ()) -> Analysis:
    """The analysis of the records in `path`; of these `methods` only, when given (and their static
    ablations, where dllg:GATE is one of them)."""
    records = load_records(path)
    if methods:
        wanted = set(methods) | {STATIC_PREFIX + m.removeprefix(DYNAMIC_PREFIX) for m in methods}
        unknown = sorted(set(methods) - {r["method"] for r in records})
        if unknown:
            raise DllgError(f"{path}: no records of {', '.join(unknown)}; name methods it holds")
        records = [r for r in records if r["method"] in wanted]
    weighted, skipped = weighted_records(records, path)
    return Analysis(Path(path), summaries(weighted), static_comparisons(records), skipped)


def position_profile(weights: Sequence[np.ndarray], bins: int = 10) -> np.ndarray:
    """(bins, K): the mean weight of each expert by relative position in the answer, averaged over
    responses (each response's mean in the bin first); NaN where no response has a token in the bin."""
    per_response = []
    for w in weights:
        if not len(w):
            continue
        bin_of = ((np.arange(len(w)) + 0.5) / len(w) * bins).astype(int)
        sums = np.zeros((bins, w.shape[1]))
        np.add.at(sums, bin_of, w)
        counts = np.bincount(bin_of, minlength=bins)[:, None]
        per_response.append(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan))
    if not per_response:
        return np.full((bins, weights[0].shape[1] if len(weights) else 0), np.nan)
    stacked = np.stack(per_response)
    defined = (~np.isnan(stacked)).sum(0)
    return np.where(defined > 0, np.nansum(stacked, 0) / np.maximum(defined, 1), np.nan)
