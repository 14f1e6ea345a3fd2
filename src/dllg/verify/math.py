"""Math answers: pull the final answer out of a response, then decide equivalence with `math-verify`."""

from __future__ import annotations

import logging
import re

from dllg.errors import DllgError
from dllg.verify.base import Reference, SequentialVerifier, Verdict, register

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_HASHES = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS = re.compile(r"answer\s+is\s*[:\s]\s*([^\n]+)", re.IGNORECASE)
# A thousands-grouped number must be tried before a plain one, or "1,234" would end as "234".
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_TEXT_UNIT = re.compile(r"\\(?:text|textbf|mbox|mathrm)\s*\{([^{}]*)\}")
_NUMBER_THEN_WORDS = re.compile(r"^(-?[\d,]*\.?\d+(?:/\d+)?)\s*(?:[A-Za-z]{2,}\.?\s*)+$")
_SPACED_THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3})((?:(?:\s|\\,|\\ |~)\d{3})+)(?![\d.])")
_CURRENCY = re.compile(r"\\\$|\$|€|£|¥|\\euro|\\pounds|\b(?:USD|EUR|GBP)\b")


def _balanced(text: str, open_index: int) -> str | None:
    """Content of the brace group that opens at `open_index`, or None when it never closes."""
    depth = 0
    for i in range(open_index, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_index + 1 : i]
    return None


def last_boxed(text: str) -> str | None:
    """The content of the last closed `\\boxed{...}` (nested braces allowed)."""
    for match in reversed(list(_BOXED.finditer(text))):
        content = _balanced(text, match.end() - 1)
        if content is not None:
            return content.strip()
    return None


def _strip_wrapping(answer: str) -> str:
    """Drop the markdown/LaTeX wrapping and sentence punctuation models put around a final answer."""
    previous = None
    while previous != answer:
        previous = answer
        answer = re.sub(r"^[*_`\s]+|[*_`\s.:]+$", "", answer)
        answer = re.sub(r"^\\\(|\\\)$|^\\\[|\\\]$", "", answer)
        if len(answer) > 1 and answer[0] == "$" and answer[-1] == "$" and answer[-2] != "\\":
            answer = answer[1:-1]
    return answer


def extract_answer(response: str) -> str | None:
    """The final answer: the last \\boxed{}, else `#### x`, else "the answer is x", else the last number."""
    boxed = last_boxed(response)
    if boxed is not None:
        return boxed
    for pattern in (_HASHES, _ANSWER_IS):
        matches = pattern.findall(response)
        if matches:
            return _strip_wrapping(matches[-1])
    numbers = _NUMBER.findall(response)
    return numbers[-1] if numbers else None


def normalize_answer(answer: str) -> str:
    """Remove what math-verify does not: currency signs, text units, spaced thousands, unicode minus."""
    answer = _strip_wrapping(answer).replace("\u2212", "-").replace("\\!", "")
    answer = _TEXT_UNIT.sub(lambda m: m.group(1) if re.search(r"\d", m.group(1)) else "", answer)
    answer = _CURRENCY.sub("", answer).strip()
    answer = _SPACED_THOUSANDS.sub(lambda m: m.group(1) + re.sub(r"\D", "", m.group(2)), answer)
    # "18 dollars", "5 hours": a number followed only by words is that number.
    unit = _NUMBER_THEN_WORDS.match(answer)
    if unit:
        answer = unit.group(1)
    return answer.strip().rstrip(".")


def _import_math_verify():
    try:
        import math_verify
    except ImportError as err:
        raise DllgError("the math verifier needs math-verify: pip install 'math-verify>=0.9'") from err
    # It warns on every call made without its signal-based timeout, which only works in the main thread.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return math_verify


def answers_match(gold: str, predicted: str) -> bool:
    """Whether two final answers are the same value (numbers, fractions, LaTeX expressions, sets)."""
    mv = _import_math_verify()
    gold_n, pred_n = normalize_answer(gold), normalize_answer(predicted)
    if gold_n == pred_n and gold_n:
        return True
    # No signal-based timeouts: verifiers may run in worker threads, where signal.alarm is refused.
    gold_p = mv.parse(f"${gold_n}$", parsing_timeout=None)
    pred_p = mv.parse(f"${pred_n}$", parsing_timeout=None)
    if not gold_p or not pred_p:
        return False
    return bool(mv.verify(gold_p, pred_p, timeout_seconds=None))


class FinalAnswerVerifier(SequentialVerifier):
    """Extract the response's final answer and compare it with `reference.answer` by `matches`."""

    name = "final-answer"

    def matches(self, gold: str, predicted: str) -> bool:
        raise NotImplementedError

    def verify(self, response: str, reference: Reference) -> Verdict:
        if reference.answer is None:
            raise DllgError(f"the {self.name} verifier needs a reference answer: the task gave none")
        predicted = extract_answer(response)
        if predicted is None:
            return Verdict("error", "no final answer found in the response")
        if self.matches(reference.answer, predicted):
            return Verdict("pass", f"answer {predicted!r} matches")
        return Verdict("fail", f"answer {predicted!r} != reference {reference.answer!r}")


class MathVerifier(FinalAnswerVerifier):
    """Pass when the response's final answer equals `reference.answer` mathematically."""

    name = "math"

    def matches(self, gold: str, predicted: str) -> bool:
        return answers_match(gold, predicted)


register(MathVerifier())
