"""`dllg eval`: methods x task examples -> one JSONL record each, and the results table.

A record per (method, task, split, example_id), appended as each batch is verified:

  {"method", "task", "split", "example_id", "experts", "response", "verdict", "reason", "correct",
   "tokens", "finish", "generation"}  + for fused methods  {"weights", "weight_mean", "weight_var",
   "weight_entropy"}

`weights` is the (tokens, K) per-token expert weights rounded to 4 decimals; `weight_var` is each expert's
variance across tokens; `weight_entropy` the mean over tokens of the entropy (nats) of the normalised
weights; `generation` the settings it was generated with. A rerun skips every key already in the file, so
a killed run loses at most the batch in flight and duplicates nothing; a rerun with other experts or other
generation settings is refused. The table (rows: methods, columns: tasks + macro `avg`) is computed from
the records.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dllg.decode import GenerationConfig
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.jsonl import append_records, read_records
from dllg.pipeline.batching import batches
from dllg.pipeline.methods import EvalItem, Method, MethodOutput, RecordKey, make_method
from dllg.tasks.base import Example, get_task
from dllg.tasks.scoring import verify_responses
from dllg.verify import Verdict

WEIGHT_DECIMALS = 4  # per-token weights: enough to plot, small on disk
STAT_DECIMALS = 6  # summary statistics; dllg-static regenerates with `weight_mean`, so keep it precise


@dataclass(frozen=True)
class EvalTask:
    """The examples of one task split to evaluate on."""

    name: str
    split: str
    examples: list[Example]


def load_eval_tasks(specs: Sequence[str], limit: int | None = None) -> list[EvalTask]:
    """`name` is the task's default (evaluation) split; `name:split` selects another."""
    tasks = []
    for spec in specs:
        name, _, split = spec.strip().partition(":")
        task = get_task(name)
        split = split or task.default_split
        tasks.append(EvalTask(name, split, task.load(split, limit=limit)))
    return tasks


def with_requirements(methods: Sequence[Method]) -> list[Method]:
    """Each method after the ones it requires (added when missing), each name once."""
    ordered: dict[str, Method] = {}
    for method in methods:
        for required in method.requires:
            ordered.setdefault(required, make_method(required))
        ordered.setdefault(method.name, method)
    return list(ordered.values())


def record_key(record: dict) -> RecordKey:
    return (record.get("method"), record.get("task"), record.get("split"), record.get("example_id"))


def weight_stats(weights: torch.Tensor) -> dict:
    """Per-token weights (rounded) and their spread across tokens: the referee's dynamics diagnostics."""
    weights = weights.double()
    probs = weights / weights.sum(-1, keepdim=True).clamp(min=1e-12)
    entropy = -(probs * probs.clamp(min=1e-12).log()).sum(-1)  # 0 log 0 = 0
    return {
        "weights": [[round(w, WEIGHT_DECIMALS) for w in row] for row in weights.tolist()],
        "weight_mean": [round(w, STAT_DECIMALS) for w in weights.mean(0).tolist()],
        "weight_var": [round(w, STAT_DECIMALS) for w in weights.var(0, correction=0).tolist()],
        "weight_entropy": round(entropy.mean().item(), STAT_DECIMALS),
    }


def make_record(
    method: str, item: EvalItem, output: MethodOutput, verdict: Verdict, experts: list[str]
) -> dict:
    record = {
        "method": method,
        "task": item.task,
        "split": item.split,
        "example_id": item.example.id,
        "experts": experts,
        "response": output.response,
        "verdict": verdict.status,
        "reason": verdict.reason,
        "correct": int(verdict.passed),
        "tokens": output.tokens,
        "finish": output.finish,
    }
    if output.weights is not None:
        record.update(weight_stats(output.weights))
    return {**record, **output.extra}


def generation_settings(config: GenerationConfig) -> dict:
    """What a record's answer depends on besides the method and the prompt; kept in every record."""
    return {
        "max_new_tokens": config.max_new_tokens,
        "min_new_tokens": config.min_new_tokens,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "seed": config.seed,
        "stop": list(config.stop),
    }


def _check_resumable(done: dict[RecordKey, dict], experts: list[str], settings: dict, out_path: Path) -> None:
    """Records made with other experts or other generation settings would mix into one table unnoticed."""
    for record in done.values():
        if record.get("experts", experts) != experts:
            raise DllgError(
                f"{out_path} holds records made with experts {record['experts']}, not {experts}: "
                "resume with the same experts in the same order, or write to another --out"
            )
        earlier = record.get("generation", settings)  # files from before settings were recorded pass
        if earlier != settings:
            changed = ", ".join(f"{k}={earlier.get(k)!r}" for k in settings if earlier.get(k) != settings[k])
            raise DllgError(
                f"{out_path} holds records generated with {changed}: resume with the same generation "
                "settings, or write to another --out"
            )


