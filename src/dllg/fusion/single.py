"""`single`: one expert alone; the others are not run at all."""

import torch

from dllg.errors import DllgError
from dllg.fusion.base import FusionInput, WeightedRule, register_rule


def find_expert(expert: str | int, expert_names: list[str]) -> int:
    """An expert by name, or by 0-based position in the pool."""
    if isinstance(expert, int) or (isinstance(expert, str) and expert.isdigit()):
        index = int(expert)
        if not 0 <= index < len(expert_names):
            raise DllgError(f"expert index {index} is out of range: the pool has {len(expert_names)} experts")
        return index
    if expert in expert_names:
        return expert_names.index(expert)
    raise DllgError(f"no expert named {expert!r}: the pool has {', '.join(expert_names)}")


@register_rule
class Single(WeightedRule):
    name = "single"

    def __init__(self, expert: str | int = 0) -> None:
        super().__init__("logits")
        self.expert = expert

    def bind(self, expert_names: list[str]) -> list[int]:
        return [find_expert(self.expert, expert_names)]

    def weights(self, inputs: FusionInput) -> torch.Tensor:
        return torch.ones(inputs.logits.shape[:-1], device=inputs.logits.device)
