"""Math answers: pull the final answer out of a response, then decide equivalence with `math-verify`."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from fractions import Fraction

from dllg.errors import DllgError
from dllg.verify.base import Reference, SequentialVerifier, Verdict, register

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# GSM8K's answer line, `#### <number or expression>`; `_hash_answer` tells it from a markdown heading.
_HASHES = re.compile(r"(?<!#)####(?!#)[ \t]*([^\n]*)")
_ANSWER_LABEL = re.compile(r"(?:final\s+)?answer\s*:\s*", re.IGNORECASE)
# What a heading title starts with: a word, maybe numbered ("#### Step 2", "#### 1. Compute the cost").
_HEADING_TITLE = re.compile(r"(?:\d+[.)]\s+)?[A-Za-z]{2,}")
# The answer runs to the end of its line or sentence ("... is 18. Then ..."); "3.5" has no space after ".".
_ANSWER_IS = re.compile(r"answer\s+is\s*[:\s]\s*([^\n]+?)(?=\.\s|\n|$)", re.IGNORECASE)
# A thousands-grouped number must be tried before a plain one, or "1,234" would end as "234".
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|-?\.\d+")
TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mbox|mathrm)\s*\{([^{}]*)\}")
# A unit wrapper with its power: "10\text{ cm}^2" is 10, not 10^2.
_TEXT_WRAPPER_POWER = re.compile(TEXT_WRAPPER.pattern + r"(\^\{?\d\}?)?")
# A number followed only by words (and squared/cubed units): "18 dollars", "5 hours", "12 cm^2".
_NUMBER_THEN_WORDS = re.compile(r"^(-?[\d,]*\.?\d+(?:/\d+)?)\s*((?:[A-Za-z]{2,}\.?(?:\^\{?\d\}?)?\s*)+)$")
_SPACED_THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3})((?:(?:\s|\\,|\\ |~)\d{3})+)(?![\d.])")
_CURRENCY = re.compile(r"\\\$|\$|€|£|¥|\\euro|\\pounds|\b(?:USD|EUR|GBP)\b")
_PI_WORD = re.compile(r"(?<![\\A-Za-z])pi(?![A-Za-z])|π")
# Words that carry value or structure, so never a unit to drop: magnitudes scale the number before them,
# constants and functions are part of the value, "and"/"or" join several answers ("x = 1 or x = 2").
_MAGNITUDES = {
    "dozen": 12,
    "hundred": 10**2,
    "thousand": 10**3,
    "million": 10**6,
    "billion": 10**9,
    "trillion": 10**12,
}
_VALUE_WORDS = {"pi", "sqrt", "root", "infinity", "infty", "inf"}
_KEPT_WORDS = _VALUE_WORDS | set(_MAGNITUDES) | {"and", "or"}
# A textual answer ("odd", "Evelyn", "(C)", "\text{Sunday}"): compared as words, never as math symbols.
_WORDS_ONLY = re.compile(r"[(\[]?\s*[A-Za-z][A-Za-z\s'\-]*[)\]]?")


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


def _hash_answer(line: str) -> str | None:
    """The answer on a `####` line, or None when the line is a markdown heading ("#### Final Answer")."""
    answer = _strip_wrapping(line)
    label = _ANSWER_LABEL.match(answer)
    if label:  # "#### Final Answer: 18" states it after the label
        answer = _strip_wrapping(answer[label.end() :])
    elif _HEADING_TITLE.match(answer):  # a title, not a number or an expression
        return None
    return answer or None


@dataclass(frozen=True)
class FinalAnswer:
    """A response's final answer; `stated` when it was given explicitly (\\boxed{}, ####, "the answer
    is"), not guessed as the last number of the text."""

    text: str
    stated: bool


def find_final_answer(response: str) -> FinalAnswer | None:
    """The last \\boxed{}, else the last `#### x`, else the last "the answer is x", else the last number.

    \\boxed{} comes first: it is what the prompt asks for, and "the answer is" also matches loose prose.
    """
    boxed = last_boxed(response)
    if boxed is not None:
        return FinalAnswer(boxed, stated=True)
    hashes = [a for line in _HASHES.findall(response) if (a := _hash_answer(line)) is not None]
    if hashes:
        return FinalAnswer(hashes[-1], stated=True)
    said = [a for line in _ANSWER_IS.findall(response) if (a := _strip_wrapping(line))]
    if said:
        return FinalAnswer(said[-1], stated=True)
    numbers = _NUMBER.findall(response)
    return FinalAnswer(numbers[-1], stated=False) if numbers else None


def extract_answer(response: str, truncated: bool = False) -> str | None:
    """The final answer of `find_final_answer`; a `truncated` response (cut off by max_new_tokens) has
    one only when it stated it: its last number is wherever the cut fell, not an answer."""
    found = find_final_answer(response)
    if found is None or (truncated and not found.stated):
        return None
    return found.text


