"""Ragged token lists to (ids, mask) tensors: left-aligned for teacher forcing and scoring, right-aligned
(left padding) for decoding, where every sequence's next token must land in the same column."""

import torch

from dllg.errors import DllgError


def _pad(sequences: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if not sequences or any(len(s) == 0 for s in sequences):
        raise DllgError("every prompt needs at least one token: an empty prompt cannot be continued")
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        columns = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, columns] = torch.tensor(seq, dtype=torch.long)
        mask[row, columns] = 1
    return ids, mask


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad on the left: the last real token of every row sits in the last column."""
    return _pad(sequences, pad_id, left=True)


def right_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad on the right: every row starts at position 0."""
    return _pad(sequences, pad_id, left=False)


def roll_back_masked(state, counts: torch.Tensor) -> None:
    """Forget the last counts[i] positions of row i of a masked KV-cache state (`cache`, `mask` over its
    columns, `next_position` per row; every step adds a column per position to every row): a row's dropped
    columns are masked out, and the columns no row needs any more are cut from the cache."""
    counts = counts.to(state.next_position.device).long()
    if not counts.any():
        return
    columns = state.mask.shape[1]
    for row, count in enumerate(counts.tolist()):
        if count:
            state.mask[row, columns - count :] = 0
    state.next_position = state.next_position - counts
    shared = int(counts.min())
    if shared:
        state.cache.crop(-shared)  # crop takes a negative count of tokens to drop
        state.mask = state.mask[:, :-shared]
