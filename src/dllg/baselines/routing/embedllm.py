"""EmbedLLM-style router: matrix factorisation of the (prompt, expert) correctness table.

P(expert k answers prompt x) = sigmoid(<W e(x), v_k> + b_k), with e(x) the frozen prompt embedding, W a
learned projection and v_k a learned expert embedding; trained with BCE on the observed pairs.
"""

import torch

from dllg.baselines.routing.router import RouterHead, register_router


@register_router("embedllm")
class EmbedLLMHead(RouterHead):
    def __init__(self, input_dim: int, num_experts: int, dim: int = 32) -> None:
        super().__init__(input_dim, num_experts, dim=dim)
        # Embeddings from different encoders differ in scale: normalise before the projection.
        self.norm = torch.nn.LayerNorm(input_dim)
        self.project = torch.nn.Linear(input_dim, dim)
        self.experts = torch.nn.Parameter(torch.randn(num_experts, dim) / dim**0.5)
        self.bias = torch.nn.Parameter(torch.zeros(num_experts))

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.project(self.norm(embeddings)) @ self.experts.T + self.bias

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            self.scores(embeddings), labels, reduction="none"
        )
        return (bce * mask).sum() / mask.sum().clamp(min=1)
