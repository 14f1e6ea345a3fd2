"""Weight merges of same-shape experts, one file per method, all registered in `MERGES`."""

from dllg.baselines.merging import linear, slerp, task_arithmetic  # noqa: F401 (they register themselves)
from dllg.baselines.merging.base import MERGES, MergeMethod, get_merge, register_merge
from dllg.baselines.merging.merge import merge_experts

__all__ = ["MERGES", "MergeMethod", "get_merge", "merge_experts", "register_merge"]
