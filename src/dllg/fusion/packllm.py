"""`packllm` (Pack of LLMs, "sim"): weights from each expert's perplexity on the prompt, fixed per response.

w_k = softmax_k(-loss_k / tau), loss_k the mean next-token NLL of the user's input under expert k (the
decode loop scores `scored_prompts`: callers pass the user's text alone, as the method scores its input,
not our chat template); the fused scores are sum_k w_k * z_k over logits, as the published method sums
them (`space="probs"` mixes probability vectors instead).
"""

import torch

from dllg.fusion.base import FusionInput, PromptContext, WeightedRule, broadcast_rows, register_rule
from dllg.fusion.entropy import check_tau


@register_rule
class PackLLM(WeightedRule):
    name = "packllm"
    needs_prompt_nll = True

    def __init__(self, tau: float = 1.0, space: str | None = None) -> None:
        super().__init__(space)
        self.tau = check_tau(tau, self.name)
        self._row_weights: torch.Tensor | None = None

    def start(self, context: PromptContext) -> None:
        assert context.prompt_nll is not None, "the loop computes prompt NLL for rules that need it"
        self._row_weights = torch.softmax(-context.prompt_nll.float() / self.tau, dim=-1)  # (B, K)

    def extend(self, context: PromptContext) -> None:
        assert self._row_weights is not None and context.prompt_nll is not None
        joining = torch.softmax(-context.prompt_nll.float() / self.tau, dim=-1)
        self._row_weights = torch.cat([self._row_weights, joining.to(self._row_weights)])

    def keep_rows(self, rows: torch.Tensor) -> None:
        assert self._row_weights is not None
        self._row_weights = self._row_weights[rows.to(self._row_weights.device)]

    def weights(self, inputs: FusionInput) -> torch.Tensor:
        assert self._row_weights is not None, "start() must run before fuse()"
        return broadcast_rows(self._row_weights, inputs.logits)
