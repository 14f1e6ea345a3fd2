"""SLERP of two experts, per tensor: t=0 gives the first, t=1 the second; near-parallel tensors
(|cos| > 0.9995) fall back to linear interpolation (mergekit's slerp method).
"""

from typing import Any

from dllg.baselines.merging.base import register_merge
from dllg.errors import DllgError


@register_merge("slerp", options=("t",))
def plan_slerp(folders: list[str], base: str | None, options: dict[str, Any]) -> dict[str, Any]:
    if len(folders) != 2:
        raise DllgError(f"slerp merges exactly two experts, got {len(folders)}: name two with --experts")
    t = float(options.get("t", 0.5))
    if not 0.0 <= t <= 1.0:
        raise DllgError(f"slerp t={t} is outside [0, 1]: t=0 is the first expert, t=1 the second")
    return {
        "merge_method": "slerp",
        "base_model": folders[0],
        "models": [{"model": folders[0]}, {"model": folders[1]}],
        "parameters": {"t": t},
    }
