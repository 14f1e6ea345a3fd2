"""Token ids as the text pieces a person reads, and the experts' tokenizer loaded without their weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dllg.errors import DllgError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

INCOMPLETE = "\ufffd"  # what decoding shows for a character whose bytes are split over several tokens


def token_pieces(tokenizer: PreTrainedTokenizerBase, token_ids: Sequence[int]) -> list[str]:
    """The text each token adds, one piece per token; the pieces join to the decoded answer.

    Each token is decoded after the one before it, not alone: a lone sentencepiece token loses its leading
    space, and a byte-level token can hold half a character. Such a token's piece is "", and the token that
    completes the character carries it.
    """

    def decode(ids: Sequence[int]) -> str:
        return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    pieces: list[str] = []
    prefix = read = 0  # ids[prefix:read] is the context already shown; ids[read:] is not shown yet
    for end in range(1, len(token_ids) + 1):
        shown = decode(token_ids[prefix:read])
        text = decode(token_ids[prefix:end])
        if len(text) > len(shown) and not text.endswith(INCOMPLETE):
            pieces.append(text[len(shown) :])
            prefix, read = read, end
        else:
            pieces.append("")
    if pieces and read < len(token_ids):  # the answer ends mid-character: show what decoding shows
        pieces[-1] = decode(token_ids[prefix:])[len(decode(token_ids[prefix:read])) :]
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
