"""`unite` (UniTE): the union of each expert's top-k tokens; each expert's probabilities renormalised over
that union, then averaged. Tokens outside the union get no probability."""

import torch

from dllg.errors import DllgError
from dllg.fusion.base import FusionInput, FusionOutput, FusionRule, register_rule


@register_rule
class UniTE(FusionRule):
    name = "unite"

    def __init__(self, top_k: int = 10) -> None:
        if int(top_k) != top_k or top_k < 1:
            raise DllgError(f"rule 'unite' got top_k={top_k}: top_k must be a positive integer")
        self.top_k = int(top_k)

    def fuse(self, inputs: FusionInput) -> FusionOutput:
        logits = inputs.logits
        k = min(self.top_k, logits.shape[-1])
        top = logits.topk(k, dim=-1).indices  # (..., K, k)
        in_union = torch.zeros(logits.shape[:-2] + logits.shape[-1:], dtype=torch.bool, device=logits.device)
        in_union.scatter_(-1, top.flatten(-2), True)
        masked = logits.masked_fill(~in_union.unsqueeze(-2), float("-inf"))
        probs = torch.softmax(masked, dim=-1).mean(-2)  # softmax over the union == renormalised probs
        num_experts = logits.shape[-2]
        weights = torch.full(logits.shape[:-1], 1.0 / num_experts, device=logits.device)
        return FusionOutput(scores=torch.log(probs), weights=weights)
