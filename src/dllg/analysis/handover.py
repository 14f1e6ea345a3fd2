"""Where a fused answer leaves the solution the experts learnt, and who was leading there: the hand-over
between a derivation expert and a code expert, read back from one fused method's `dllg eval` records.

The answers it reads first derive something in text lines and then write one fenced code block (the
world's `world-mixed`: step lines and `k = N`, then a ```python block): the derivation expert should lead
up to the fence, the code expert from the fence on. For each failed response:

1. the target. The experts were trained on one answer per prompt, the task's reference solution (the
   derivation expert on its lines before the fence, the code expert on its code block). A code verifier
   runs only the code block, though, so any derivation followed by the reference's code block is correct
   too. When the response's derivation ends in the reference's last line (`k = N` with the right N) but
   took other steps there, its own derivation followed by the reference's code is the nearest correct
   solution and is the target; otherwise the reference is. The response leaves every correct solution
   where it leaves its target: within the world's format the code block is fixed by the problem, and a
   derivation that ends on another last line carries another constant into it.
2. the departure: the first token where the response (its text re-encoded, plus end-of-sequence when it
   ended there) differs from the target (plus end-of-sequence). The target's token there may be the
   end-of-sequence (the response goes on past the target's end); the response's may be too (it stopped
   early), or be missing (it ran out of new tokens first).
3. teacher forcing: prompt + target up to the departure through every expert and the method's rule, one
   token per step as decoding feeds them (`dllg.harness.scoring.score_continuations`, with a rule wrapper
   that keeps each expert's logits and the rule's weights at every position): the top-1 token and the
   target token's rank under each expert and under the fused scores, and the weights at the departure and
   before it.
4. the kind (`classify`), from the segment the departure is in, who leads (the larger weight), and which
   experts rank the target token first.

Before that, every record of the method and task is decoded again through the one decode loop with the
same rule and generation settings (`reproduce`): responses that differ now are reported, not hidden.
Steps 1 and 2 are `dllg.analysis.answer_target`, step 3 `dllg.analysis.handover_replay`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from dllg.analysis.answer_target import (
    CODE,
    DERIVATION,
    Departure,
    Segments,
    answer_segments,
    encode_text,
    find_departure,
    nearest_correct,
    split_answer,
    trailing_note,
)
from dllg.analysis.dynamics import load_records
from dllg.analysis.handover_replay import (
    ForcedToken,
    Reproduction,
    key,
    rank_of,
    reproduce,
    teacher_force,
)
from dllg.decode.prompts import encode_prompt
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.experts.loading import load_expert
from dllg.fusion import FusionRule, make_rule
from dllg.pipeline.methods import RuleMethod, make_method
from dllg.tasks.base import Example, get_task

DERIVATION_ROLE, CODE_ROLE = 0, 1  # expert roles; pairs below are (derivation expert, code expert)

TOO_EARLY = "handed over too early"
TOO_LATE = "handed over too late"
NEVER = "never handed over"
OWN_EXPERT_WRONG = "segment's own expert led and erred, the other had it"
BOTH_WRONG = "both experts wrong at that token"
FUSED_DISAGREES = "fused disagrees though the leader is right"
TIED = "tied weights, no leader"
NOT_REPRODUCED = "fused picks the target token when teacher-forced"
KINDS = (TOO_EARLY, TOO_LATE, NEVER, OWN_EXPERT_WRONG, BOTH_WRONG, FUSED_DISAGREES, TIED, NOT_REPRODUCED)


# --- the kinds ---------------------------------------------------------------------------------------


def leader(weights: Sequence[float]) -> int | None:
    """The role with the larger weight; None on a tie."""
    if weights[DERIVATION_ROLE] == weights[CODE_ROLE]:
        return None
    return DERIVATION_ROLE if weights[DERIVATION_ROLE] > weights[CODE_ROLE] else CODE_ROLE


def classify(
    segment: str,
    weights: Sequence[float],
    top1_right: Sequence[bool],
    fused_right: bool,
    code_led_before: bool,
) -> str:
    """The kind of a departure. `weights` and `top1_right` (the expert's top-1 token is the target's) are
    pairs in role order; `code_led_before`: the code expert had the larger weight at some earlier token."""
    if fused_right:
        return NOT_REPRODUCED
    if not any(top1_right):
        return BOTH_WRONG
    lead = leader(weights)
    if lead is None:
        return TIED
    if top1_right[lead]:
        return FUSED_DISAGREES
    # the leader is wrong, the other expert right
    if lead == DERIVATION_ROLE and segment == CODE:
        return TOO_LATE if code_led_before else NEVER
    if lead == CODE_ROLE and segment == DERIVATION:
        return TOO_EARLY
    return OWN_EXPERT_WRONG


# --- the analysis ------------------------------------------------------------------------------------


@dataclass
class Failure:
    """One failed response at its departure from the target."""

    example_id: str
    prompt: str
    tags: list[str]
    finish: str
    target_kind: str
    note: str  # trailing differences only, if so
    index: int  # the departure's token position in the answer
    answer_tokens: int  # the target's tokens, end-of-sequence included
    segment: str
    part: str
    prefix_tail: list[int]  # the shared prefix's last few tokens
    target_token: int
    chosen_token: int | None
    fused_top1: int
    expert_top1: tuple[int, int]  # role order
    expert_rank: tuple[int, int]  # the target token's rank under each expert, role order
    fused_rank: int
    weights: list[tuple[float, float]]  # role order, at the prefix tail's tokens and then the departure
    code_led_before: bool
    first_code_lead: int | None  # the first token the code expert led, if any before the departure
    kind: str
    reproduced: bool
    canonical_tokens: bool  # the generated token ids are the response text's re-encoding


@dataclass
class HandoverAnalysis:
    records_path: str
    method: str
    task: str
    experts: tuple[str, str]  # role order
    responses: int
    failures: list[Failure]
    reproductions: list[Reproduction]
    forced_weights_gap: float  # max |record - teacher-forced| weight before and at the departures
    context: int
    tokenizer: PreTrainedTokenizerBase = field(repr=False)
    # outcome -> (segment, leading role or None on a tie) -> tokens, from the per-token weights
    leads: defaultdict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    passed_off_reference: list[str] = field(default_factory=list)  # passed, though not the reference

    def token_text(self, token: int | None) -> str:
        return "(no token: out of new tokens)" if token is None else self.tokenizer.decode([token])


def select_records(path: str | Path, method: str, task: str) -> list[dict]:
    records = load_records(path)
    chosen = [r for r in records if r["method"] == method and r["task"] == task]
    if not chosen:
        pairs = sorted({f"{r['method']} on {r['task']}" for r in records})
        raise DllgError(f"{path}: no records of {method} on {task}; it holds {', '.join(pairs)}")
    return chosen


def task_examples(task: str, records: list[dict]) -> dict[tuple[str, str], Example]:
    examples: dict[tuple[str, str], Example] = {}
    splits = {r.get("split") or get_task(task).default_split for r in records}
    for split in splits:
        examples.update({(split, e.id): e for e in get_task(task).load(split)})
    for record in records:
        record.setdefault("split", get_task(task).default_split)
        example = examples.get(key(record))
        if example is None:
            raise DllgError(f"{record['example_id']}: not an example of {task}:{record['split']} any more")
        if not example.metadata.get("solution"):
            raise DllgError(f"{record['example_id']}: the task gives no reference solution to compare with")
    return examples


def expert_roles(experts: list[str], derivation: str | None, code: str | None) -> tuple[str, str]:
    if len(experts) != 2:
        raise DllgError(f"the records fuse {len(experts)} experts; the hand-over analysis takes two")
    roles = (derivation or experts[0], code or experts[1])
    if sorted(roles) != sorted(experts):
        raise DllgError(f"experts {list(roles)} are not the records' two experts {experts}: name those")
    return roles


def rule_of(method: str) -> FusionRule:
    spec = make_method(method)
    if not isinstance(spec, RuleMethod):
        raise DllgError(f"method {method!r} does not fuse by one rule: give a fused method such as dllg:GATE")
    return make_rule(spec.rule_name, **spec.options)


@dataclass
class Case:
    """A failed record, its target and where the response leaves it."""

    record: dict
    example: Example
    target: str
    target_kind: str
    target_ids: list[int]  # end-of-sequence included
    response_ids: list[int]  # the response text re-encoded, end-of-sequence included when it ended so
    departure: Departure


def failed_case(record: dict, example: Example, tokenizer: PreTrainedTokenizerBase) -> Case:
    target, target_kind = nearest_correct(example.metadata["solution"], record["response"])
    eos = tokenizer.eos_token_id
    target_ids = [*encode_text(tokenizer, target), eos]
    response_ids = encode_text(tokenizer, record["response"]) + [eos] * (record.get("finish") == "eos")
    departure = find_departure(target_ids, response_ids)
    if departure is None:
        raise DllgError(f"{record['example_id']}: failed, yet its response is its target ({target_kind})")
    return Case(record, example, target, target_kind, target_ids, response_ids, departure)


def lead_counts(weights: torch.Tensor, segments: Segments, upto: int) -> Counter:
    """(segment, role) -> tokens that role led among the first `upto`; `weights` (tokens, 2) in role order."""
    counts: Counter = Counter()
    for index in range(min(upto, weights.shape[0])):
        counts[(segments.segment(index), leader(weights[index].tolist()))] += 1
    return counts


def analyze_handover(
    records_path: str | Path,
    method: str,
    task: str,
    derivation_expert: str | None = None,
    code_expert: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 64,
    context: int = 3,
) -> HandoverAnalysis:
    """Reproduce the method's records on the task, then find and classify every failure's departure."""
    if batch_size < 1 or context < 0:
        raise DllgError("--batch-size must be at least 1 and --context at least 0")
    records = select_records(records_path, method, task)
    experts = records[0]["experts"]
    if any(r["experts"] != experts for r in records):
        raise DllgError(f"{records_path}: the {method} records were made with different experts")
    roles = expert_roles(experts, derivation_expert, code_expert)
    order = [experts.index(name) for name in roles]  # pool column of each role
    examples = task_examples(task, records)
    rule = rule_of(method)
    pool = ExpertPool([load_expert(name, device, dtype) for name in experts])
    tokenizer = pool.tokenizer
    reproductions = reproduce(pool, rule, records, examples, batch_size)

    cases = [failed_case(r, examples[key(r)], tokenizer) for r in records if not r["correct"]]
    prompts = [encode_prompt(tokenizer, case.example.messages) for case in cases]
    continuations = [case.target_ids[: case.departure.index + 1] for case in cases]
    forced = teacher_force(pool, rule, prompts, continuations, batch_size)

    analysis = HandoverAnalysis(
        str(records_path), method, task, roles, len(records), [], list(reproductions.values()), 0.0, context,
        tokenizer,
    )  # fmt: skip
    for case, token in zip(cases, forced, strict=True):
        failure = describe(case, token, order, tokenizer, context)
        reproduction = reproductions[case.record["example_id"]]
        failure.reproduced = reproduction.matches
        failure.canonical_tokens = reproduction.generated_ids == case.response_ids
        analysis.failures.append(failure)
        recorded = torch.tensor(case.record.get("weights") or [], dtype=torch.float32)[
            : token.weights.shape[0]
        ]
        if len(recorded):
            gap = float((recorded - token.weights[: len(recorded)]).abs().max())
            analysis.forced_weights_gap = max(analysis.forced_weights_gap, gap)
        segments = answer_segments(tokenizer, case.target)
        analysis.leads["failed, before the departure"] += lead_counts(
            token.weights[:, order], segments, case.departure.index
        )
    for record in records:
        if record["correct"] and record["response"] != examples[key(record)].metadata["solution"]:
            analysis.passed_off_reference.append(record["example_id"])
        if record["correct"] and record.get("weights") and split_answer(record["response"]):
            weights = torch.tensor(record["weights"], dtype=torch.float32)[:, order]
            segments = answer_segments(tokenizer, record["response"])
            analysis.leads["passed"] += lead_counts(weights, segments, weights.shape[0])
    return analysis


def describe(
    case: Case, token: ForcedToken, order: list[int], tokenizer: PreTrainedTokenizerBase, context: int
) -> Failure:
    """One failure at its departure, from its teacher-forced outputs; `order`: each role's pool column."""
    record, departure, target_ids = case.record, case.departure, case.target_ids
    segments = answer_segments(tokenizer, case.target)
    index, wanted = departure.index, departure.target_token
    logits = token.expert_logits[order]  # role order
    weights = token.weights[:, order]
    top1 = tuple(int(x) for x in logits.argmax(-1))
    fused_top1 = int(token.scores.argmax())
    code_leads = (weights[:index, CODE_ROLE] > weights[:index, DERIVATION_ROLE]).nonzero()
    first_code_lead = int(code_leads[0]) if len(code_leads) else None
    kind = classify(
        segments.segment(index),
        weights[index].tolist(),
        [t == wanted for t in top1],
        fused_top1 == wanted,
        first_code_lead is not None,
    )
    start = max(0, index - context)
    return Failure(
        example_id=record["example_id"],
        prompt=case.example.prompt,
        tags=list(case.example.metadata.get("tags", [])),
        finish=record.get("finish", ""),
        target_kind=case.target_kind,
        note=trailing_note(case.target, record["response"]),
        index=index,
        answer_tokens=len(target_ids),
        segment=segments.segment(index),
        part=segments.part(index),
        prefix_tail=target_ids[start:index],
        target_token=wanted,
        chosen_token=departure.chosen_token,
        fused_top1=fused_top1,
        expert_top1=(top1[0], top1[1]),
        expert_rank=(rank_of(logits[0], wanted), rank_of(logits[1], wanted)),
        fused_rank=rank_of(token.scores, wanted),
        weights=[(float(w[0]), float(w[1])) for w in weights[start : index + 1]],
        code_led_before=first_code_lead is not None,
        first_code_lead=first_code_lead,
        kind=kind,
        reproduced=False,
        canonical_tokens=False,
    )
