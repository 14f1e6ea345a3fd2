"""`dllg collect`: each expert answers each training prompt alone; a verifier labels the answer 0/1.

The label table is JSONL, one record per (example, expert), appended as each answer is done and verified:

  {"example_id", "task", "split", "expert", "response", "verdict", "reason", "label", "tokens", "finish",
   "generation", "expert_weights"}

`label` is 1 when the verdict is "pass"; `generation` holds the generation settings and `expert_weights` a
fingerprint of the expert's files. A rerun skips every (example, expert) already in the table, so a killed run
loses at most the answers in flight and duplicates nothing; a rerun with other generation settings, or with an
expert whose files changed since (retrained under the same name), is refused. The routing baselines read
the same table.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dllg.decode import GenerationConfig, generate_stream
from dllg.decode.prompts import encode_prompt
from dllg.experts import ExpertPool
from dllg.fusion import make_rule
from dllg.jsonl import read_records
from dllg.pipeline.resumable import WorkGroup, append_as_done, refuse_changed
from dllg.sources.fingerprint import weights_fingerprint
from dllg.tasks.base import Example
from dllg.tasks.scoring import require_verifiers, verify_responses

FRESH_HINT = "resume with the same settings and experts, or collect with --fresh (the old table is set aside)"


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
    out = Path(out)
    require_verifiers([item.example for item in examples])
    settings = config.settings()
    fingerprints = [weights_fingerprint(e.source) for e in pool.experts]
    existing = list(read_records(out))
    for name, fingerprint in zip(pool.names, fingerprints, strict=True):
        mine = [r for r in existing if r.get("expert") == name]
        refuse_changed(mine, {"generation": settings, "expert_weights": fingerprint}, out, FRESH_HINT)
    done = {(r.get("example_id"), r.get("expert")) for r in existing}

    def answer(expert_index: int):
        rule = make_rule("single", expert=expert_index)

        def stream(items: list[TaskExample], max_rows: int) -> Iterator[list[dict]]:
            prompts = [encode_prompt(pool.tokenizer, item.example.messages) for item in items]
            for index, generation in generate_stream(pool, rule, prompts, config, max_rows=max_rows):
                item = items[index]
                verdict = verify_responses(
                    [item.example], [generation.text], workers, finishes=[generation.finish_reason]
                )[0]
                yield [
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
                        "generation": settings,
                        **config.drafting(),
                        "expert_weights": fingerprints[expert_index],
                    }
                ]

        return stream

    groups = [
        WorkGroup(name, [i for i in examples if (i.example.id, name) not in done], answer(k))
        for k, name in enumerate(pool.names)
    ]
    skipped = len(examples) * len(pool) - sum(len(g.items) for g in groups)
    return append_as_done(out, groups, batch_size, skipped, "label", "collecting")
