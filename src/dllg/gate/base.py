"""The gate interface: expert hidden states in, one weight per expert per token out.

`forward` reads whole (right-padded) sequences at once, for training; `step` reads only new positions
and keeps whatever it needs (a KV cache) in a state object, for decoding. Both must give the same weights.
"""

from abc import abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from dllg.errors import DllgError
from dllg.gate.config import GateConfig
from dllg.registry import register_unique


class ExpertStateNorm(nn.Module):
    """A LayerNorm per expert: experts' hidden states live on very different scales."""

    def __init__(self, hidden_sizes: list[int]) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(d) for d in hidden_sizes)

    def forward(self, hidden: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(hidden) != len(self.norms):
            raise DllgError(
                f"the gate was built for {len(self.norms)} experts but got {len(hidden)} hidden states"
            )
        return [norm(h.to(norm.weight.dtype)) for norm, h in zip(self.norms, hidden, strict=True)]


def mlp_head(d_in: int, d_hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    head = nn.Sequential(
        nn.Linear(d_in, d_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_hidden, d_out)
    )
    nn.init.zeros_(head[-1].weight)  # start at w = sigmoid(0) = 0.5 for every expert
    nn.init.zeros_(head[-1].bias)
    return head


class Gate(nn.Module):
    """Subclasses set `variant`, register with @register_gate and implement `scores`."""

    variant: ClassVar[str]

    def __init__(self, config: GateConfig) -> None:
        super().__init__()
        self.config = config
        self.norm = ExpertStateNorm(config.hidden_sizes)

    @abstractmethod
    def scores(
        self, hidden: list[torch.Tensor], attention_mask: torch.Tensor | None, state: Any | None
    ) -> torch.Tensor:
        """(B, T, K) pre-sigmoid scores for T positions; `state` (decoding) is advanced in place."""

    def to_weights(self, scores: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(scores)
        if self.config.normalize:
            weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-6)
        return weights

    def forward(self, hidden: list[torch.Tensor], attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Weights (B, T, K) for whole sequences (training, teacher forcing)."""
        return self.to_weights(self.scores(hidden, attention_mask, None))

    def new_state(self, batch_size: int) -> Any | None:
        """Per-batch decoding state; None for gates that look at one token at a time."""
        return None

    def step(self, hidden: list[torch.Tensor], state: Any | None) -> torch.Tensor:
        """Weights (B, T, K) for the next T positions of every sequence, advancing `state`."""
        return self.to_weights(self.scores(hidden, None, state))

    def select_rows(self, state: Any | None, rows: torch.Tensor) -> Any | None:
        return state

    def join_rows(self, state: Any | None, other: Any | None) -> Any | None:
        """`state` with the rows of `other` (a new state of the rows joining the batch) appended."""
        return state

    def rollback(self, state: Any | None, counts: torch.Tensor) -> None:
        """Forget the last counts[i] positions of row i (rejected drafts); stateless gates keep nothing."""

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds: trained parameters only (a frozen aux LM is reloaded from its source)."""
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in trainable}


GATES: dict[str, type[Gate]] = {}


def register_gate(cls: type[Gate]) -> type[Gate]:
    return register_unique(GATES, cls.variant, cls, "gate variant")