def _unwrap_text(answer: str) -> str:
    """LaTeX text wrappers: an answer that is only text keeps its words ("\\text{(C)}" -> "(C)"); beside
    math, a digit-less wrapper is a unit and goes ("18 \\text{ eggs}" -> "18"), unless it holds a word
    with value or structure ("1.5\\text{ million}", "x=1 \\text{ or } x=2")."""
    outside = answer
    while TEXT_WRAPPER.search(outside):  # nested wrappers, "\textbf{\text{odd}}", go from the inside out
        outside = _TEXT_WRAPPER_POWER.sub("", outside)
    only_text = not re.search(r"[\w\\]", outside)

    def unwrap(match: re.Match[str]) -> str:
        inner, power = match.group(1), match.group(2) or ""
        if re.search(r"\d", inner):
            return inner + power
        words = {w.lower() for w in re.findall(r"[A-Za-z]+", inner)}
        # Spaces keep the words apart from what is around them ("x=1\text{or}x=2").
        return f" {inner} {power}" if only_text or words & _KEPT_WORDS else ""

    previous = None
    while previous != answer:
        previous, answer = answer, _TEXT_WRAPPER_POWER.sub(unwrap, answer)
    return answer


def _scale(number: str, words: str) -> str | None:
    """`number` times the magnitude words that lead `words` ("2.5", "billion" -> "2500000000"), the number
    alone when they are units, or None when a word is part of the value ("2 sqrt")."""
    names = [w.lower() for w in re.findall(r"[A-Za-z]+", words)]
    if any(n in _VALUE_WORDS for n in names):
        return None
    factor = 1
    for name in names:
        if name not in _MAGNITUDES:
            break  # "1.5 million dollars": the magnitudes come first, the unit after them
        factor *= _MAGNITUDES[name]
    if factor == 1:
        return number
    value = Fraction(number.replace(",", "")) * factor
    return str(value.numerator) if value.denominator == 1 else str(value)


def normalize_answer(answer: str) -> str:
    """Remove what math-verify does not: currency signs, text units, spaced thousands, unicode minus;
    spell out magnitudes ("1 million" -> "1000000") and pi as LaTeX ("2 pi" -> "2\\pi")."""
    answer = _strip_wrapping(answer).replace("\u2212", "-").replace("\\!", "")
    answer = _unwrap_text(answer)
    answer = _CURRENCY.sub("", answer).strip()
    answer = _PI_WORD.sub(r"\\pi ", answer).strip()
    answer = _SPACED_THOUSANDS.sub(lambda m: m.group(1) + re.sub(r"\D", "", m.group(2)), answer)
    # "18 dollars", "5 hours": a number followed only by unit words is that number.
    unit = _NUMBER_THEN_WORDS.match(answer)
    if unit:
        answer = _scale(unit.group(1), unit.group(2)) or answer
    return re.sub(r"\s+", " ", answer).strip().rstrip(".").strip()


def text_answer(raw: str) -> str | None:
    """The comparison key of an answer that is words, not math ("\\text{Evelyn}", "odd", "\\text{(C)}"):
    no case, no spaces, no surrounding brackets; None for a mathematical answer."""
    normalized = normalize_answer(raw)
    if not _WORDS_ONLY.fullmatch(normalized):
        return None
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", normalized)]
    if any(w in _VALUE_WORDS for w in words):
        return None
    # A lone letter ("x", "(C)") may be a variable, unless a \text{} wrapper says it is text.
    if not TEXT_WRAPPER.search(raw) and all(len(w) < 2 for w in words):
        return None
    return _text_key(normalized)


def _text_key(normalized: str) -> str:
    return re.sub(r"\s+", "", normalized).strip("()[]").lower()


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
    gold_text = text_answer(gold)
    if gold_text is not None:
        # math-verify would read "odd" as o*d*d and "Evelyn" as a product of symbols.
        return gold_text == _text_key(normalize_answer(predicted))
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
    """Extract the response's final answer and compare it with `reference.answer` by `matches`.

    A response cut off by max_new_tokens (`truncated`) is judged only on an answer it stated explicitly.
    """

    name = "final-answer"

    def matches(self, gold: str, predicted: str) -> bool:
        raise NotImplementedError

    def verify(self, response: str, reference: Reference, *, truncated: bool = False) -> Verdict:
        if reference.answer is None:
            raise DllgError(f"the {self.name} verifier needs a reference answer: the task gave none")
        found = find_final_answer(response)
        if truncated and (found is None or not found.stated):
            last = f" (its last number {found.text!r} does not count)" if found else ""
            return Verdict("error", f"truncated (max_new_tokens) before a final answer{last}")
        if found is None:
            return Verdict("error", "no final answer found in the response")
        if self.matches(reference.answer, found.text):
            return Verdict("pass", f"answer {found.text!r} matches")
        return Verdict("fail", f"answer {found.text!r} != reference {reference.answer!r}")


class MathVerifier(FinalAnswerVerifier):
    """Pass when the response's final answer equals `reference.answer` mathematically."""

    name = "math"

    def ready(self) -> None:
        _import_math_verify()

    def matches(self, gold: str, predicted: str) -> bool:
        return answers_match(gold, predicted)


register(MathVerifier())
