"""`dllg collect`: each expert answers each training prompt alone; a verifier labels the answer 0/1.

The label table is JSONL, one record per (example, expert), appended as each batch is verified:

  {"example_id", "task", "split", "expert", "response", "verdict", "reason", "label", "tokens", "finish"}

`label` is 1 when the verdict is "pass". A rerun skips every (example, expert) already in the table, so a
killed run loses at most the batch in flight and duplicates nothing. The routing baselines read the same
table.
"""

from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dllg.decode import GenerationConfig, generate
from dllg.decode.prompts import encode_prompt
from dllg.experts import ExpertPool
from dllg.fusion import make_rule
from dllg.jsonl import append_records, read_records
from dllg.pipeline.batching import batches
from dllg.tasks.base import Example
from dllg.tasks.scoring import verify_responses


@dataclass
class TaskExample:
    task: str
    split: str
    example: Example


def read_labels(path: str | Path) -> list[dict]:
    return list(read_records(path))


def collect_labels(
    pool: ExpertPool,
    examples: list[TaskExample],
    out: str | Path,
    config: GenerationConfig,
    batch_size: int = 8,
    workers: int = 2,
) -> dict[str, int]:
    """Fill the label table for every (example, expert) pair not in it yet; returns counts for this run."""
    done = {(r.get("example_id"), r.get("expert")) for r in read_records(out)}
    todo = [
        (k, item)
        for k, name in enumerate(pool.names)
        for item in examples
        if (item.example.id, name) not in done
    ]
    counts = {"generated": 0, "correct": 0, "skipped": len(examples) * len(pool) - len(todo)}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        bar = progress.add_task(f"collecting ({counts['skipped']} done before)", total=len(todo))
        for expert_index in range(len(pool)):
            mine = [item for k, item in todo if k == expert_index]
            rule = make_rule("single", expert=expert_index)
            for batch in batches(mine, batch_size):
                prompts = [encode_prompt(pool.tokenizer, item.example.messages) for item in batch]
                generations = generate(pool, rule, prompts, config)
                verdicts = verify_responses(
                    [i.example for i in batch], [g.text for g in generations], workers
                )
                records = [
                    {
                        "example_id": item.example.id,
                        "task": item.task,
                        "split": item.split,
                        "expert": pool.names[expert_index],
                        "response": generation.text,
                        "verdict": verdict.status,
                        "reason": verdict.reason,
                        "label": int(verdict.passed),
                        "tokens": len(generation.token_ids),
                        "finish": generation.finish_reason,
                    }
                    for item, generation, verdict in zip(batch, generations, verdicts, strict=True)
                ]
                append_records(out, records)
                counts["generated"] += len(records)
                counts["correct"] += sum(r["label"] for r in records)
                progress.advance(bar, len(batch))
    return counts
