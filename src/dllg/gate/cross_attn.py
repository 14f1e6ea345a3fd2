"""`cross_attn`: each expert's state becomes a token; attention across the K expert tokens, then a score
per expert token. Looks at one position at a time, like `mlp`, but compares experts explicitly."""

from typing import Any

import torch
from torch import nn

from dllg.gate.base import Gate, register_gate
from dllg.gate.config import GateConfig


@register_gate
class CrossAttentionGate(Gate):
    variant = "cross_attn"

    def __init__(self, config: GateConfig) -> None:
        super().__init__(config)
        dim = config.attn_dim
        self.inputs = nn.ModuleList(nn.Linear(d, dim) for d in config.hidden_sizes)
        self.expert_embedding = nn.Parameter(torch.zeros(config.num_experts, dim))
        self.attention = nn.MultiheadAttention(
            dim, config.attn_heads, dropout=config.dropout, batch_first=True
        )
        self.out_norm = nn.LayerNorm(dim)
        self.score = nn.Linear(dim, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def scores(
        self, hidden: list[torch.Tensor], attention_mask: torch.Tensor | None, state: Any | None
    ) -> torch.Tensor:
        tokens = torch.stack(
            [proj(h) for proj, h in zip(self.inputs, self.norm(hidden), strict=True)], dim=-2
        )
        tokens = tokens + self.expert_embedding  # (B, T, K, D)
        flat = tokens.flatten(0, 1)
        mixed, _ = self.attention(flat, flat, flat, need_weights=False)
        mixed = self.out_norm(flat + mixed).view_as(tokens)
        return self.score(mixed).squeeze(-1)
