"""Drafters propose the next few tokens of a sequence cheaply; the experts and the rule then score every
drafted position in one multi-token step, and a draft is kept only as far as the fused greedy choice agrees
with it (exact speculative decoding: the output is the one the plain loop gives).

One registry: `ngram` looks the last few tokens up earlier in the prompt and the output so far and proposes
what followed them there (free); `none` proposes nothing (the plain loop).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from dllg.errors import DllgError
from dllg.registry import register_unique


class Drafter(ABC):
    name: str

    @abstractmethod
    def draft(self, context: list[int], count: int) -> list[int]:
        """Up to `count` tokens that may follow `context` (prompt + output so far)."""


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

    def draft(self, context: list[int], count: int) -> list[int]:
        return []


@register_drafter
class NgramDrafter(Drafter):
    """The longest suffix of up to `max_ngram` tokens that occurred before: propose what followed its most
    recent earlier occurrence (code and step-by-step answers repeat names and numbers from the prompt)."""

    name = "ngram"
    max_ngram = 3

    def draft(self, context: list[int], count: int) -> list[int]:
        for size in range(min(self.max_ngram, len(context) - 1), 0, -1):
            suffix = context[-size:]
            for start in range(len(context) - size - 1, -1, -1):
                if context[start : start + size] == suffix:
                    follow = context[start + size : start + size + count]
                    if follow:
                        return follow
        return []
