"""`mlp`: an MLP head on the concatenated (normalised) expert hidden states, token by token."""

from typing import Any

import torch

from dllg.gate.base import Gate, mlp_head, register_gate
from dllg.gate.config import GateConfig


@register_gate
class MLPGate(Gate):
    variant = "mlp"

    def __init__(self, config: GateConfig) -> None:
        super().__init__(config)
        self.head = mlp_head(sum(config.hidden_sizes), config.head_hidden, config.num_experts, config.dropout)

    def scores(
        self, hidden: list[torch.Tensor], attention_mask: torch.Tensor | None, state: Any | None
    ) -> torch.Tensor:
        return self.head(torch.cat(self.norm(hidden), dim=-1))
