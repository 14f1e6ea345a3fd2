"""`dllg`: the learned gate as a fusion rule. At each step it reads every expert's hidden state, advances
its own KV cache, and weighs the experts' logits: z = sum_k w_k z_k (the paper's eq. 1).

`power` sharpens the gate's weights at each token: w_k^p, rescaled to the weights' old sum. Greedy fusion
sees only the ratio of two experts' weights, which the power raises to p: p > 1 lets the leading expert
decide more of each token (inf: all of it), p < 1 moves towards equal weights, 1 is the paper's rule. A
gate trained towards 0/1 targets with MSE hedges where it is unsure (weights of 0.2-0.3 for an expert that is
rarely right), and mixing in that quarter is what a sharper gate leaves out; choose p on validation."""

import math
import warnings
from pathlib import Path

import torch

from dllg.errors import DllgError
from dllg.fusion.base import FusionInput, PromptContext, WeightedRule, register_rule


@register_rule
class LearnedGate(WeightedRule):
    name = "dllg"
    reads_hidden = True

    def __init__(self, gate: "str | Path | object", power: float = 1.0) -> None:
        from dllg.gate import Gate, load_gate

        super().__init__("logits")
        self.power = check_power(power)
        self.gate: Gate = gate if isinstance(gate, Gate) else load_gate(gate)
        self.gate.eval()
        self._state = None
        self._warned = False

    def bind(self, expert_names: list[str]) -> list[int]:
        trained_for = self.gate.config.expert_names
        if list(expert_names) != list(trained_for):
            raise DllgError(
                f"the gate was trained for experts {trained_for} but the pool has {list(expert_names)}: "
                "give the same experts in the same order"
            )
        return list(range(len(expert_names)))

    def notice_backends(self, backends: list[str]) -> None:
        trained_on = self.gate.config.feature_backends
        if trained_on and list(trained_on) != list(backends) and not self._warned:
            self._warned = True
            warnings.warn(
                f"the gate was trained on {trained_on} states and now reads {backends} states: the backends' "
                "hidden states differ (2-3 % for Q4_K_M GGUFs against bf16 weights), so its weights will "
                "too; validate it on this backend, or train it on this backend's states (features.backend)",
                stacklevel=2,
            )

    def start(self, context: PromptContext) -> None:
        self._state = self.gate.new_state(context.input_ids.shape[0])

    def extend(self, context: PromptContext) -> None:
        joining = self.gate.new_state(context.input_ids.shape[0])
        self._state = self.gate.join_rows(self._state, joining)

    def keep_rows(self, rows: torch.Tensor) -> None:
        self._state = self.gate.select_rows(self._state, rows)

    def rollback(self, counts: torch.Tensor) -> None:
        self.gate.rollback(self._state, counts)

    @torch.inference_mode()
    def weights(self, inputs: FusionInput) -> torch.Tensor:
        sizes = [h.shape[-1] for h in inputs.hidden]
        if sizes != self.gate.config.hidden_sizes:
            raise DllgError(
                f"the gate expects hidden sizes {self.gate.config.hidden_sizes}, experts give {sizes}"
            )
        device = inputs.logits.device
        self.gate.to(device)
        one_position = inputs.hidden[0].dim() == 2  # (B, d): one token per sequence this step
        hidden = [h.unsqueeze(1) if one_position else h for h in inputs.hidden]
        weights = self.gate.step([h.to(device, torch.float32) for h in hidden], self._state)
        weights = sharpen(weights, self.power)
        return weights.squeeze(1) if one_position else weights


def check_power(power: float) -> float:
    power = float(power)
    if not power > 0:  # NaN fails too
        raise DllgError(
            f"power={power}: it must be > 0 (1 keeps the gate's weights, above 1 sharpens them, inf hands "
            "each token to the leading expert)"
        )
    return power


def sharpen(weights: torch.Tensor, power: float) -> torch.Tensor:
    """(..., K) non-negative weights, each row raised to `power` and rescaled to its old sum."""
    if power == 1:
        return weights
    total = weights.sum(-1, keepdim=True)
    if math.isinf(power):  # the limit: the leading expert gets the whole sum (tied leaders share it)
        share = (weights == weights.amax(-1, keepdim=True)).to(weights.dtype)
        share = share / share.sum(-1, keepdim=True)
    else:  # w^p / sum w^p, in logs: no underflow for large p
        share = torch.softmax(power * weights.clamp_min(torch.finfo(weights.dtype).tiny).log(), dim=-1)
    return share * total
