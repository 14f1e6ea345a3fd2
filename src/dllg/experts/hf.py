"""The Hugging Face transformers backend: a causal LM run by PyTorch, batched with left padding."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from dllg.experts.expert import Expert, ExpertOutput
from dllg.experts.padding import join_masked, left_pad, right_pad, roll_back_masked, trim_masked_columns


@functools.cache
def cache_argument(forward_owner: type) -> str:
    """The name a decoder's forward takes its KV cache by: transformers 5.24 renamed `past_key_values` to
    `cache` (the old name warns, and goes in 5.40); earlier 5.x versions know only the old one."""
    parameters = inspect.signature(forward_owner.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


@dataclass
class HFState:
    """A batch being decoded: the KV cache, the mask over its columns, each row's next position.

    Every step appends one column per new token to every row, so a row's last n tokens are the last n
    columns; a rolled-back token is masked out (its column stays until no row needs it)."""

    cache: DynamicCache
    mask: torch.Tensor  # (B, columns)
    next_position: torch.Tensor  # (B,): positions count real tokens only, so left padding is invisible


class HFExpert(Expert):
    """A Hugging Face causal LM with its tokenizer, on its device and compute dtype."""

    backend = "hf"

    def __init__(
        self,
        name: str,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        source: str | None = None,
    ) -> None:
        self.model = model.eval()
        # The decoder stack and the output head are called separately so that the hidden state the gate reads
        # and the logits come from one pass, and the head runs only on the positions that are needed.
        self._decoder = model.get_decoder()
        self._head = model.get_output_embeddings()
        self._softcap = getattr(model.config, "final_logit_softcapping", None)
        super().__init__(name, tokenizer, source)

    @property
    def device(self) -> torch.device:
        return self._head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self._head.weight.dtype

    @property
    def hidden_size(self) -> int:
        return self._head.weight.shape[1]

    @property
    def output_rows(self) -> int:
        return self._head.weight.shape[0]

    @property
    def max_sequence_tokens(self) -> int:
        config = self.model.config.get_text_config()
        return int(getattr(config, "max_position_embeddings", None) or 2**31 - 1)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def eos_token_ids(self) -> set[int]:
        config = getattr(self.model, "generation_config", None)
        eos = getattr(config, "eos_token_id", None) if config is not None else None
        return {eos} if isinstance(eos, int) else set(eos or ())

    @torch.inference_mode()
    def generate_alone(self, prompts: list[list[int]], new_tokens: int) -> None:
        ids, mask = left_pad(prompts, self._pad_id())
        self.model.generate(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=self._pad_id(),
        )

    def save(self, folder: str | Path) -> None:
        """Write the model and tokenizer as a Hugging Face folder (safetensors), e.g. for mergekit."""
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def _pad_id(self) -> int:
        tok = self.tokenizer
        return next((i for i in (tok.pad_token_id, tok.eos_token_id) if i is not None), 0)

    def new_cache(self) -> DynamicCache:
        return DynamicCache(config=self.model.config)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        # Padded head rows are never computed: slicing the weight keeps only the shared vocabulary.
        logits = torch.nn.functional.linear(hidden, self._head.weight[: self.vocab_size])
        if self._head.bias is not None:
            logits = logits + self._head.bias[: self.vocab_size]
        if self._softcap:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        return logits

    @torch.inference_mode()
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: DynamicCache,
        num_logits: int = 1,
    ) -> ExpertOutput:
        """Feed new tokens (B, T) given the mask over cached + new positions; return the last positions."""
        device = self.device
        # With nothing masked (one sequence, or no padding and no rollback) the mask says only "causal":
        # without it SDPA takes its causal fast path, about twice as fast per step on CPU for small models.
        mask = None if bool(attention_mask.all()) else attention_mask.to(device)
        out = self._decoder(
            input_ids=input_ids.to(device),
            attention_mask=mask,
            position_ids=position_ids.to(device),
            use_cache=True,
            **{cache_argument(type(self._decoder)): cache},
        )
        hidden = out.last_hidden_state[:, -num_logits:]
        return ExpertOutput(logits=self._logits(hidden), hidden=hidden)

    def prefill(self, prompts: list[list[int]]) -> tuple[HFState, ExpertOutput]:
        ids, mask = left_pad(prompts, self._pad_id())
        state = HFState(self.new_cache(), mask, mask.sum(-1))
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return state, self.forward(ids, mask, positions, state.cache)

    def step(self, state: HFState, tokens: torch.Tensor) -> ExpertOutput:
        count = tokens.shape[1]
        state.mask = torch.cat([state.mask, torch.ones_like(state.mask[:, :1]).expand(-1, count)], dim=-1)
        positions = state.next_position.unsqueeze(-1) + torch.arange(count)
        state.next_position = state.next_position + count
        return self.forward(tokens.cpu(), state.mask, positions, state.cache, num_logits=count)

    def keep_rows(self, state: HFState, rows: torch.Tensor) -> None:
        state.cache.batch_select_indices(rows.to(self.device))
        state.mask = state.mask[rows.cpu()]
        state.next_position = state.next_position[rows.cpu()]
        trim_masked_columns(state)  # the rows that left may have been the only ones reading the oldest

    def join(self, state: HFState, other: HFState) -> None:
        join_masked(state, other)

    def rollback(self, state: HFState, counts: torch.Tensor) -> None:
        roll_back_masked(state, counts)

    @torch.inference_mode()
    def _hidden_right_padded(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        device = self.device
        positions = torch.arange(ids.shape[1], device=device).expand(ids.shape[0], -1)
        out = self._decoder(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions)
        return out.last_hidden_state

    def sequence_states(
        self, sequences: list[list[int]], starts: list[int] | None = None
    ) -> list[torch.Tensor]:
        ids, mask = right_pad(sequences, self._pad_id())
        hidden = self._hidden_right_padded(ids, mask)
        starts = starts or [0] * len(sequences)
        pairs = zip(sequences, starts, strict=True)
        return [hidden[row, start : len(seq)] for row, (seq, start) in enumerate(pairs)]

    @torch.inference_mode()
    def mean_nll(self, sequences: list[list[int]]) -> torch.Tensor:
        ids, mask = right_pad(sequences, self._pad_id())
        hidden = self._hidden_right_padded(ids, mask)
        ids, mask = ids.to(hidden.device), mask.to(hidden.device)
        losses = []
        for row in range(ids.shape[0]):  # one row at a time bounds the (L, V) logits in memory
            keep = mask[row, :-1].bool() & mask[row, 1:].bool()
            if not keep.any():
                losses.append(torch.zeros((), device=hidden.device))
                continue
            logits = self._logits(hidden[row, :-1][keep]).float()
            losses.append(torch.nn.functional.cross_entropy(logits, ids[row, 1:][keep]))
        return torch.stack(losses)
