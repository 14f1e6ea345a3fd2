"""The llama.cpp backend: a GGUF model run by llama.cpp (llama-cpp-python's low-level API), on the CPU.

One llama.cpp context per expert holds every sequence of a batch in its KV memory, each under its own
sequence id with its own positions: no padding. One `llama_decode` returns, for every token flagged for
output, both the logits and the final-norm hidden state (a context made with `embeddings` on and pooling
off), so the gate reads the same kind of state as on the HF backend. Rows leave by dropping their sequence
from the memory, and roll back by cutting its tail; the ids are handed out, given back and grown in number
by llamacpp_sequences.SequenceIds.

Batched llama.cpp is not bitwise deterministic across batch shapes: the same sequence decoded alone and
beside others can differ in the last digits of its logits, so greedy choices can differ at near-ties.

Memory (scripts/llamacpp_memory.py measures it): the tensors llama.cpp repacks for the CPU, as a copy; the
others as mapped from the GGUF, resident only where decoding reads them; the KV memory (`context_tokens`
cells, f16 unless `cache_type_k`/`cache_type_v` say q8_0, which changes the logits); and compute and output
buffers that fill, in proportion to `batch_tokens`, once a batch with outputs on every token runs.

Unless `context_tokens` fixes it, the KV memory grows on demand (llamacpp_context.KvContext), shared by
all sequences or (`kv_split`) one stream per sequence: on the real pair at 8 rows of 300-1000 tokens of
context a step took 0.88-0.92x the time with split streams, and a prefill of the 8 up to 1.16x
(scripts/bench_llamacpp_kv_layout.py), so one shared memory stays the default.

With `prompt_cache` (a folder) each prompt's prefill is kept on disk and restored into the shared memory
when the same prompt comes again (llamacpp_prompts.PromptCache): the methods of an evaluation prefill each
prompt once.
"""

from __future__ import annotations

import ctypes
import itertools
import mmap
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from dllg.errors import DllgError
from dllg.experts.expert import Expert, ExpertOutput
from dllg.experts.llamacpp_context import (
    INITIAL_CONTEXT,
    KvContext,
    amx_in_use,
    cache_type,
    import_llama_cpp,
    quiet_logs,
    silenced,
)
from dllg.experts.llamacpp_prompts import Prefill, PromptCache
from dllg.experts.llamacpp_sequences import SequenceIds


def drop_mapped_pages(path: str) -> None:
    """Take the pages of `path`'s shared mappings out of this process's resident memory (Linux; elsewhere
    nothing). llama.cpp maps the whole GGUF with prefetch and copies out the tensors it repacks for the CPU,
    so their mapped pages stay resident, never read again: counted twice. Dropping a read-only shared file
    mapping's pages loses nothing: what inference reads faults back in from the page cache, the same bytes."""
    if sys.platform != "linux":
        return
    target = os.path.realpath(path)
    madvise = ctypes.CDLL(None).madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)  # range, permissions, offset, device, inode, path
            if len(fields) == 6 and fields[5].rstrip("\n") == target and fields[1].endswith("s"):
                start, end = (int(bound, 16) for bound in fields[0].split("-"))
                madvise(start, end - start, mmap.MADV_DONTNEED)  # a failure only leaves the pages resident


IGNORED = -100  # a target position that scores nothing (the last token of a sequence predicts none)

# takes a decoded chunk's outputs: (offset of its first item, logits, hidden states), views valid in the call
OutputReader = Callable[[int, np.ndarray, np.ndarray], None]


@dataclass
class LlamaState:
    """A batch being decoded: each row's llama.cpp sequence id and next position."""

    seqs: list[int]
    positions: list[int]


