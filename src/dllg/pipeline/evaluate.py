"""`dllg eval`: methods x task examples -> one JSONL record each, and the results table.

A record per (method, task, split, example_id), appended as each response is done and verified (methods that
generate keep `batch_size` rows decoding, a finished row's place taken by the next example):

  {"method", "task", "split", "example_id", "experts", "response", "verdict", "reason", "correct",
   "tokens", "finish", "generation", "expert_weights"[, "method_weights"][, "speculate", "draft_tokens"]}
  + for fused methods {"weights", "weight_mean", "weight_var", "weight_entropy"}
  + for methods decoded together (--together) {"decoded_with": the other methods that shared its rows}

`weights` is the (tokens, K) per-token expert weights rounded to 4 decimals; `weight_var` is each expert's
variance across tokens; `weight_entropy` the mean over tokens of the entropy (nats) of the normalised
weights; `generation` the settings it was generated with (and `speculate`/`draft_tokens` how it was
drafted, if it was: another drafter may resume a run); `expert_weights` the experts' weight
fingerprints and `method_weights` a digest of the method's gate or router files. A rerun skips every key
already in the file, so a killed run loses at most the rows in flight and duplicates nothing; a rerun with
other experts, weights or generation settings is refused. The tables are computed from the records
(`dllg.pipeline.report`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from dllg.decode import GenerationConfig
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.jsonl import read_records
from dllg.pipeline.methods import EvalItem, Method, MethodOutput, RecordKey, make_method
from dllg.pipeline.resumable import WorkGroup, append_as_done, refuse_changed
from dllg.pipeline.together import together_methods, together_stream
from dllg.sources.fingerprint import weights_fingerprint
from dllg.tasks.base import Example, get_task
from dllg.tasks.scoring import require_verifiers, verify_responses
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


FRESH_HINT = (
    "resume with the same experts (in the same order, unchanged), gates, routers and generation settings, "
    "or write to another --out"
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
    together: bool = False,
) -> dict[str, int]:
    """Write a record for every (method, task example) not in `out_path` yet; returns this run's counts.

    Methods another one requires (dllg-static:X needs dllg:X) are evaluated first and kept. `together`:
    the fused methods decode each example together (`dllg.pipeline.together`; greedy, no drafter)."""
    if batch_size < 1:
        raise DllgError(f"batch_size={batch_size}: it must be at least 1")
    config = generation_config or GenerationConfig()
    if together and (config.speculate != "none" or not config.greedy):
        raise DllgError("--together decodes greedily without a drafter: drop --speculate or --together")
    out_path = Path(out_path)
    chosen = with_requirements([make_method(m) if isinstance(m, str) else m for m in methods])
    loaded = [load_eval_tasks([t], limit)[0] if isinstance(t, str) else t for t in tasks]
    require_verifiers([e for t in loaded for e in t.examples])
    for method in chosen:
        method.prepare(pool)
    done = {record_key(r): r for r in read_records(out_path)}
    settings = config.settings()
    made_with = {
        "experts": pool.names,
        "expert_weights": [weights_fingerprint(e.source) for e in pool.experts],
        "generation": settings,
    }
    refuse_changed(done.values(), made_with, out_path, FRESH_HINT)
    digests = {method.name: method.weights_digest() for method in chosen}
    for method in chosen:
        if digests[method.name] is not None:
            mine = [r for r in done.values() if r.get("method") == method.name]
            refuse_changed(mine, {"method_weights": digests[method.name]}, out_path, FRESH_HINT)

    def extra(method: Method) -> dict:
        digest = {"method_weights": digests[method.name]} if digests[method.name] else {}
        return made_with | config.drafting() | digest

    def group(method: Method, items: list[EvalItem]) -> WorkGroup:
        def stream(items: list[EvalItem], max_rows: int) -> Iterator[list[dict]]:
            for index, output in _outputs(method.stream(pool, items, config, done, max_rows), method, items):
                yield [verified(method, items[index], output) | extra(method)]

        return WorkGroup(f"{method.name} on {items[0].task}" if items else method.name, items, stream)

    def verified(method: Method, item: EvalItem, output: MethodOutput) -> dict:
        verdict = verify_responses([item.example], [output.response], workers, finishes=[output.finish])[0]
        return make_record(method.name, item, output, verdict, pool.names)

    def shared_record(method: Method, item: EvalItem, output: MethodOutput, others: list[str]) -> dict:
        return verified(method, item, output) | {"decoded_with": others} | extra(method)

    pending = _pending(chosen, loaded, done)
    shared = together_methods(chosen, pending) if together else []
    groups: list[WorkGroup] = []
    for method in chosen:  # in order: a method after the ones it requires
        if method is (shared[0] if shared else None):
            stream = together_stream(pool, shared, config, done, shared_record)
            for task in loaded:
                pairs = [
                    (m, i)
                    for m, items in pending
                    if m in shared
                    for i in items
                    if (i.task, i.split) == (task.name, task.split)
                ]
                groups.append(WorkGroup(f"{len(shared)} methods together on {task.name}", pairs, stream))
        elif method not in shared:
            groups += [group(m, items) for m, items in pending if m is method]
    skipped = sum(len(t.examples) for t in loaded) * len(chosen) - sum(len(g.items) for g in groups)
    return append_as_done(
        out_path,
        groups,
        batch_size,
        skipped,
        "correct",
        "evaluating",
        on_records=lambda records: done.update((record_key(r), r) for r in records),
    )


def method_names(names: Sequence[str]) -> list[str]:
    """The methods `evaluate` runs for these names, required ones included, in order."""
    return [m.name for m in with_requirements([make_method(n) for n in names])]


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


def _outputs(
    stream: Iterator[tuple[int, MethodOutput]], method: Method, items: list[EvalItem]
) -> Iterator[tuple[int, MethodOutput]]:
    """A method's (item index, output) stream, each item answered once."""
    seen: set[int] = set()
    for index, output in stream:
        if index in seen or not 0 <= index < len(items):
            raise DllgError(f"method {method.name!r} gave a second or unknown response (item {index})")
        seen.add(index)
        yield index, output
