"""A wrapper that records what a fusion rule saw and gave at every step, for analyses and checks that need
the fused scores beside a generation (not a rule of its own: it is not registered)."""

import torch

from dllg.fusion.base import FusionInput, FusionOutput, FusionRule, PromptContext


class RecordingRule(FusionRule):
    """Runs `rule` unchanged and keeps, on the CPU, each `fuse` call's expert logits and output."""

    def __init__(self, rule: FusionRule) -> None:
        self.rule = rule
        self.name = rule.name  # type: ignore[misc]  # the wrapped rule's name, in messages
        self.needs_prompt_nll = rule.needs_prompt_nll  # type: ignore[misc]
        self.reads_hidden = rule.reads_hidden  # type: ignore[misc]
        self.can_roll_back = rule.can_roll_back  # type: ignore[misc]
        self.calls: list[tuple[torch.Tensor, FusionOutput]] = []

    @property
    def last_scores(self) -> torch.Tensor:
        """The fused scores of the last call."""
        return self.calls[-1][1].scores

    def bind(self, expert_names: list[str]) -> list[int]:
        return self.rule.bind(expert_names)

    def notice_backends(self, backends: list[str]) -> None:
        self.rule.notice_backends(backends)

    def start(self, context: PromptContext) -> None:
        self.rule.start(context)

    def extend(self, context: PromptContext) -> None:
        self.rule.extend(context)

    def fuse(self, inputs: FusionInput) -> FusionOutput:
        fused = self.rule.fuse(inputs)
        self.calls.append((inputs.logits.cpu(), FusionOutput(fused.scores.cpu(), fused.weights.cpu())))
        return fused

    def keep_rows(self, rows: torch.Tensor) -> None:
        self.rule.keep_rows(rows)

    def rollback(self, counts: torch.Tensor) -> None:
        self.rule.rollback(counts)
