"""Code-R1 12K (2K LeetCode with assert tests + 10K TACO with stdin/stdout cases), in verl's row format:
{prompt: [chat messages] or text, reward_model: {ground_truth: JSON of {"functional": code} or
{"inputs": [...], "outputs": [...]}}}."""

from __future__ import annotations

import json
from typing import ClassVar

from dllg.errors import DllgError
from dllg.tasks.base import Example, register
from dllg.tasks.hub import HubSplits, HubTask
from dllg.verify.base import Reference


def _reference(ground_truth: str | dict) -> Reference:
    truth = json.loads(ground_truth) if isinstance(ground_truth, str) else ground_truth
    if "functional" in truth:
        return Reference(tests=truth["functional"])
    if "inputs" in truth and "outputs" in truth:
        cases = {"inputs": truth["inputs"], "outputs": truth["outputs"]}
        return Reference(tests=json.dumps(cases), test_kind="stdio")
    raise DllgError(
        f"a Code-R1 row has ground truth with keys {sorted(truth)}: expected functional or inputs/outputs"
    )


class CodeR1(HubTask):
    name = "code_r1"
    description = "Code-R1 12K RL training problems (LeetCode asserts, TACO stdin/stdout)"
    verifier = "code"
    splits = ("train",)
    training_splits = ("train",)
    default_split = "train"
    source = "hub ganler/code-r1-12k; or JSONL in the same (verl) format"
    hub_splits: ClassVar[HubSplits] = {"train": ("ganler/code-r1-12k", None, "train")}

    def example(self, row: dict, split: str, index: int) -> Example:
        prompt = row["prompt"]
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
        extra = row.get("extra_info") or {}
        return Example(
            id=f"code_r1/{extra.get('index', index)}",
            messages=[{"role": m["role"], "content": m["content"]} for m in messages],
            reference=_reference(row["reward_model"]["ground_truth"]),
            verifier="code",
            metadata={"data_source": row.get("data_source", "")},
        )


register(CodeR1())
