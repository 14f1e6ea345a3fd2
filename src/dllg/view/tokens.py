"""Token ids as the text pieces a person reads, and the experts' tokenizer loaded without their weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dllg.errors import DllgError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

INCOMPLETE = "\ufffd"  # what decoding shows for a character whose bytes are split over several tokens


class TokenText:
    """Token ids to the text each one adds, one token at a time; the pieces join to the decoded text.

    Each token is decoded after the one before it, not alone: a lone sentencepiece token loses its leading
    space, and a byte-level token can hold half a character. Such a token's piece is "", and the token that
    completes the character carries it. `skip_special_tokens`: decode as `Generation.text` is (the server)
    or show every token (the page)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.prefix = self.read = 0  # ids[prefix:read]: the context already shown; ids[read:]: not yet
        self.shown = ""  # the text of ids[prefix:read], kept: one decode per token instead of two

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(
            list(ids), skip_special_tokens=self.skip_special_tokens, clean_up_tokenization_spaces=False
        )

    def add(self, token: int) -> str:
        self.ids.append(token)
        text = self._decode(self.ids[self.prefix :])
        if len(text) > len(self.shown) and not text.endswith(INCOMPLETE):
            piece = text[len(self.shown) :]
            self.prefix, self.read = self.read, len(self.ids)
            self.shown = self._decode(self.ids[self.prefix : self.read])
            return piece
        return ""

    def rest(self) -> str:
        """Text of the last tokens not shown yet (an answer that ends mid-character)."""
        if self.read == len(self.ids):
            return ""
        return self._decode(self.ids[self.prefix :])[len(self.shown) :]


def token_pieces(tokenizer: PreTrainedTokenizerBase, token_ids: Sequence[int]) -> list[str]:
    """The text each token adds, one piece per token, special tokens shown; they join to the decoded
    answer (an answer that ends mid-character shows what decoding shows, on its last token)."""
    text = TokenText(tokenizer, skip_special_tokens=False)
    pieces = [text.add(token) for token in token_ids]
    if pieces:
        pieces[-1] += text.rest()
    return pieces


def load_expert_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The tokenizer of an expert as `dllg` names it (catalog, `world:NAME`, folder, .gguf, hub id),
    without loading its weights; a model built in memory (`tiny:SEED`) is built, being tiny."""
    import torch

    from dllg.experts.loading import load_tokenizer
    from dllg.sources import resolve_source

    source = resolve_source(name_or_path)
    if source.build is not None:
        return source.build(torch.device("cpu"), torch.float32).tokenizer
    try:
        return load_tokenizer(source.path, source.load_kwargs())
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DllgError(
            f"cannot load the tokenizer of {name_or_path!r} ({source.kind}): {reason}; "
            "give the experts' model folder with --tokenizer"
        ) from exc
