"""Running the models for the hand-over analysis: a fused answer read again with teacher forcing (the
weights and every expert's scores at a token), and a record decoded again to check it reproduces."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dllg.decode import GenerationConfig
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.fusion import FusionRule
from dllg.fusion.recording import RecordingRule
from dllg.harness.scoring import score_continuations
from dllg.pipeline.batching import batches
from dllg.pipeline.methods import EvalItem, generate_items
from dllg.tasks.base import Example


def key(record: dict) -> tuple[str, str]:
    """A record's example within its task: (split, example id)."""
    return record.get("split") or "", record["example_id"]


@dataclass
class ForcedToken:
    """The last position of a teacher-forced continuation, and the weights up to it."""

    expert_logits: torch.Tensor  # (K, V)
    scores: torch.Tensor  # (V,) the fused scores
    weights: torch.Tensor  # (positions, K): the rule's weights at every continuation position so far


def teacher_force(
    pool: ExpertPool,
    rule: FusionRule,
    prompts: list[list[int]],
    continuations: list[list[int]],
    batch_size: int,
) -> list[ForcedToken]:
    """Each continuation read after its prompt in one pass per batch; its last position's outputs."""
    if len(rule.bind(pool.names)) != len(pool):
        raise DllgError(f"rule {rule.name!r} leaves some experts out: the hand-over needs both running")
    forced: list[ForcedToken] = []
    rows = list(range(len(prompts)))
    for batch in batches(rows, batch_size):
        recorder = RecordingRule(rule)
        # one position per row and step, as decoding feeds them: one pass over many positions rounds
        # differently in bf16 (weights off by up to 1e-2), enough to flip near-ties at a departure
        contexts, conts = [prompts[i] for i in batch], [continuations[i] for i in batch]
        score_continuations(pool, recorder, contexts, conts, chunk_positions=len(batch))
        logits = torch.cat([call[0] for call in recorder.calls], dim=1)  # (B, T, K, V)
        scores = torch.cat([call[1].scores for call in recorder.calls], dim=1)
        weights = torch.cat([call[1].weights for call in recorder.calls], dim=1).float()
        for row, index in enumerate(batch):
            last = len(continuations[index]) - 1
            forced.append(ForcedToken(logits[row, last], scores[row, last], weights[row, : last + 1]))
    return forced


def rank_of(scores: torch.Tensor, token: int) -> int:
    """1 for the top-scored token; ties count in the token's favour."""
    return int((scores > scores[token]).sum()) + 1


@dataclass
class Reproduction:
    example_id: str
    matches: bool  # the loop's response now is the record's, character for character
    response_now: str
    weights_gap: float  # max |record - now| over the per-token weights; nan when the token counts differ
    generated_ids: list[int]


def generation_config(record: dict) -> GenerationConfig:
    settings = dict(record.get("generation") or {})
    if not settings:
        raise DllgError(
            f"{record['example_id']}: the record has no `generation` settings to decode again with"
        )
    config = GenerationConfig(**settings)
    if not config.greedy:
        raise DllgError(
            f"{record['example_id']}: sampled with temperature {config.temperature}; the reproduction check "
            "and the departure analysis need greedy records (temperature 0)"
        )
    return config


def weights_gap(recorded: Sequence[Sequence[float]] | None, now: torch.Tensor) -> float:
    if recorded is None or len(recorded) != now.shape[0]:
        return math.nan
    return (
        float((torch.tensor(recorded, dtype=torch.float32) - now.float()).abs().max())
        if len(recorded)
        else 0.0
    )


def reproduce(
    pool: ExpertPool,
    rule: FusionRule,
    records: list[dict],
    examples: dict[tuple[str, str], Example],
    batch_size: int,
) -> dict[str, Reproduction]:
    """Every record decoded again, in record order and batches of `batch_size` (as `dllg eval` cut them)."""
    found: dict[str, Reproduction] = {}
    for batch in batches(records, batch_size):
        configs = {repr(generation_config(r)) for r in batch}
        if len(configs) > 1:
            raise DllgError("the records were generated with different settings: analyse them separately")
        items = [EvalItem(r["task"], r.get("split", ""), examples[key(r)]) for r in batch]
        for record, generation in zip(
            batch, generate_items(pool, rule, items, generation_config(batch[0])), strict=True
        ):
            found[record["example_id"]] = Reproduction(
                record["example_id"],
                generation.text == record["response"],
                generation.text,
                weights_gap(record.get("weights"), generation.weights),
                list(generation.token_ids),
            )
    return found
