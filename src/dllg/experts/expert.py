"""One expert: a frozen causal LM behind a small backend-neutral interface.

The decode loop, the fusion rules, the gate and teacher forcing see only this interface; each backend
(`hf.py`: Hugging Face transformers, `llamacpp.py`: llama.cpp) implements it, and nothing outside `experts/`
touches a backend's model. A decoding batch lives in an opaque state the backend returns from `prefill`:

  prefill(prompts)            read the prompts (token ids, ragged), one state for the batch
  step(state, tokens)         feed T new tokens to every row (B, T); outputs at those T positions
  keep_rows(state, rows)      drop finished rows (their work stops)
  join(state, other)          append the rows of another prefilled state (requests joining a running batch)
  rollback(state, counts)     forget each row's last counts[i] tokens (a rejected speculative draft)
  release(state)              the batch is done

`prefill_later` / `step_later` start the work and return what waits for it, so that experts in other
processes (Ray actors) step at the same time; in process they run at once.

and, without a state, `sequence_states` (teacher forcing: every position's hidden state) and `mean_nll`
(a sequence's mean next-token NLL: Pack of LLMs' perplexity).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from transformers import PreTrainedTokenizerBase


@dataclass
class ExpertOutput:
    logits: torch.Tensor  # (B, T, V): next-token logits at the last T positions, trimmed to the shared vocab
    hidden: torch.Tensor  # (B, T, d): last-layer (final-norm) hidden states at those positions


class Expert(ABC):
    """A frozen causal LM with its tokenizer. `vocab_size` is the shared vocabulary the pool trims to."""

    backend: ClassVar[str]
    runs_elsewhere: ClassVar[bool] = False  # in another process: the loop starts its work first

    def __init__(self, name: str, tokenizer: PreTrainedTokenizerBase, source: str | None = None) -> None:
        self.name = name
        self.tokenizer = tokenizer
        self.source = source or name
        self.vocab_size = self.output_rows

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where its outputs are returned."""

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype:
        """Its compute dtype (llama.cpp: the dtype its outputs come in)."""

    @property
    @abstractmethod
    def hidden_size(self) -> int: ...

    @property
    @abstractmethod
    def output_rows(self) -> int:
        """Rows of the output head; often padded beyond the tokenizer's size."""

    @abstractmethod
    def parameter_count(self) -> int: ...

    @property
    @abstractmethod
    def max_sequence_tokens(self) -> int:
        """The longest sequence (prompt and answer together) it can read: its trained context, and for
        llama.cpp also the context it was given."""

    @abstractmethod
    def eos_token_ids(self) -> set[int]:
        """End-of-sequence ids the model's own generation settings declare (the tokenizer's are added)."""

    @abstractmethod
    def prefill(self, prompts: list[list[int]]) -> tuple[Any, ExpertOutput]:
        """Read every prompt; the batch's state and the outputs at each prompt's last position (T = 1)."""

    @abstractmethod
    def step(self, state: Any, tokens: torch.Tensor) -> ExpertOutput:
        """Feed `tokens` (B, T) to the rows of `state`; outputs at the T new positions."""

    def prefill_later(self, prompts: list[list[int]]) -> Callable[[], tuple[Any, ExpertOutput]]:
        """Start `prefill`; what waits for its result (in process: it has run already)."""
        result = self.prefill(prompts)
        return lambda: result

    def step_later(self, state: Any, tokens: torch.Tensor) -> Callable[[], ExpertOutput]:
        """Start `step`; what waits for its outputs (in process: it has run already)."""
        output = self.step(state, tokens)
        return lambda: output

    def outputs_wanted(self, hidden: bool) -> None:  # noqa: B027 - optional hook
        """Whether the caller reads hidden states: an expert in another process then sends (B, T, 0)."""

    @abstractmethod
    def keep_rows(self, state: Any, rows: torch.Tensor) -> None:
        """Keep only these rows (indices into the current rows), in this order. An index given twice forks
        that row: both copies continue from its state (the decode loop branches where fusion rules
        decoding together choose different tokens)."""

    @abstractmethod
    def join(self, state: Any, other: Any) -> None:
        """Append the rows of `other` (a state from `prefill`, now consumed) after the rows of `state`."""

    @abstractmethod
    def rollback(self, state: Any, counts: torch.Tensor) -> None:
        """Forget the last counts[i] tokens of row i (0 keeps the row as it is)."""

    def release(self, state: Any) -> None:  # noqa: B027 - optional hook
        """The batch is done: free what its state holds outside Python (llama.cpp's sequences)."""

    @abstractmethod
    def sequence_states(
        self, sequences: list[list[int]], starts: list[int] | None = None
    ) -> list[torch.Tensor]:
        """Teacher forcing: each sequence's last-layer hidden states, read in one pass: (len - start, d)
        from position `starts[i]` on (default 0). A backend may skip the outputs before the start (llama.cpp
        then computes no logits there: teacher forcing needs only the response's states)."""

    @abstractmethod
    def mean_nll(self, sequences: list[list[int]]) -> torch.Tensor:
        """(B,) mean next-token NLL of each sequence (0 for a one-token sequence)."""

    def generate_alone(self, prompts: list[list[int]], new_tokens: int) -> None:
        """The backend's own greedy generation of exactly `new_tokens` per prompt: the speed reference
        the benchmarks compare the fused loop with (HF `generate`, llama.cpp's own decode loop)."""
        raise NotImplementedError(f"the {self.backend} backend has no generation of its own to time")

    def __repr__(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        return f"{type(self).__name__}({self.name!r}, {self.device}, {dtype})"
