"""`uniform`: every expert weighs 1/K (GaC averages the experts' probability vectors, hence space=probs)."""

import torch

from dllg.fusion.base import FusionInput, WeightedRule, register_rule


@register_rule
class Uniform(WeightedRule):
    name = "uniform"
    default_space = "probs"

    def __init__(self, space: str | None = None) -> None:
        super().__init__(space)

    def weights(self, inputs: FusionInput) -> torch.Tensor:
        shape = inputs.logits.shape[:-1]
        return torch.full(shape, 1.0 / shape[-1], device=inputs.logits.device)
