"""Evaluation records written by hand: a few responses with known per-token weights, their diagnostics
computed as `dllg eval` computes them."""

import torch

from dllg.pipeline.evaluate import weight_stats

EXPERTS = ["a", "b"]

# example id -> (correct, weights) of the dynamic method on task "t"
DYNAMIC = {
    # leaders a a b b a a: switches at tokens 2 (middle third) and 4 (last third)
    "t/0": (1, [[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.7, 0.3]]),
    # leaders tie b tie a: one switch, at token 3 (last third); the ties do not break the run
    "t/1": (0, [[0.5, 0.5], [0.2, 0.8], [0.5, 0.5], [0.9, 0.1]]),
    # one token: counted, no switches
    "t/2": (0, [[0.4, 0.6]]),
    # leaders b a b: switches at tokens 1 (middle) and 2 (last)
    "t/3": (1, [[0.1, 0.9], [0.6, 0.4], [0.1, 0.9]]),
}
STATIC_CORRECT = {"t/0": 0, "t/1": 0, "t/2": 1, "t/3": 1, "t/9": 1}  # t/9 has no dynamic partner


def make_record(method: str, example_id: str, correct: int, weights=None, task: str = "t") -> dict:
    record = {
        "method": method,
        "task": task,
        "split": "test",
        "example_id": example_id,
        "experts": EXPERTS,
        "response": "x",
        "verdict": "pass" if correct else "fail",
        "correct": correct,
        "tokens": len(weights or []),
    }
    if weights is not None:
        record |= weight_stats(torch.tensor(weights))
    return record
