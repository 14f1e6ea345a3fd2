"""The first two steps of the hand-over analysis (`dllg.analysis.handover`, its docstring): the correct
solution a failed derive-then-code answer is measured against, the first token where the answer leaves it,
and where an answer's parts (steps, last line, fence, code) start in its tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from dllg.errors import DllgError

FENCE = "\n```"  # the code block starts at the first fence that opens a line
DERIVATION, CODE = "arithmetic", "code"  # the two segments of an answer
PARTS = ("steps", "last line", "hand-over (fence)", "code", "end of answer")  # what `Segments.part` says
REFERENCE_TARGET = "reference"
OWN_DERIVATION_TARGET = "own derivation + reference code"


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def split_answer(text: str) -> tuple[str, str] | None:
    """(derivation, code block): the derivation keeps its last newline, the code starts at the fence; None
    when the text has no fence opening a line."""
    cut = text.find(FENCE)
    return None if cut < 0 else (text[: cut + 1], text[cut + 1 :])


def last_line(derivation: str) -> str:
    return derivation.rstrip("\n").rpartition("\n")[2]


def nearest_correct(reference: str, response: str) -> tuple[str, str]:
    """The correct solution the response is measured against, and which one it is (step 1 in the docstring
    of `dllg.analysis.handover`)."""
    reference_parts = split_answer(reference)
    if reference_parts is None:
        raise DllgError(
            "the reference solution has no fenced code block after a derivation: this analysis is for "
            "derive-then-code tasks such as world-mixed"
        )
    own = split_answer(response)
    if own is None or own[0] == reference_parts[0] or last_line(own[0]) != last_line(reference_parts[0]):
        return reference, REFERENCE_TARGET
    return own[0] + reference_parts[1], OWN_DERIVATION_TARGET


@dataclass(frozen=True)
class Departure:
    index: int  # token position where target and response differ
    target_token: int  # the target's token there (end-of-sequence after its last token)
    chosen_token: int | None  # the response's token there; None: it ran out of new tokens before


def find_departure(target: Sequence[int], response: Sequence[int]) -> Departure | None:
    """The first position where the two token lists differ; None when they are equal. `target` ends with
    end-of-sequence; `response` does when it ended there (a response cut by the token limit does not)."""
    for index, wanted in enumerate(target):
        chosen = response[index] if index < len(response) else None
        if chosen != wanted:
            return Departure(index, wanted, chosen)
    if len(response) > len(target):
        raise DllgError("the target must end with the end-of-sequence token, which nothing follows")
    return None


def trailing_note(target: str, response: str) -> str:
    """Says so when the response is the target with trailing differences only."""
    if response.rstrip() == target.rstrip():
        return "the target but for trailing whitespace"
    if response.startswith(target):
        return "the target, then more text"
    if target.startswith(response):
        return "the target cut short"
    return ""


@dataclass(frozen=True)
class Segments:
    """Token positions of a derive-then-code answer (end-of-sequence at `end`)."""

    last_line: int  # first token of the derivation's last line (`k = N`)
    code: int  # the fence's first token: the hand-over token
    end: int

    def segment(self, index: int) -> str:
        return DERIVATION if index < self.code else CODE

    def part(self, index: int) -> str:
        steps, last, fence, code, end = PARTS
        if index < self.last_line:
            return steps
        if index < self.code:
            return last
        if index == self.code:
            return fence
        return code if index < self.end else end


def answer_segments(tokenizer: PreTrainedTokenizerBase, text: str) -> Segments:
    """Where the last derivation line and the code block start in the answer's tokens. The cuts fall after
    a newline, where byte-level pre-tokenizers split, so the parts' tokens are the whole's; checked."""
    parts = split_answer(text)
    if parts is None:
        raise DllgError(f"{text[:40]!r}...: no fenced code block after a derivation")
    derivation = parts[0]
    whole = encode_text(tokenizer, text)
    cuts = []
    for prefix in (derivation[: len(derivation) - len(last_line(derivation)) - 1], derivation):
        ids = encode_text(tokenizer, prefix)
        if whole[: len(ids)] != ids:
            raise DllgError(f"{text[:40]!r}...: its tokens change where the derivation ends; cannot segment")
        cuts.append(len(ids))
    return Segments(last_line=cuts[0], code=cuts[1], end=len(whole))
