"""llama.cpp plumbing for the llama.cpp expert: importing the library, quieting its logs, and the context
whose KV memory holds every sequence of a batch.

Unless its size is fixed, the KV memory starts small (INITIAL_CONTEXT cells) and doubles when a decode finds
no room: the live sequences' KV state is copied out, the context remade larger, and the state copied back
under the same sequence ids. A single short generation then holds a few MB of KV memory, and a batch of long
ones never fails for want of cells below the cap (max_sequences x the model's trained context).
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
    """One llama.cpp context of a loaded model, its KV memory shared by all sequences: `fixed` cells when
    given, else growing on demand up to `cap`. `params` are the context parameters but the size."""

    def __init__(self, llama: Any, model: Any, params: Any, fixed: int | None, cap: int, label: str) -> None:
        self._llama, self._model, self._params, self._label = llama, model, params, label
        self.growable = fixed is None
        self.cap = fixed or cap
        self.ctx = None
        self._make(fixed or min(INITIAL_CONTEXT, cap))
        if not self.growable:  # a fixed context holds what llama.cpp made of it (it rounds up)
            self.cap = self.cells

    def _make(self, cells: int) -> None:
        """A context of `cells` KV cells in place of the current one (freed first: both at once could
        exceed the memory the larger alone fits in)."""
        llama = self._llama
        self.free()
        self._params.n_ctx = cells
        with silenced():  # notes on every context made (pooling, sizes): a failure is raised below
            self.ctx = llama.llama_init_from_model(self._model, self._params)
        if not self.ctx:
            raise DllgError(
                f"llama.cpp cannot make a context of {cells} cells for {self._label}: lower context_tokens, "
                "or use f16 KV memory (q8_0 needs head sizes that are multiples of 32)"
            )
        self.memory = llama.llama_get_memory(self.ctx)
        self.cells = llama.llama_n_ctx(self.ctx)  # what llama.cpp made of the cells asked for
        self._outputs = True  # a new context starts with the parameters' embeddings on

    def grow(self, live: Callable[[], list[int]], needed: int) -> bool:
        """Double the KV memory (at least `needed` more cells, at most the cap), keeping the KV state of
        each live sequence (`live()` names them) under its id; False when it cannot grow."""
        if not self.growable or self.cells >= self.cap:
            return False
        llama = self._llama
        saved = {}
        for seq in live():
            size = llama.llama_state_seq_get_size(self.ctx, seq)
            buffer = (ctypes.c_uint8 * size)()
            llama.llama_state_seq_get_data(self.ctx, buffer, size, seq)
            saved[seq] = buffer
        cells = min(self.cap, max(2 * self.cells, self.cells + needed))
        self._make(cells)
        for seq, buffer in saved.items():
            if llama.llama_state_seq_set_data(self.ctx, buffer, len(buffer), seq) == 0:
                raise DllgError(
                    f"{self._label}: llama.cpp could not restore sequence {seq} into a context of {cells} "
                    "cells; set llamacpp context_tokens to a fixed size large enough for the run"
                )
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

    def drop(self, seq: int, start: int = -1) -> None:
        """Forget sequence `seq` from position `start` on (all of it by default)."""
        self._llama.llama_memory_seq_rm(self.memory, seq, start, -1)

    def free(self) -> None:
        if self.ctx:
            self._llama.llama_free(self.ctx)
            self.ctx = None
