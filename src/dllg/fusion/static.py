"""`static`: fixed weights per expert, the same at every token; zero-weight experts are not run."""

import torch

from dllg.fusion.base import FusionInput, WeightedRule, check_weights, register_rule


@register_rule
class Static(WeightedRule):
    name = "static"

    def __init__(self, weights: list[float] | tuple[float, ...], space: str | None = None) -> None:
        super().__init__(space)
        self.values = [float(w) for w in weights]
        self._running = torch.empty(0)

    def bind(self, expert_names: list[str]) -> list[int]:
        tensor = check_weights(self.values, len(expert_names), self.name)
        running = [i for i, w in enumerate(self.values) if w > 0]
        self._running = tensor[running]
        return running

    def weights(self, inputs: FusionInput) -> torch.Tensor:
        return self._running.to(inputs.logits.device).expand(inputs.logits.shape[:-1])
