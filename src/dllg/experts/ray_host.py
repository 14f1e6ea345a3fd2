"""The actor side of the Ray placement (`ray_placement`): what runs in an expert's actor process, and how
tensors cross the boundary."""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import torch

from dllg.experts.expert import ExpertOutput

# A tensor as Ray moves it fastest: a numpy array (zero-copy out of the object store) and its torch dtype
# (bf16, which numpy lacks, travels as its int16 bit pattern).
Packed = tuple[np.ndarray, torch.dtype]


def pack(tensor: torch.Tensor) -> Packed:
    tensor = tensor.detach().cpu()
    bits = tensor.view(torch.int16) if tensor.dtype == torch.bfloat16 else tensor
    return bits.numpy(), tensor.dtype


def unpack(packed: Packed) -> torch.Tensor:
    array, dtype = packed
    tensor = torch.from_numpy(array.copy())  # the object store's memory is read-only
    return tensor.view(torch.bfloat16) if dtype == torch.bfloat16 else tensor


class ExpertHost:
    """What runs in the actor process: one expert and the decoding states the driver refers to by id."""

    def __init__(
        self, name: str, device: str, dtype: str, backend: str, threads: int, llamacpp: dict | None = None
    ) -> None:
        from dllg.experts.loading import load_expert

        torch.set_num_threads(threads)
        self.states: dict[int, Any] = {}
        self.ids = itertools.count()
        self.send_hidden = True
        self.busy = 0.0  # seconds spent in the expert's steps and prefills: the rest of a call is transport
        # A failed load is kept for `describe` to raise: a task's error reaches the driver as itself,
        # where an actor that dies in its constructor reports only that it died.
        self.load_error: Exception | None = None
        try:
            self.expert = load_expert(name, device, dtype, backend, llamacpp=llamacpp)
        except Exception as exc:
            self.load_error = exc

    def describe(self) -> dict[str, Any]:
        if self.load_error is not None:
            raise self.load_error
        e = self.expert
        return {
            "name": e.name,
            "source": e.source,
            "backend": e.backend,
            "tokenizer": e.tokenizer,
            "device": str(e.device),
            "dtype": e.dtype,
            "hidden_size": e.hidden_size,
            "output_rows": e.output_rows,
            "parameter_count": e.parameter_count(),
            "max_sequence_tokens": e.max_sequence_tokens,
            "eos_token_ids": e.eos_token_ids(),
        }

    def configure(self, vocab_size: int, send_hidden: bool) -> None:
        self.expert.vocab_size = vocab_size
        self.send_hidden = send_hidden

    def _send(self, output: ExpertOutput) -> tuple[Packed, Packed]:
        hidden = output.hidden if self.send_hidden else output.hidden[..., :0]
        return pack(output.logits), pack(hidden)

    def prefill(self, prompts: list[list[int]]) -> tuple[int, tuple[Packed, Packed]]:
        started = time.perf_counter()
        state, output = self.expert.prefill(prompts)
        sid = next(self.ids)
        self.states[sid] = state
        sent = self._send(output)
        self.busy += time.perf_counter() - started
        return sid, sent

    def step(self, sid: int, tokens: torch.Tensor) -> tuple[Packed, Packed]:
        started = time.perf_counter()
        sent = self._send(self.expert.step(self.states[sid], tokens))
        self.busy += time.perf_counter() - started
        return sent

    def step_compiled(self, call: tuple[int, torch.Tensor]) -> tuple[Packed, Packed]:
        """`step` as the compiled graph calls it: with its one input, (state id, tokens)."""
        return self.step(*call)

    def busy_seconds(self) -> float:
        return self.busy

    def keep_rows(self, sid: int, rows: torch.Tensor) -> None:
        self.expert.keep_rows(self.states[sid], rows)

    def join(self, sid: int, other: int) -> None:
        self.expert.join(self.states[sid], self.states.pop(other))

    def rollback(self, sid: int, counts: torch.Tensor) -> None:
        self.expert.rollback(self.states[sid], counts)

    def release(self, sid: int) -> None:
        state = self.states.pop(sid, None)
        if state is not None:
            self.expert.release(state)

    def sequence_states(
        self, sequences: list[list[int]], starts: list[int] | None = None
    ) -> list[torch.Tensor]:
        return [s.cpu() for s in self.expert.sequence_states(sequences, starts)]

    def mean_nll(self, sequences: list[list[int]]) -> torch.Tensor:
        return self.expert.mean_nll(sequences).cpu()

    def generate_alone(self, prompts: list[list[int]], new_tokens: int) -> None:
        self.expert.generate_alone(prompts, new_tokens)
