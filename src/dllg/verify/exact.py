"""Exact-match answers (BBH's options, words, True/False): the final answer, normalised, equals the gold."""

from __future__ import annotations

import re

from dllg.errors import DllgError
from dllg.verify.base import Reference, SequentialVerifier, Verdict, register
from dllg.verify.math import extract_answer


def normalize_text(answer: str) -> str:
    """Case, surrounding punctuation, markdown and LaTeX text wrappers do not count."""
    answer = re.sub(r"\\text\{([^{}]*)\}", r"\1", answer)
    answer = answer.strip().strip("*_`$ ").rstrip(".").strip()
    return re.sub(r"\s+", " ", answer).lower()


class ExactMatchVerifier(SequentialVerifier):
    """Pass when the final answer equals `reference.answer`, or is its bare option letter "(B)" -> "B"."""

    name = "exact"

    def verify(self, response: str, reference: Reference) -> Verdict:
        if reference.answer is None:
            raise DllgError("the exact-match verifier needs a reference answer: the task gave none")
        predicted = extract_answer(response)
        if predicted is None:
            return Verdict("error", "no final answer found in the response")
        gold, pred = normalize_text(reference.answer), normalize_text(predicted)
        if pred == gold or pred.strip("()") == gold.strip("()") != "":
            return Verdict("pass", f"answer {predicted!r} matches")
        return Verdict("fail", f"answer {predicted!r} != reference {reference.answer!r}")


register(ExactMatchVerifier())
