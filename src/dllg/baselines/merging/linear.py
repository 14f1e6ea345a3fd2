"""Linear merge (model soup): the weighted average of the experts' tensors, weights normalised to sum 1."""

from typing import Any

from dllg.baselines.merging.base import register_merge
from dllg.errors import DllgError


def check_weights(weights: list[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise DllgError(f"got {len(weights)} weights for {count} experts: give one weight per expert")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise DllgError(f"weights {weights} must be >= 0 with a positive sum (they are normalised)")
    return weights


@register_merge("linear", options=("weights",))
def plan_linear(folders: list[str], base: str | None, options: dict[str, Any]) -> dict[str, Any]:
    weights = check_weights(options.get("weights"), len(folders))
    return {
        "merge_method": "linear",
        "models": [{"model": f, "parameters": {"weight": w}} for f, w in zip(folders, weights, strict=True)],
        "parameters": {"normalize": True},
    }
