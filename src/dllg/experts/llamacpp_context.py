"""llama.cpp plumbing for the llama.cpp expert: importing the library, quieting its logs, and the context
whose KV memory holds every sequence of a batch.

Unless its size is fixed, the KV memory starts small (INITIAL_CONTEXT cells) and doubles when a decode finds
no room: the live sequences' KV state is copied out, the context remade larger, and the state copied back
under the same sequence ids. A single short generation then holds a few MB of KV memory, and a batch of long
ones never fails for want of cells below the cap (the model's trained context per sequence). A growable
memory may also be split, one stream per sequence (KvContext's `streams`).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from dllg.errors import DllgError

INSTALL_HINT = "pip install 'dllg[llamacpp]' (llama-cpp-python builds from source: ~10 min on 2 cores)"
# KV memory types offered: f16 (llama.cpp's default) and q8_0 (about half the memory; logits change).
CACHE_TYPES = ("f16", "q8_0")
# The KV cells a growable context starts with: a prompt and ~3k new tokens at batch 1 fit without a regrow.
INITIAL_CONTEXT = 4096
# The fewest KV cells a stream of a split memory is given (llama.cpp pads a context to multiples of 256).
MIN_STREAM = 256
# llama_decode's return code when the KV memory has no room for the batch (nothing of it was decoded).
NO_KV_SLOT = 1


def import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise DllgError(f"the llama.cpp backend needs llama-cpp-python: {INSTALL_HINT}") from exc
    return llama_cpp


def quiet_logs() -> None:
    """llama.cpp logs every load and context to stderr; keep its errors only. llama-cpp-python routes the
    logs through its `llama-cpp-python` logger once its `_logger` module is imported."""
    importlib.import_module("llama_cpp._logger")
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """llama.cpp's own logs off for a while: what it would report there, the caller handles or raises."""
    logger = logging.getLogger("llama-cpp-python")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def amx_in_use(llama: Any) -> bool:
    """Whether this llama.cpp build would run quantized weights through Intel AMX on this CPU. Its AMX
    matrix product crashes the process on Q4_K_M weights (llama.cpp issue 20824, unfixed upstream; seen
    here on a Xeon with AMX_INT8: a segfault on the first decode), so the AMX buffers are then left off."""
    return "AMX_INT8 = 1" in llama.llama_print_system_info().decode(errors="replace")


def cache_type(llama: Any, name: str, which: str) -> int:
    if name not in CACHE_TYPES:
        raise DllgError(f"{which}={name!r} is not a KV memory type here: use one of {', '.join(CACHE_TYPES)}")
    return {"f16": llama.GGML_TYPE_F16, "q8_0": llama.GGML_TYPE_Q8_0}[name]