def evaluate(
    pool: ExpertPool,
    methods: Sequence[str | Method],
    tasks: Sequence[str | EvalTask],
    out_path: str | Path,
    generation_config: GenerationConfig | None = None,
    batch_size: int = 8,
    workers: int = 2,
    limit: int | None = None,
) -> dict[str, int]:
    """Write a record for every (method, task example) not in `out_path` yet; returns this run's counts.

    Methods another one requires (dllg-static:X needs dllg:X) are evaluated first and kept."""
    if batch_size < 1:
        raise DllgError(f"batch_size={batch_size}: it must be at least 1")
    out_path = Path(out_path)
    config = generation_config or GenerationConfig()
    chosen = with_requirements([make_method(m) if isinstance(m, str) else m for m in methods])
    loaded = [load_eval_tasks([t], limit)[0] if isinstance(t, str) else t for t in tasks]
    for method in chosen:
        method.prepare(pool)
    done = {record_key(r): r for r in read_records(out_path)}
    settings = generation_settings(config)
    _check_resumable(done, pool.names, settings, out_path)

    todo = _pending(chosen, loaded, done)
    total = sum(len(items) for _, items in todo)
    skipped = sum(len(t.examples) for t in loaded) * len(chosen) - total
    counts = {"generated": 0, "correct": 0, "skipped": skipped}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        bar = progress.add_task(f"evaluating ({counts['skipped']} done before)", total=total)
        for method, items in todo:
            for batch in batches(items, batch_size):
                progress.update(bar, description=f"{method.name} on {batch[0].task}")
                records = [
                    r | {"generation": settings}
                    for r in _run_batch(pool, method, batch, config, done, workers)
                ]
                append_records(out_path, records)
                done.update((record_key(r), r) for r in records)
                counts["generated"] += len(records)
                counts["correct"] += sum(r["correct"] for r in records)
                progress.advance(bar, len(batch))
    return counts


def _pending(
    methods: list[Method], tasks: list[EvalTask], done: dict[RecordKey, dict]
) -> list[tuple[Method, list[EvalItem]]]:
    """Per (method, task): the examples without a record yet, in task order."""
    return [
        (
            method,
            [
                EvalItem(t.name, t.split, e)
                for e in t.examples
                if (method.name, t.name, t.split, e.id) not in done
            ],
        )
        for method in methods
        for t in tasks
    ]


def _run_batch(
    pool: ExpertPool,
    method: Method,
    batch: list[EvalItem],
    config: GenerationConfig,
    done: dict[RecordKey, dict],
    workers: int,
) -> list[dict]:
    outputs = method.run(pool, batch, config, done)
    if len(outputs) != len(batch):
        raise DllgError(f"method {method.name!r} gave {len(outputs)} responses for {len(batch)} examples")
    verdicts = verify_responses([i.example for i in batch], [o.response for o in outputs], workers)
    return [
        make_record(method.name, item, output, verdict, pool.names)
        for item, output, verdict in zip(batch, outputs, verdicts, strict=True)
    ]


# --- the results table ---------------------------------------------------------------------------------


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


def method_names(names: Sequence[str]) -> list[str]:
    """The methods `evaluate` runs for these names, required ones included, in order."""
    return [m.name for m in with_requirements([make_method(n) for n in names])]


def _column(record: dict, multi_split: set[str]) -> str:
    return f"{record['task']}:{record['split']}" if record["task"] in multi_split else record["task"]


def _columns(records: Sequence[dict]) -> tuple[list[str], set[str]]:
    """Task columns in first-seen order; a task seen with several splits gets one column per split."""
    splits: dict[str, set[str]] = {}
    for r in records:
        splits.setdefault(r["task"], set()).add(r["split"])
    multi = {task for task, found in splits.items() if len(found) > 1}
    return list(dict.fromkeys(_column(r, multi) for r in records)), multi


def _percent(values: list[int]) -> float:
    return 100.0 * sum(values) / len(values)


def results_table(records: Sequence[dict]) -> list[dict]:
    """One row per method (first-seen order): {"method", <task>: % correct, ..., "avg": macro average}.

    A task the method has no records for is None, and so is its avg: an average over fewer tasks would
    not compare with the other rows."""
    columns, multi = _columns(records)
    by_cell: dict[tuple[str, str], list[int]] = {}
    for r in records:
        by_cell.setdefault((r["method"], _column(r, multi)), []).append(int(r["correct"]))
    rows = []
    for method in dict.fromkeys(r["method"] for r in records):
        cells = [by_cell.get((method, column)) for column in columns]
        scores = [_percent(cell) if cell else None for cell in cells]
        # the macro average of the unrounded scores, rounded once
        avg = round(sum(scores) / len(scores), 2) if None not in scores else None
        row = {"method": method} | {
            c: None if s is None else round(s, 2) for c, s in zip(columns, scores, strict=True)
        }
        rows.append(row | {"avg": avg})
    return rows


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
