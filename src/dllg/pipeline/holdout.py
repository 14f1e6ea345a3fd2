"""The validation split `dllg train` carves from the training prompts, by example id.

One function decides it, so training (`train.val_fraction`) and `dllg eval --holdout` (fused decoding on the
same held-out prompts, where gate variants are chosen) always agree on which prompts are held out.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from dllg.errors import DllgError

if TYPE_CHECKING:
    from dllg.pipeline.evaluate import EvalTask


def is_validation(example_id: str, fraction: float) -> bool:
    """A stable split by id, so collect/train reruns and resumes agree on it."""
    digest = int(hashlib.sha256(example_id.encode()).hexdigest()[:8], 16)
    return digest % 10_000 < fraction * 10_000


def validation_tasks(tasks: Iterable["EvalTask"], fraction: float) -> list["EvalTask"]:
    """Each task with only the examples training holds out at `fraction` (its `train.val_fraction`)."""
    if not 0 < fraction < 1:
        raise DllgError(
            f"--holdout {fraction}: give the run config's train.val_fraction, a number between 0 and 1"
        )
    kept = [replace(t, examples=[e for e in t.examples if is_validation(e.id, fraction)]) for t in tasks]
    if not any(t.examples for t in kept):
        raise DllgError(f"--holdout {fraction} keeps no example of these tasks: evaluate a training split")
    return kept