class KvContext:
    """One llama.cpp context of a loaded model: `fixed` cells shared by all sequences when given, else KV
    memory growing on demand up to `cap` cells per sequence. `params` are the context parameters but the
    size.

    With `streams` (growable contexts only), each sequence gets its own KV stream (llama.cpp's kv_unified
    off), all of one size: a token's attention then reads only its own sequence's cells, where one shared
    memory makes every row of a batch read the cells of all of them (masked), a cost that grows with rows x
    their total context. The price is memory: every stream is as large as the longest sequence needs.
    Streams are added as higher sequence ids come into use, up to `streams`; llama.cpp cannot move a
    sequence's state between layouts of different stream counts, so the memory is then made anew and its
    owner decodes the live sequences again (`reserve`)."""

    def __init__(
        self, llama: Any, model: Any, params: Any, fixed: int | None, cap: int, label: str, streams: int = 0
    ) -> None:
        self._llama, self._model, self._params, self._label = llama, model, params, label
        self.growable = fixed is None
        self.split = self.growable and streams > 0
        self.max_streams = streams if self.split else 1
        self.streams = 1
        self.cap = fixed or cap
        self.ctx = None
        self._make(fixed or min(INITIAL_CONTEXT, cap), 1)
        if not self.growable:  # a fixed context holds what llama.cpp made of it (it rounds up)
            self.cap = self.cells

    def _make(self, seq_cells: int, streams: int) -> None:
        """A context of `seq_cells` KV cells per sequence (all of them, shared, when not split) in place of
        the current one (freed first: both at once could exceed the memory the larger alone fits in)."""
        llama = self._llama
        self.free()
        self._params.n_ctx = seq_cells * streams if self.split else seq_cells
        if self.split:
            self._params.kv_unified = False
            self._params.n_seq_max = streams
        with silenced():  # notes on every context made (pooling, sizes): a failure is raised below
            self.ctx = llama.llama_init_from_model(self._model, self._params)
        if not self.ctx:
            raise DllgError(
                f"llama.cpp cannot make a context of {self._params.n_ctx} cells for {self._label}: lower "
                "context_tokens, or use f16 KV memory (q8_0 needs head sizes that are multiples of 32)"
            )
        self.memory = llama.llama_get_memory(self.ctx)
        self.cells = llama.llama_n_ctx(self.ctx)  # what llama.cpp made of the cells asked for
        self.seq_cells = llama.llama_n_ctx_seq(self.ctx) if self.split else self.cells
        self.streams = streams
        self._outputs = True  # a new context starts with the parameters' embeddings on

    def _remake(self, live: Callable[[], list[int]], seq_cells: int) -> None:
        """The context remade with `seq_cells` cells per sequence, keeping the KV state of each live
        sequence (`live()` names them) under its id. Forked sequences share their common cells, but each is
        restored into cells of its own: the new memory is made large enough for all of them apart."""
        lengths = {seq: self._llama.llama_memory_seq_pos_max(self.memory, seq) + 1 for seq in live()}
        saved = {seq: self.save_sequence(seq) for seq, length in lengths.items() if length > 0}
        held = max(lengths.values(), default=0) if self.split else sum(lengths.values())
        self._make(max(seq_cells, held), self.streams)
        for seq, buffer in saved.items():
            if not self.restore_sequence(buffer, seq):
                raise DllgError(
                    f"{self._label}: llama.cpp could not restore sequence {seq} into a context of "
                    f"{self.cells} cells; set llamacpp context_tokens to a fixed size large enough for the "
                    "run"
                )

    def save_sequence(self, seq: int) -> Any:
        """Sequence `seq`'s KV state, as llama.cpp writes it (a ctypes byte array)."""
        size = self._llama.llama_state_seq_get_size(self.ctx, seq)
        buffer = (ctypes.c_uint8 * size)()
        self._llama.llama_state_seq_get_data(self.ctx, buffer, size, seq)
        return buffer

    def restore_sequence(self, buffer: Any, seq: int) -> bool:
        """Sequence `seq` set to a saved state; False where llama.cpp refuses it (no room, another layout)."""
        return self._llama.llama_state_seq_set_data(self.ctx, buffer, len(buffer), seq) != 0

    def reserve(self, sequences: int, longest: int) -> bool:
        """Room for sequence ids below `sequences`: a split memory adds streams (doubling, at most its
        maximum) and is then made anew, empty: True, and the caller decodes its live sequences (the longest
        of `longest` tokens) again. The cells it had are shared out among the streams, so that more streams
        do not multiply the memory; a stream too short grows later. A shared memory holds every id it was
        made for already."""
        if not self.split or sequences <= self.streams:
            return False
        streams = self.streams
        while streams < sequences:
            streams *= 2
        streams = min(streams, self.max_streams)
        self._make(min(self.cap, max(MIN_STREAM, self.cells // streams, longest + 1)), streams)
        return True

    def packs(self, tokens: int, length: int) -> bool:
        """Whether a sequence of `length` tokens fits beside `tokens` tokens of other sequences in the
        memory as it is now (a split memory gives each its own stream, grown when one is too short)."""
        return self.split or tokens + length <= self.cells

    def grow(self, live: Callable[[], list[int]], needed: int) -> bool:
        """Double the KV memory (at least `needed` more cells, per sequence when split; at most the cap),
        keeping the KV state of each live sequence (`live()` names them) under its id; False when it
        cannot grow."""
        if not self.growable or self.seq_cells >= self.cap:
            return False
        self._remake(live, min(self.cap, max(2 * self.seq_cells, self.seq_cells + needed)))
        return True

    def decode(self, batch: Any, tokens: int, outputs: bool, live: Callable[[], list[int]]) -> int:
        """llama_decode of a filled batch of `tokens` tokens, with outputs (logits and hidden states) for all
        of them or none, growing the memory while it has no room; llama.cpp's return code."""
        llama = self._llama
        while True:
            if outputs != self._outputs:  # a context that outputs embeddings outputs every token
                llama.llama_set_embeddings(self.ctx, outputs)
                self._outputs = outputs
            with silenced():  # a full memory is logged as an error here, and grown or reported after
                code = llama.llama_decode(self.ctx, batch)
            if code != NO_KV_SLOT or not self.grow(live, tokens):
                return code

    def copy(self, source: int, target: int) -> None:
        """Sequence `target` (empty) made a copy of sequence `source`: in a shared memory both then read the
        same cells; a split memory copies them into the target's stream."""
        self._llama.llama_memory_seq_cp(self.memory, source, target, -1, -1)

    def allow_sequences(self, count: int, live: Callable[[], list[int]]) -> None:
        """Room for sequence ids below `count` in a shared memory: the context is made anew for them, the
        live sequences' KV state kept under their ids."""
        self._params.n_seq_max = count
        self._remake(live, self.seq_cells)

    def drop(self, seq: int, start: int = -1) -> None:
        """Forget sequence `seq` from position `start` on (all of it by default)."""
        self._llama.llama_memory_seq_rm(self.memory, seq, start, -1)

    def free(self) -> None:
        if self.ctx:
            self._llama.llama_free(self.ctx)
            self.ctx = None
