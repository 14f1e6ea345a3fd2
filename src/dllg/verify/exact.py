"""Exact-match answers (BBH's options, words, True/False): the final answer, normalised, equals the gold."""

from __future__ import annotations

import re

from dllg.verify.base import register
from dllg.verify.math import TEXT_WRAPPER, FinalAnswerVerifier


def normalize_text(answer: str) -> str:
    """Case, surrounding punctuation, markdown and LaTeX text wrappers do not count."""
    while TEXT_WRAPPER.search(answer):  # \text, \textbf, \mbox, \mathrm; nested ones from the inside out
        answer = TEXT_WRAPPER.sub(r"\1", answer)
    answer = answer.strip().strip("*_`$ ").rstrip(".").strip()
    return re.sub(r"\s+", " ", answer).lower()


class ExactMatchVerifier(FinalAnswerVerifier):
    """Pass when the final answer equals `reference.answer`, or is its bare option letter "(B)" -> "B"."""

    name = "exact"

    def matches(self, gold: str, predicted: str) -> bool:
        gold, pred = normalize_text(gold), normalize_text(predicted)
        return pred == gold or pred.strip("()") == gold.strip("()") != ""


register(ExactMatchVerifier())
