"""RouterDC-style router: dual contrastive learning of prompt and expert embeddings.

Score s_k(x) = cos(f(e(x)), v_k) / temperature, f a small MLP over the frozen prompt embedding. For every
expert that answered x correctly, the loss pulls x towards it and away from the experts that answered wrong:
-log(exp(s_pos) / (exp(s_pos) + sum_neg exp(s_neg))). Prompts every expert got right (or wrong) teach no
preference and are left out of the loss. RouterDC's second (prompt-prompt cluster) loss is not used.
"""

import torch

from dllg.baselines.routing.router import RouterHead, register_router


@register_router("routerdc")
class RouterDCHead(RouterHead):
    def __init__(self, input_dim: int, num_experts: int, dim: int = 32, temperature: float = 0.2) -> None:
        super().__init__(input_dim, num_experts, dim=dim, temperature=temperature)
        self.temperature = temperature
        self.encode = torch.nn.Sequential(
            torch.nn.LayerNorm(input_dim),
            torch.nn.Linear(input_dim, dim),
            torch.nn.GELU(),
            torch.nn.Linear(dim, dim),
        )
        self.experts = torch.nn.Parameter(torch.randn(num_experts, dim))

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        prompts = torch.nn.functional.normalize(self.encode(embeddings), dim=-1)
        experts = torch.nn.functional.normalize(self.experts, dim=-1)
        return prompts @ experts.T / self.temperature

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positive = (labels > 0.5) & mask.bool()
        negative = (labels < 0.5) & mask.bool()
        rows = positive.any(dim=1) & negative.any(dim=1)
        if not rows.any():
            return self.experts.sum() * 0.0  # nothing to contrast: a zero loss that keeps the graph
        scores = self.scores(embeddings[rows])  # (R, K)
        positive, negative = positive[rows], negative[rows]
        # log sum over the wrong experts of exp(s), per prompt (every kept row has at least one).
        neg_lse = torch.logsumexp(scores.masked_fill(~negative, float("-inf")), dim=1, keepdim=True)
        # -log(e^pos / (e^pos + sum e^neg)) = logaddexp(pos, neg_lse) - pos, for each (prompt, right expert).
        per_pair = torch.logaddexp(scores, neg_lse) - scores
        return per_pair[positive].mean()
