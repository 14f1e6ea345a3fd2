"""Which sequence ids of an expert's llama.cpp context hold a row: taken for new rows, given back when rows
leave, and grown in number when more rows come than the context was made for (forks, a big batch).

A shared KV memory takes more ids in place, its live sequences kept (up to llama.cpp's 256). A split memory
(one stream per id) keeps its count; when a row takes an id past its streams the memory is made anew with
more, empty, and the live sequences are decoded into it again from the tokens recorded here.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from dllg.errors import DllgError
from dllg.experts.llamacpp_context import KvContext

# llama.cpp's own limit on sequence ids in one context (LLAMA_MAX_SEQ)
MAX_SEQUENCES = 256

# (token, position, sequence id) items decoded without outputs
Redecode = Callable[[list[tuple[int, int, int]]], None]


class SequenceIds:
    def __init__(self, kv: KvContext, count: int, redecode: Redecode, label: str) -> None:
        self._kv = kv
        # the expert's own method, held weakly: no cycle keeps the expert (and its llama.cpp memory) alive
        self._redecode = weakref.WeakMethod(redecode)
        self._label = label
        self.count = count  # ids 0 .. count-1 exist
        self.free = list(range(count))
        # a split memory's live sequences' tokens by position, to decode them again into a remade memory
        self._history: dict[int, list[int]] = {}

    def take(self, count: int) -> list[int]:
        """`count` free ids, their sequences empty; more ids first where a shared memory has too few."""
        if count > len(self.free) and not self._kv.split:
            more = min(max(self.count, count - len(self.free)), MAX_SEQUENCES - self.count)
            self._kv.allow_sequences(self.count + more, self.live)
            self.free = sorted(self.free + list(range(self.count, self.count + more)))
            self.count += more
        if count > len(self.free):
            raise DllgError(
                f"expert {self._label!r} (llama.cpp) holds {self.count} sequences at once and "
                f"{count} were asked for: lower the batch size"
            )
        seqs, self.free = self.free[:count], self.free[count:]
        live = {seq: self._history.get(seq, []) for seq in self.live()}  # the taken ones are empty
        if self._kv.reserve(max(seqs, default=-1) + 1, max(map(len, live.values()), default=0)):
            # made anew with more streams, empty: the live sequences are decoded into it again
            redecode = self._redecode()
            if redecode is not None:
                redecode([(t, p, seq) for seq, tokens in live.items() for p, t in enumerate(tokens)])
        for seq in seqs:
            self._kv.drop(seq)
        return seqs

    def live(self) -> list[int]:
        return sorted(set(range(self.count)) - set(self.free))

    def release(self, seqs: list[int]) -> None:
        for seq in seqs:
            self.drop(seq)
        # lowest ids first: a split memory then needs only as many streams as rows decode at once
        self.free = sorted(self.free + seqs)

    def drop(self, seq: int, start: int = 0) -> None:
        """Forget sequence `seq` from position `start` on, in the memory and in what is recorded."""
        self._kv.drop(seq, start)
        del self._history.get(seq, [])[start:]

    def record(self, items: list[tuple[int, int, int]]) -> None:
        """Note decoded (token, position, sequence) items: only a split memory may need them again."""
        if self._kv.split:
            for token, position, seq in items:
                history = self._history.setdefault(seq, [])
                del history[position:]
                history.append(token)
