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


def join_masked(state, other) -> None:
    """Append the rows of `other` to `state` (masked KV-cache states as in `roll_back_masked`): rows that
    joined a running batch. The narrower state gets masked zero columns on the left, so every row's next
    token still lands in the same column."""
    from transformers.cache_utils import DynamicSlidingWindowLayer  # transformers is slow to import

    width = max(state.mask.shape[1], other.mask.shape[1])
    for mine, theirs in zip(state.cache.layers, other.cache.layers, strict=True):
        if isinstance(mine, DynamicSlidingWindowLayer) or isinstance(theirs, DynamicSlidingWindowLayer):
            raise DllgError(
                "rows cannot join a batch of a model with sliding-window attention layers: "
                "decode its requests in separate batches"
            )
        filled = [layer for layer in (mine, theirs) if layer.get_seq_length()]
        if not filled:
            continue  # neither has a column yet (a gate state before its first position)
        template = filled[0]
        for layer, rows in ((mine, state.mask.shape[0]), (theirs, other.mask.shape[0])):
            if not layer.get_seq_length():
                layer.lazy_initialization(template.keys, template.values)
                shape = (rows, *template.keys.shape[1:-2], 0, template.keys.shape[-1])
                layer.keys = template.keys.new_zeros(shape)
                layer.values = template.values.new_zeros((*shape[:-1], template.values.shape[-1]))
        mine.keys = torch.cat([_widen(mine.keys, width), _widen(theirs.keys, width)], dim=0)
        mine.values = torch.cat([_widen(mine.values, width), _widen(theirs.values, width)], dim=0)
    state.mask = torch.cat([_widen_mask(state.mask, width), _widen_mask(other.mask, width)], dim=0)
    state.next_position = torch.cat([state.next_position, other.next_position.to(state.next_position)])


def _widen(cached: torch.Tensor, width: int) -> torch.Tensor:
    """(B, heads, columns, d) -> (B, heads, width, d), zero columns first."""
    missing = width - cached.shape[-2]
    if not missing:
        return cached
    return torch.cat([cached.new_zeros((*cached.shape[:-2], missing, cached.shape[-1])), cached], dim=-2)


def _widen_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.pad(mask, (width - mask.shape[1], 0))


def trim_masked_columns(state) -> None:
    """Drop the leading columns no row attends to any more (a masked KV-cache state as above). Rows leave a
    running batch and others join it: without this the cache would keep the longest history it ever held,
    and every step would attend over it (positions are explicit, so dropping columns moves nothing)."""
    if state.mask.shape[1] == 0 or state.mask.shape[0] == 0:
        return
    used = state.mask.any(0).nonzero()
    first = int(used[0]) if len(used) else state.mask.shape[1]
    if first == 0:
        return
    for layer in state.cache.layers:
        if layer.get_seq_length():
            layer.keys = layer.keys[..., first:, :]
            layer.values = layer.values[..., first:, :]
    state.mask = state.mask[:, first:]
