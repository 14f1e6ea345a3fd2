"""One expert: a frozen causal LM behind a small backend-neutral interface.

The decode loop only ever calls `forward` (a prefill, or a step of one or several new tokens per sequence),
`select_rows` (drop finished sequences from the cache), `rollback` (forget the last n cached tokens) and,
for rules that weigh experts by perplexity, `mean_nll` (score whole sequences, no cache).
"""

from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class ExpertOutput:
    logits: torch.Tensor  # (B, T, V): next-token logits at the last T positions, trimmed to the shared vocab
    hidden: torch.Tensor  # (B, T, d): last-layer (final-norm) hidden states at those positions


class Expert:
    """A Hugging Face causal LM with its tokenizer, device and compute dtype."""

    def __init__(
        self,
        name: str,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        source: str | None = None,
    ) -> None:
        self.name = name
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.source = source or name
        # The decoder stack and the output head are called separately so that the hidden state the gate reads
        # and the logits come from one pass, and the head runs only on the positions that are needed.
        self._decoder = model.get_decoder()
        self._head = model.get_output_embeddings()
        self._softcap = getattr(model.config, "final_logit_softcapping", None)
        self.vocab_size = self.output_rows  # trimmed to the shared vocabulary by the pool

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
        """Rows of the output head; often padded beyond the tokenizer's size."""
        return self._head.weight.shape[0]

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
        input_ids = input_ids.to(device)
        attention_mask = attention_mask.to(device)
        out = self._decoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids.to(device),
            past_key_values=cache,
            use_cache=True,
        )
        hidden = out.last_hidden_state[:, -num_logits:]
        return ExpertOutput(logits=self._logits(hidden), hidden=hidden)

    @torch.inference_mode()
    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L, d) last-layer states of right-padded sequences in one pass, no cache (teacher forcing)."""
        device = self.device
        positions = torch.arange(input_ids.shape[1], device=device).expand(input_ids.shape[0], -1)
        out = self._decoder(
            input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), position_ids=positions
        )
        return out.last_hidden_state

    @torch.inference_mode()
    def mean_nll(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B,) mean next-token NLL of each right-padded row's real tokens (0 for a one-token row)."""
        hidden = self.hidden_states(ids, attention_mask)
        return self._mean_nll(hidden, ids.to(hidden.device), attention_mask.to(hidden.device))

    def _mean_nll(self, hidden: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean NLL of each row's real tokens, one row at a time to bound the (L, V) logits in memory."""
        losses = []
        for row in range(ids.shape[0]):
            keep = mask[row, :-1].bool() & mask[row, 1:].bool()
            if not keep.any():
                losses.append(torch.zeros((), device=hidden.device))
                continue
            logits = self._logits(hidden[row, :-1][keep]).float()
            targets = ids[row, 1:][keep]
            losses.append(torch.nn.functional.cross_entropy(logits, targets))
        return torch.stack(losses)

    @staticmethod
    def select_rows(cache: DynamicCache, rows: torch.Tensor) -> None:
        """Keep only these batch rows in the cache (finished sequences stop costing work)."""
        cache.batch_select_indices(rows)

    @staticmethod
    def rollback(cache: DynamicCache, num_tokens: int) -> None:
        """Forget the last `num_tokens` cached positions (crop takes a negative count of tokens to drop)."""
        if num_tokens > 0:
            cache.crop(-num_tokens)