class LlamaCppExpert(Expert):
    """A GGUF model in one llama.cpp context; `tokenizer` is the same vocabulary as a Hugging Face tokenizer
    (the pool checks that experts share it, and decoding and chat templates go through it)."""

    backend = "llamacpp"

    def __init__(
        self,
        name: str,
        gguf_file: str | Path,
        tokenizer: PreTrainedTokenizerBase,
        source: str | None = None,
        context_tokens: int | None = None,
        max_sequences: int = 16,
        threads: int | None = None,
        batch_tokens: int = 512,
        cache_type_k: str = "f16",
        cache_type_v: str = "f16",
        kv_split: bool = False,
        prompt_cache: str | Path | None = None,
    ) -> None:
        if prompt_cache is not None and kv_split:
            raise DllgError(
                "a prompt cache restores states into the shared KV memory, which kv_split replaces: drop one"
            )
        llama = import_llama_cpp()
        quiet_logs()
        type_k = cache_type(llama, cache_type_k, "cache_type_k")
        type_v = cache_type(llama, cache_type_v, "cache_type_v")
        llama.llama_backend_init()
        self._llama = llama
        self.gguf_file = str(gguf_file)
        model_params = llama.llama_model_default_params()
        model_params.n_gpu_layers = 0
        # repacked weight layouts (faster matrix products), except through AMX, which crashes (see amx_in_use)
        self.extra_buffers = not amx_in_use(llama)
        model_params.use_extra_bufts = self.extra_buffers
        with silenced():  # notes on the vocabulary and tensors; a failed load is raised below
            self._model = llama.llama_model_load_from_file(self.gguf_file.encode(), model_params)
        if not self._model:
            raise DllgError(f"llama.cpp cannot load {self.gguf_file}: check that it is a complete GGUF file")
        drop_mapped_pages(self.gguf_file)
        self._vocab = llama.llama_model_get_vocab(self._model)
        self._rows = llama.llama_vocab_n_tokens(self._vocab)
        self._width = llama.llama_model_n_embd(self._model)
        threads = threads or max(1, torch.get_num_threads())
        trained = int(llama.llama_model_n_ctx_train(self._model))
        params = llama.llama_context_default_params()
        params.n_batch = batch_tokens
        params.n_ubatch = batch_tokens
        params.n_seq_max = max_sequences
        params.n_threads = threads
        params.n_threads_batch = threads
        params.embeddings = True  # the final-norm hidden state of every output token, beside its logits
        params.pooling_type = llama.LLAMA_POOLING_TYPE_NONE
        params.kv_unified = True  # one memory shared by all sequences: context_tokens in all, not each
        # (with kv_split a growable memory is one stream per sequence instead: KvContext)
        params.type_k, params.type_v = type_k, type_v
        if cache_type_v != "f16":  # a quantized V needs flash attention: on, as "auto" makes it on the CPU
            params.flash_attn_type = llama.LLAMA_FLASH_ATTN_TYPE_ENABLED
        # unfixed, it may grow to what max_sequences sequences of the trained length could need
        per_sequence = trained if trained > 0 else INITIAL_CONTEXT
        cap = per_sequence if kv_split else max_sequences * per_sequence
        label = f"{self.gguf_file} (KV {cache_type_k}/{cache_type_v})"
        streams = max_sequences if kv_split else 0
        self._kv = KvContext(llama, self._model, params, context_tokens, cap, label, streams)
        self._batch_tokens = batch_tokens
        self._batch = llama.llama_batch_init(batch_tokens, 0, 1)
        self._ids = SequenceIds(self._kv, max_sequences, self._decode, name)
        # the saved states are llama.cpp's own bytes: another version of it may read them otherwise
        layout = (cache_type_k, cache_type_v, getattr(llama, "__version__", "unknown"))
        self._prompts = PromptCache(prompt_cache, self.gguf_file, layout) if prompt_cache else None
        super().__init__(name, tokenizer, source)

    def __del__(self) -> None:
        llama = getattr(self, "_llama", None)
        if llama is None:
            return
        # At interpreter exit the library (and this module's globals) may already be gone: nothing is left
        # to free then.
        try:
            if getattr(self, "_batch", None) is not None:
                llama.llama_batch_free(self._batch)
            if getattr(self, "_kv", None) is not None:
                self._kv.free()
            if getattr(self, "_model", None):
                llama.llama_model_free(self._model)
        except Exception:
            pass

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def max_sequences(self) -> int:
        """Sequences the context holds at once (grows in a shared memory when more rows come)."""
        return self._ids.count

    @property
    def hidden_size(self) -> int:
        return self._width

    @property
    def output_rows(self) -> int:
        return self._rows

    @property
    def max_sequence_tokens(self) -> int:
        trained = int(self._llama.llama_model_n_ctx_train(self._model))
        return min(trained, self._kv.cap) if trained > 0 else self._kv.cap

    def parameter_count(self) -> int:
        return int(self._llama.llama_model_n_params(self._model))

    def eos_token_ids(self) -> set[int]:
        ids = {self._llama.llama_vocab_eos(self._vocab), self._llama.llama_vocab_eot(self._vocab)}
        return {i for i in ids if i >= 0}

    def _decode(self, items: list[tuple[int, int, int]], read: OutputReader | None = None) -> None:
        """Decode (token, position, sequence) items in chunks of the batch size. With `read`, every item is
        an output and each chunk's are handed to it as views of llama.cpp's buffers (logits trimmed to the
        vocabulary, hidden states; valid only during the call): `read(offset of the chunk's first item,
        logits, hidden)`. A context that outputs embeddings marks every token as an output, so a call
        outputs all of its tokens or none (embeddings switched off)."""
        llama, batch = self._llama, self._batch
        outputs = read is not None
        for start in range(0, len(items), self._batch_tokens):
            chunk = items[start : start + self._batch_tokens]
            batch.n_tokens = len(chunk)
            for i, (token, position, seq) in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = position
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = outputs
            code = self._kv.decode(batch, len(chunk), outputs, self._ids.live)
            if code != 0:
                raise DllgError(
                    f"llama.cpp could not decode for expert {self.name!r} (code {code}): the context is "
                    "full; lower the batch size or max_new_tokens, or raise context_tokens"
                )
            self._ids.record(chunk)
            if read is not None:
                logits = np.ctypeslib.as_array(
                    llama.llama_get_logits(self._kv.ctx), shape=(len(chunk), self._rows)
                )
                hidden = np.ctypeslib.as_array(
                    llama.llama_get_embeddings(self._kv.ctx), shape=(len(chunk), self._width)
                )
                read(start, logits[:, : self.vocab_size], hidden)

    def _outputs(self, items: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """Decode `items` and return every item's logits and hidden state, in order (copied once, into
        arrays made for them)."""
        logits = np.empty((len(items), self.vocab_size), np.float32)
        hidden = np.empty((len(items), self._width), np.float32)

        def copy(offset: int, chunk_logits: np.ndarray, chunk_hidden: np.ndarray) -> None:
            logits[offset : offset + len(chunk_logits)] = chunk_logits
            hidden[offset : offset + len(chunk_hidden)] = chunk_hidden

        self._decode(items, copy)
        return logits, hidden

    # -- the Expert interface ----------------------------------------------------------------------------

    def prefill(self, prompts: list[list[int]]) -> tuple[LlamaState, ExpertOutput]:
        state = LlamaState(self._ids.take(len(prompts)), [len(p) for p in prompts])
        try:
            kept = self._restore_prefills(prompts, state.seqs)
            todo = [i for i in range(len(prompts)) if i not in kept]
            # Everything but each prompt's last token without outputs, then the last tokens with them.
            body = [(t, j, state.seqs[i]) for i in todo for j, t in enumerate(prompts[i][:-1])]
            self._decode(body)
            last = [(prompts[i][-1], len(prompts[i]) - 1, state.seqs[i]) for i in todo]
            logits, hidden = self._outputs(last)
        except BaseException:
            self.release(state)  # the loop never saw this state: give its sequences back here
            raise
        made = {i: Prefill(b"", logits[k], hidden[k]) for k, i in enumerate(todo)}
        if self._prompts is not None:
            for i, prefill in made.items():
                prefill.state = bytes(self._kv.save_sequence(state.seqs[i]))
                self._prompts.save(prompts[i], prefill)
        every = [kept.get(i) or made[i] for i in range(len(prompts))]
        return state, ExpertOutput(
            logits=torch.from_numpy(np.stack([p.logits for p in every])).unsqueeze(1),
            hidden=torch.from_numpy(np.stack([p.hidden for p in every])).unsqueeze(1),
        )

    def _restore_prefills(self, prompts: list[list[int]], seqs: list[int]) -> dict[int, Prefill]:
        """The prompts whose prefill the cache holds, restored into their sequences (index -> prefill)."""
        if self._prompts is None:
            return {}
        kept = {}
        for i, (prompt, seq) in enumerate(zip(prompts, seqs, strict=True)):
            found = self._prompts.load(prompt)
            if found is not None and self._restore_sequence(found.state, seq, len(prompt)):
                kept[i] = found
        self._prompts.hits += len(kept)
        self._prompts.misses += len(prompts) - len(kept)
        return kept

    def _restore_sequence(self, data: bytes, seq: int, length: int) -> bool:
        """Sequence `seq` set to a saved state of `length` tokens, the memory grown if it has no room;
        False (and the sequence empty) where llama.cpp refuses it for another reason (then the prompt is
        prefilled and its file written again)."""
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        for _ in range(2):
            if self._kv.restore_sequence(buffer, seq):
                return True
            self._kv.drop(seq)
            if self._cells_used() + length <= self._kv.cells or not self._kv.grow(self._ids.live, length):
                return False  # room was not what it lacked: growing would only take memory
        return False

    def _cells_used(self) -> int:
        memory = self._kv.memory
        return sum(self._llama.llama_memory_seq_pos_max(memory, seq) + 1 for seq in self._ids.live())

    def step(self, state: LlamaState, tokens: torch.Tensor) -> ExpertOutput:
        rows, count = tokens.shape
        items = [
            (int(token), state.positions[row] + offset, state.seqs[row])
            for row in range(rows)
            for offset, token in enumerate(tokens[row].tolist())
        ]
        logits, hidden = self._outputs(items)
        state.positions = [p + count for p in state.positions]
        return ExpertOutput(
            logits=torch.from_numpy(logits).view(rows, count, -1),
            hidden=torch.from_numpy(hidden).view(rows, count, -1),
        )

    def keep_rows(self, state: LlamaState, rows: torch.Tensor) -> None:
        kept = rows.tolist()
        leaving = set(range(len(state.seqs))) - set(kept)
        self._ids.release([state.seqs[i] for i in sorted(leaving)])
        # A row named again is a fork: a new sequence sharing its source's KV cells (llama.cpp copies the
        # cells' sequence membership, not the tensors), so both continue from the same state.
        repeats = [i for j, i in enumerate(kept) if i in kept[:j]]
        if repeats and self._kv.split:
            raise DllgError(
                f"expert {self.name!r}: rows cannot fork in a split KV memory (kv_split); drop kv_split"
            )
        copies = iter(self._ids.take(len(repeats)))
        seqs, seen = [], set()
        for i in kept:
            if i in seen:
                seqs.append(next(copies))
                self._kv.copy(state.seqs[i], seqs[-1])
            else:
                seqs.append(state.seqs[i])
            seen.add(i)
        state.seqs = seqs
        state.positions = [state.positions[i] for i in kept]

    def join(self, state: LlamaState, other: LlamaState) -> None:
        state.seqs += other.seqs  # sequences live side by side in the one memory: nothing to move
        state.positions += other.positions
        other.seqs, other.positions = [], []

    def rollback(self, state: LlamaState, counts: torch.Tensor) -> None:
        for row, count in enumerate(counts.tolist()):
            if count:
                state.positions[row] -= count
                self._ids.drop(state.seqs[row], state.positions[row])

    def release(self, state: LlamaState) -> None:
        """Free a finished batch's sequences (the loop drops every row when the batch is done)."""
        self._ids.release(state.seqs)
        state.seqs, state.positions = [], []

    def _groups(
        self, sequences: list[list[int]], starts: list[int]
    ) -> list[tuple[list[list[int]], list[int]]]:
        """Consecutive sequences (with their starts) packed so that a group fits the context's memory and
        its sequence ids."""
        groups: list[tuple[list[list[int]], list[int]]] = []
        tokens = 0
        for sequence, start in zip(sequences, starts, strict=True):
            if len(sequence) > self._kv.cap:
                raise DllgError(
                    f"a sequence of {len(sequence)} tokens does not fit expert {self.name!r}'s llama.cpp "
                    f"context of {self._kv.cap}: shorten it or raise context_tokens"
                )
            if (
                not groups
                or len(groups[-1][0]) == self.max_sequences
                or not self._kv.packs(tokens, len(sequence))
            ):
                groups.append(([], []))
                tokens = 0
            groups[-1][0].append(sequence)
            groups[-1][1].append(start)
            tokens += len(sequence)
        return groups

    def _read(self, sequences: list[list[int]], starts: list[int], read: OutputReader) -> None:
        """Decode whole sequences, each under its own sequence id, handing `read` the outputs at every
        position from `starts[i]` on, in order (offsets count across all the sequences). The positions before
        a start are decoded first, without outputs: no logits are computed or copied there."""
        done = 0
        for group, group_starts in self._groups(sequences, starts):
            seqs = self._ids.take(len(group))
            try:
                items = [
                    (token, position, seq, position >= start)
                    for sequence, start, seq in zip(group, group_starts, seqs, strict=True)
                    for position, token in enumerate(sequence)
                ]
                head = [item[:3] for item in items if not item[3]]
                tail = [item[:3] for item in items if item[3]]
                if head:
                    self._decode(head)
                self._decode(
                    tail, lambda offset, logits, hidden, base=done: read(base + offset, logits, hidden)
                )
            finally:
                self._ids.release(seqs)
            done += len(tail)

    def sequence_states(
        self, sequences: list[list[int]], starts: list[int] | None = None
    ) -> list[torch.Tensor]:
        starts = starts or [0] * len(sequences)
        counts = [len(sequence) - start for sequence, start in zip(sequences, starts, strict=True)]
        hidden = np.empty((sum(counts), self._width), np.float32)

        def keep(offset: int, _logits: np.ndarray, states: np.ndarray) -> None:
            hidden[offset : offset + len(states)] = states  # only the states: the logits are never copied

        self._read(sequences, starts, keep)
        bounds = np.cumsum([0, *counts])
        return [torch.from_numpy(hidden[a:b]) for a, b in itertools.pairwise(bounds)]

    def mean_nll(self, sequences: list[list[int]]) -> torch.Tensor:
        # every position but the last predicts the next token; the last is ignored
        targets = np.concatenate([[*sequence[1:], IGNORED] for sequence in sequences]).astype(np.int64)
        losses = np.zeros(len(targets), np.float32)

        def score(offset: int, logits: np.ndarray, _hidden: np.ndarray) -> None:
            # each chunk's losses straight from llama.cpp's buffer: a prompt's logits (vocabulary x tokens,
            # hundreds of MB for long ones) are never copied
            target = torch.from_numpy(targets[offset : offset + len(logits)])
            loss = torch.nn.functional.cross_entropy(
                torch.from_numpy(logits), target, reduction="none", ignore_index=IGNORED
            )
            losses[offset : offset + len(logits)] = loss.numpy()

        self._read(sequences, [0] * len(sequences), score)
        means, offset = [], 0
        for sequence in sequences:
            count = len(sequence) - 1
            means.append(
                torch.from_numpy(losses[offset : offset + count]).mean() if count else torch.zeros(())
            )
            offset += len(sequence)
        return torch.stack(means)

    def generate_alone(self, prompts: list[list[int]], new_tokens: int) -> None:
        state, output = self.prefill(prompts)
        try:
            for _ in range(new_tokens - 1):
                output = self.step(state, output.logits[:, -1].argmax(-1, keepdim=True))
        finally:
            self.release(state)
