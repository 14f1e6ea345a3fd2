"""Drafters propose the next few tokens of a sequence cheaply; the experts and the rule then score every
drafted position in one multi-token step, and a draft is kept only as far as the fused greedy choice agrees
with it (exact speculative decoding: the output is the one the plain loop gives).

One registry: `ngram` looks the last few tokens up earlier in the prompt and the output so far and proposes
what followed them there (free); `reference` does the same in other answers to the same prompt as well (an
evaluation's other methods' recorded answers: fused methods agree with each other and with the experts over
long stretches); `expert` lets the smallest running expert draft alone, greedily (its cache
then already holds the drafted positions, so it does not score them twice); `none` proposes nothing (the
plain loop); `auto` speculates only where it was measured to pay (see `AutoDrafter`).

Drafts are single proposed tokens, so sampled rows are exact too: `sampling.sample_with_drafts` keeps or
refuses each by the rejection rule against the fused distribution.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar

from dllg.errors import DllgError
from dllg.registry import register_unique


class Drafter(ABC):
    name: str
    drafts_with_expert: ClassVar[bool] = False  # the decoder drafts with its smallest expert instead
    max_rows: ClassVar[int | None] = None  # draft only while at most this many rows run
    greedy_only: ClassVar[bool] = False  # leave sampled rows undrafted

    @abstractmethod
    def draft(self, prompt: list[int], output: list[int], count: int) -> list[int]:
        """Up to `count` tokens that may follow the prompt and the output so far."""

    def resolve(self, backends: list[str]) -> Drafter:
        """The drafter to use with experts on these backends ("hf", "llamacpp"): itself, for most."""
        return self


DRAFTERS: dict[str, Callable[[], Drafter]] = {}


def register_drafter(cls: type[Drafter]) -> type[Drafter]:
    register_unique(DRAFTERS, cls.name, cls, "drafter")
    return cls


def make_drafter(name: str) -> Drafter:
    if name not in DRAFTERS:
        raise DllgError(f"unknown drafter {name!r}: use one of {', '.join(sorted(DRAFTERS))}")
    return DRAFTERS[name]()


@register_drafter
class NoDrafter(Drafter):
    name = "none"

    def draft(self, prompt: list[int], output: list[int], count: int) -> list[int]:
        return []


@register_drafter
class NgramDrafter(Drafter):
    """The longest suffix of up to `max_ngram` tokens that occurred before: propose what followed its most
    recent earlier occurrence (code and step-by-step answers repeat names and numbers from the prompt)."""

    name = "ngram"
    max_ngram = 3

    def draft(self, prompt: list[int], output: list[int], count: int) -> list[int]:
        context = prompt + output
        for size in range(min(self.max_ngram, len(context) - 1), 0, -1):
            suffix = context[-size:]
            for start in range(len(context) - size - 1, -1, -1):
                if context[start : start + size] == suffix:
                    follow = context[start + size : start + size + count]
                    if follow:
                        return follow
        return []


def _as_text(tokens: Iterable[int]) -> str:
    """Token ids as one character each, so that `str.find` searches token sequences at C speed."""
    return "".join(map(chr, tokens))


@register_drafter
class ReferenceDrafter(Drafter):
    """Drafts from other answers to the same prompt (`add` them; in `dllg eval`, the records of the other
    methods), else from the prompt and the output so far as `ngram` does. An answer that begins with the
    whole output so far proposes its continuation outright; otherwise the longest suffix of the output (up to
    `max_ngram` tokens, at least `min_ngram`) found in an answer proposes what followed it there, at the
    occurrence nearest the output's own length (answers to one prompt progress roughly together)."""

    name = "reference"
    max_ngram = 8
    min_ngram = 2

    def __init__(self) -> None:
        self._answers: dict[tuple[int, ...], list[str]] = {}

    def add(self, prompt: Sequence[int], answers: Iterable[Sequence[int]]) -> None:
        """Answers (token ids) another run gave to `prompt`."""
        self._answers.setdefault(tuple(prompt), []).extend(_as_text(a) for a in answers if a)

    def draft(self, prompt: list[int], output: list[int], count: int) -> list[int]:
        answers = self._answers.get(tuple(prompt), [])
        done = _as_text(output)
        for answer in answers:
            if len(answer) > len(done) and answer.startswith(done):
                return [ord(c) for c in answer[len(done) : len(done) + count]]
        context = _as_text(prompt) + done
        for size in range(min(self.max_ngram, len(context) - 1), self.min_ngram - 1, -1):
            suffix = context[-size:]
            follow = _nearest_follow(answers, suffix, len(done), count)
            if not follow:  # the most recent earlier occurrence in the prompt and output, as `ngram`
                start = context.rfind(suffix, 0, len(context) - 1)
                follow = context[start + size : start + size + count] if start >= 0 else ""
            if follow:
                return [ord(c) for c in follow]
        return []


def _nearest_follow(answers: list[str], suffix: str, position: int, count: int) -> str:
    """What follows `suffix` in `answers`, at the occurrence ending nearest `position`."""
    best, distance = "", None
    for answer in answers:
        start = answer.find(suffix)
        while start >= 0:
            end = start + len(suffix)
            if end < len(answer) and (distance is None or abs(end - position) < distance):
                best, distance = answer[end : end + count], abs(end - position)
            start = answer.find(suffix, start + 1)
    return best


@register_drafter
class ExpertDrafter(Drafter):
    """The smallest running expert (by parameter count) drafts alone, greedily, one step per token; the
    decode loop runs it (`drafts_with_expert`), since its own steps are what the draft is made of."""

    name = "expert"
    drafts_with_expert = True

    def draft(self, prompt: list[int], output: list[int], count: int) -> list[int]:
        raise NotImplementedError("the decode loop drafts with the expert itself")


class _SingleRowNgram(NgramDrafter):
    max_rows = 1
    greedy_only = True


class _GreedyExpert(ExpertDrafter):
    greedy_only = True


@register_drafter
class AutoDrafter(Drafter):
    """Speculate where it was measured to pay, else decode plainly (results/bench/speculative-*.txt): on
    Hugging Face experts, greedy decoding drafts with the smallest expert at any batch size (real pair,
    bf16: 2.0-2.3x at batch 1 and 1.2-1.5x at batch 8 on HumanEval and GSM8K prompts; the world's experts,
    fp32: 1.6x at batch 1, 1.05x at batch 4); one expert alone drafts n-grams, one sequence at a time.
    Not for sampling (not measured), and not on llama.cpp, where several positions in one decode cost
    nearly as many steps on these compute-bound CPUs (0.65-0.85x at batch 1)."""

    name = "auto"

    def draft(self, prompt: list[int], output: list[int], count: int) -> list[int]:
        raise NotImplementedError("auto resolves to another drafter first")

    def resolve(self, backends: list[str]) -> Drafter:
        if not all(b == "hf" for b in backends):
            return NoDrafter()
        return _GreedyExpert() if len(backends) > 1 else _SingleRowNgram()
