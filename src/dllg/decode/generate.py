"""The decode loop run to the end for a list of prompts: `generate_stream` yields each continuation as it
finishes, `generate` returns them all in order, `generate_together` continues each prompt with several
rules at once."""

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import TypeVar

from dllg.decode.config import GenerationConfig
from dllg.decode.drafting import Drafter
from dllg.decode.loop import Decoder, Generation
from dllg.experts.pool import ExpertPool
from dllg.fusion.base import FusionRule

T = TypeVar("T")


def generate_stream(
    pool: ExpertPool,
    rule: FusionRule,
    prompts: list[list[int]],
    config: GenerationConfig | None = None,
    scored_prompts: list[list[int]] | None = None,
    drafter: str | Drafter | None = None,
    draft_tokens: int | None = None,
    timings: Counter | None = None,
    max_rows: int | None = None,
) -> Iterator[tuple[int, Generation]]:
    """Continue every prompt (token ids) with the experts fused by `rule`, yielding (prompt index,
    generation) as each one finishes. At most `max_rows` rows decode at once (default: all); the others
    join as rows finish (continuous batching), so a long answer does not leave the batch nearly empty.

    `scored_prompts`: see `Decoder.submit`. `drafter` ("ngram", "expert", "auto", ... or a Drafter; "none":
    the plain loop) drafts up to `draft_tokens` tokens per step; both default to the config's `speculate`
    and `draft_tokens`. `timings`, if given, adds up the seconds spent drafting, in the experts and in the
    rule."""
    config = config or GenerationConfig()
    drafter = config.speculate if drafter is None else drafter
    draft_tokens = config.draft_tokens if draft_tokens is None else draft_tokens
    decoder = Decoder(pool, rule, drafter, draft_tokens, max_rows)
    try:
        index = {request: i for i, request in enumerate(decoder.submit(prompts, config, scored_prompts))}
        yield from _finished(decoder, index)
    finally:
        decoder.close()  # llama.cpp experts free the batch's sequences
        if timings is not None:
            timings.update(decoder.timings)


def generate_together(
    pool: ExpertPool,
    rules: Sequence[FusionRule],
    prompts: list[list[int]],
    config: GenerationConfig | None = None,
    scored_prompts: list[list[int]] | None = None,
    rules_per_prompt: list[list[int]] | None = None,
    max_rows: int | None = None,
) -> Iterator[tuple[tuple[int, int], Generation]]:
    """Continue every prompt with each of `rules` (or the indices `rules_per_prompt` gives it), the rules
    decoding together (greedy, no drafter): a prompt's answers share the expert steps of their common
    prefix. Yields ((prompt index, rule index), generation) as each one finishes."""
    config = config or GenerationConfig()
    decoder = Decoder(pool, rules, "none", 0, max_rows)
    try:
        wanted = rules_per_prompt or [list(range(len(rules)))] * len(prompts)
        requests = decoder.submit(prompts, config, scored_prompts, wanted)
        pairs = [(i, r) for i, chosen in enumerate(wanted) for r in sorted(set(chosen))]
        yield from _finished(decoder, dict(zip(requests, pairs, strict=True)))
    finally:
        decoder.close()


def _finished(decoder: Decoder, index: Mapping[int, T]) -> Iterator[tuple[T, Generation]]:
    """Step the decoder until it is done: (index[request], generation) for each request as it finishes."""
    while decoder.active:
        for update in decoder.step():
            if update.error is not None:
                raise update.error
            if update.finished is not None:
                yield index[update.request], update.finished


def generate(
    pool: ExpertPool,
    rule: FusionRule,
    prompts: list[list[int]],
    config: GenerationConfig | None = None,
    scored_prompts: list[list[int]] | None = None,
    drafter: str | Drafter | None = None,
    draft_tokens: int | None = None,
    timings: Counter | None = None,
    max_rows: int | None = None,
) -> list[Generation]:
    """One continuation per prompt, in order: `generate_stream` run to the end."""
    finished = dict(
        generate_stream(pool, rule, prompts, config, scored_prompts, drafter, draft_tokens, timings, max_rows)
    )
    return [finished[i] for i in range(len(prompts))]
