"""`static`: fixed weights per expert, the same at every token; zero-weight experts are not run.
`RowStatic`: the same with each row's own weights."""

import torch

from dllg.errors import DllgError
from dllg.fusion.base import (
    FusionInput,
    PromptContext,
    WeightedRule,
    broadcast_rows,
    check_weights,
    register_rule,
)


@register_rule
class Static(WeightedRule):
    name = "static"

    def __init__(self, weights: list[float] | tuple[float, ...], space: str | None = None) -> None:
        super().__init__(space)
        self.values = [float(w) for w in weights]
        self._running = torch.empty(0)

    def bind(self, expert_names: list[str]) -> list[int]:
        tensor = check_weights(self.values, len(expert_names), self.name)
        running = [i for i, w in enumerate(self.values) if w > 0]
        self._running = tensor[running]
        return running

    def weights(self, inputs: FusionInput) -> torch.Tensor:
        return self._running.to(inputs.logits.device).expand(inputs.logits.shape[:-1])


class RowStatic(WeightedRule):
    """Fixed weights per row: each prompt its own, the same at every token (the dynamic-vs-static ablation
    regenerates each response at its own mean gate weights, all in one batch). Rows take the weights in the
    order their prompts were submitted, as the loop admits them; an expert every row weighs 0 is not run.
    Not registered: the weights come with the prompts, not from a command line."""

    name = "static_rows"

    def __init__(self, rows: list[list[float]], space: str | None = None) -> None:
        super().__init__(space)
        self.values = [[float(w) for w in row] for row in rows]
        self._queue = torch.empty(0)  # (rows not admitted yet, running experts)
        self._current = torch.empty(0)  # (running rows, running experts)

    def bind(self, expert_names: list[str]) -> list[int]:
        table = torch.stack([check_weights(row, len(expert_names), self.name) for row in self.values])
        running = [i for i in range(len(expert_names)) if (table[:, i] > 0).any()]
        self._queue = table[:, running]
        return running

    def _take(self, count: int) -> torch.Tensor:
        if count > len(self._queue):
            raise DllgError(
                f"rule {self.name!r} has weights for {len(self.values)} prompts: more were submitted"
            )
        taken, self._queue = self._queue[:count], self._queue[count:]
        return taken

    def start(self, context: PromptContext) -> None:
        self._current = self._take(len(context.input_ids))

    def extend(self, context: PromptContext) -> None:
        self._current = torch.cat([self._current, self._take(len(context.input_ids))])

    def keep_rows(self, rows: torch.Tensor) -> None:
        self._current = self._current[rows.cpu()]

    def weights(self, inputs: FusionInput) -> torch.Tensor:
        return broadcast_rows(self._current, inputs.logits)
