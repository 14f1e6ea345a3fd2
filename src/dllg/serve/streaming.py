"""Tokens as they arrive -> text deltas a client may be shown, each token with its expert weights.

Two things make this more than decoding each token: a token may hold half a character (its text comes with
a later token) or lose a leading space when decoded alone, so each token is decoded after the ones before
it; and text that may be the start of a stop string is held back until it is clear that it is not, since
the answer is cut before the stop string and a client cannot take text back. At the end the answer's text
(`Generation.text`, cut at the stop string) is the truth the pieces are clipped to: the deltas join to it.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from dllg.decode.loop import Generation
from dllg.view.tokens import TokenText

Piece = tuple[str, list[float]]  # the text a token adds, and each expert's weight at it


def stop_prefix_length(text: str, stops: Sequence[str]) -> int:
    """The longest end of `text` that begins some stop string (without being all of it)."""
    longest = min(len(text), max((len(s) for s in stops), default=1) - 1)
    for length in range(longest, 0, -1):
        tail = text[-length:]
        if any(s.startswith(tail) and len(s) > length for s in stops):
            return length
    return 0


class AnswerStream:
    """One request's answer as it grows: `push` each step's tokens, get the pieces safe to send."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stops: Sequence[str]) -> None:
        self.text_of = TokenText(tokenizer)
        self.stops = tuple(stops)
        self.sent = ""  # the text released so far
        self.held: list[Piece] = []

    def push(
        self, tokens: Sequence[int], weights: Sequence[Sequence[float]], done: Generation | None
    ) -> list[Piece]:
        """The pieces to send after these tokens arrived (all that is left when `done` is the result)."""
        tokens, weights = list(tokens), [list(map(float, w)) for w in weights]
        if done is not None and done.finish_reason == "eos" and tokens:
            tokens, weights = tokens[:-1], weights[:-1]  # the end-of-sequence token is not in the text
        for token, row in zip(tokens, weights, strict=True):
            self.held.append((self.text_of.add(token), row))
        if done is not None:
            return self._finish(done)
        count = self._releasable()
        released, self.held = self.held[:count], self.held[count:]
        self.sent += "".join(text for text, _ in released)
        return released

    def _releasable(self) -> int:
        """How many held tokens can go: none whose text may be (the start of) a stop string, and none of
        the empty ones at the end (the text of a split character comes with the last of them)."""
        if not self.stops:
            return max((i + 1 for i, (piece, _) in enumerate(self.held) if piece), default=0)
        text = self.sent + "".join(piece for piece, _ in self.held)
        safe = len(text) - stop_prefix_length(text, self.stops)
        for stop in self.stops:
            found = text.find(stop, max(0, len(self.sent) - len(stop) + 1))
            if found >= 0:
                safe = min(safe, found)
        count, end = 0, len(self.sent)
        for index, (piece, _) in enumerate(self.held):
            end += len(piece)
            if end > safe:
                break
            if piece:
                count = index + 1
        return count

    def _finish(self, done: Generation) -> list[Piece]:
        if self.held:
            piece, row = self.held[-1]
            self.held[-1] = (piece + self.text_of.rest(), row)
        if not done.text.startswith(self.sent):  # cannot happen while decoding is prefix-stable
            return []
        room = len(done.text) - len(self.sent)
        out: list[Piece] = []
        for piece, row in self.held:
            if room == 0 and done.finish_reason == "stop":
                break  # the tokens of the stop string itself
            out.append((piece[:room], row))
            room -= len(out[-1][0])
        if room and out:  # text the pieces lack (decoding alone differs): it still reaches the client
            out[-1] = (out[-1][0] + done.text[len(done.text) - room :], out[-1][1])
        self.held = []
        self.sent += "".join(piece for piece, _ in out)
        return out
