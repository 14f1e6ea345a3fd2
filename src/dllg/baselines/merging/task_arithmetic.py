"""Task arithmetic: base + lambda * sum_k (expert_k - base), every task vector at weight 1."""

from typing import Any

from dllg.baselines.merging.base import register_merge
from dllg.errors import DllgError


@register_merge("task_arithmetic", options=("lambda_",), needs_base=True)
def plan_task_arithmetic(folders: list[str], base: str | None, options: dict[str, Any]) -> dict[str, Any]:
    if base is None:
        raise DllgError("task_arithmetic needs the base model the experts were tuned from: give --base")
    return {
        "merge_method": "task_arithmetic",
        "base_model": base,
        "models": [{"model": f, "parameters": {"weight": 1.0}} for f in folders],
        # normalize would divide by the sum of weights: the method is a plain sum of task vectors.
        "parameters": {"lambda": float(options.get("lambda_", 1.0)), "normalize": False},
    }
