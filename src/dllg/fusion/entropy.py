"""`entropy`: the more certain an expert is at this token (lower entropy), the more weight it gets.

w_k = softmax_k(-H_k / tau), with H_k the entropy of expert k's next-token distribution.
"""

import torch

from dllg.errors import DllgError
from dllg.fusion.base import FusionInput, WeightedRule, register_rule


def entropy(logits: torch.Tensor) -> torch.Tensor:
    log_probs = torch.log_softmax(logits, dim=-1)
    return -(log_probs.exp() * log_probs).sum(-1)


def check_tau(tau: float, rule: str) -> float:
    if not tau > 0:  # also rejects NaN
        raise DllgError(f"rule {rule!r} got tau={tau}: tau must be a positive number")
    return float(tau)


@register_rule
class Entropy(WeightedRule):
    name = "entropy"
    default_space = "probs"

    def __init__(self, tau: float = 1.0, space: str | None = None) -> None:
        super().__init__(space)
        self.tau = check_tau(tau, self.name)

    def weights(self, inputs: FusionInput) -> torch.Tensor:
        return torch.softmax(-entropy(inputs.logits) / self.tau, dim=-1)
