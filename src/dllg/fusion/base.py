"""The fusion-rule interface and its registry.

A rule turns the K experts' next-token logits (and hidden states) into one score vector to choose a token
from, plus the weight it gave each expert. Shapes carry a leading `...` (batch, and optionally several
positions per sequence), so a rule written for one position works for many.
"""

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

from dllg.errors import DllgError
from dllg.registry import register_unique


@dataclass
class PromptContext:
    """What a rule may look at once, after the prompts were read."""

    input_ids: torch.Tensor  # (B, L), left-padded
    attention_mask: torch.Tensor  # (B, L)
    prompt_nll: torch.Tensor | None  # (B, K) mean NLL of each prompt under each running expert, if asked for


@dataclass
class FusionInput:
    logits: torch.Tensor  # (..., K, V) float32, one slice per running expert
    hidden: list[torch.Tensor]  # K tensors (..., d_k): each running expert's last-layer hidden state


@dataclass
class FusionOutput:
    scores: torch.Tensor  # (..., V) logits or log-probabilities to choose the next token from
    weights: torch.Tensor  # (..., K) the weight each running expert got


class FusionRule(ABC):
    """One way of fusing experts. Subclasses set `name` and are registered with @register_rule."""

    name: ClassVar[str]
    needs_prompt_nll: ClassVar[bool] = False
    reads_hidden: ClassVar[bool] = False  # whether `fuse` reads the experts' hidden states

    def bind(self, expert_names: list[str]) -> list[int]:
        """Check the rule's options against the pool; return the indices of the experts that must run."""
        return list(range(len(expert_names)))

    def notice_backends(self, backends: list[str]) -> None:  # noqa: B027 - optional hook
        """The backend running each bound expert ("hf", "llamacpp"), told once after `bind`."""

    def start(self, context: PromptContext) -> None:  # noqa: B027 - optional hook
        """Called once per batch after the prompts were read by every running expert."""

    def extend(self, context: PromptContext) -> None:  # noqa: B027 - optional hook
        """Rows joined the running batch (continuous batching): their prompts, appended after the current
        rows. Rules that keep per-row state grow it here as `start` builds it."""

    @abstractmethod
    def fuse(self, inputs: FusionInput) -> FusionOutput:
        """Fuse one (or several) positions of every sequence in the batch."""

    def keep_rows(self, rows: torch.Tensor) -> None:  # noqa: B027 - optional hook
        """The loop dropped finished sequences: keep per-row state only for these rows."""

    # Whether `rollback` can undo the last positions of each row (speculative decoding needs it).
    can_roll_back: ClassVar[bool] = True

    def rollback(self, counts: torch.Tensor) -> None:  # noqa: B027 - optional hook
        """Forget the last counts[i] positions the rule saw for row i (rejected drafts)."""


RULES: dict[str, type[FusionRule]] = {}


def register_rule(cls: type[FusionRule]) -> type[FusionRule]:
    return register_unique(RULES, cls.name, cls, "fusion rule")


def rule_options(name: str) -> list[str]:
    """The keyword options a rule accepts (its constructor's parameters)."""
    params = inspect.signature(RULES[name].__init__).parameters
    return [p for p in params if p != "self"]


def make_rule(name: str, **options: object) -> FusionRule:
    """Build a registered rule by name; options the rule does not take are an error, not silently dropped."""
    if name not in RULES:
        raise DllgError(f"unknown fusion rule {name!r}: choose one of {', '.join(sorted(RULES))}")
    accepted = rule_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) or "no options"
        raise DllgError(f"fusion rule {name!r} does not take {', '.join(unknown)}: it takes {takes}")
    return RULES[name](**options)


COMBINE_SPACES = ("logits", "probs")


class WeightedRule(FusionRule):
    """Rules that give each expert a weight and fuse sum_k w_k * z_k (the paper's eq. 1).

    `space="logits"` sums raw logits; `space="probs"` sums probability vectors (as GaC does)
    and returns their log as scores.
    """

    default_space: ClassVar[str] = "logits"

    def __init__(self, space: str | None = None) -> None:
        space = space or self.default_space
        if space not in COMBINE_SPACES:
            raise DllgError(f"unknown space {space!r} for rule {self.name!r}: use one of {COMBINE_SPACES}")
        self.space = space

    @abstractmethod
    def weights(self, inputs: FusionInput) -> torch.Tensor:
        """(..., K) non-negative weights."""

    def fuse(self, inputs: FusionInput) -> FusionOutput:
        weights = self.weights(inputs).to(inputs.logits.dtype)
        if self.space == "logits":
            scores = (weights.unsqueeze(-1) * inputs.logits).sum(-2)
        else:
            probs = torch.softmax(inputs.logits, dim=-1)
            scores = torch.log((weights.unsqueeze(-1) * probs).sum(-2))
        return FusionOutput(scores=scores, weights=weights)


def broadcast_rows(row_weights: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """(B, K) weights fixed per row, as (..., K) for `logits` (B, [positions,] K, V)."""
    weights = row_weights.to(logits.device)
    extra = logits.dim() - 3  # positions between the batch and the experts (drafted tokens)
    return weights.view(weights.shape[0], *([1] * extra), weights.shape[1]).expand(logits.shape[:-1])


def parse_weights(text: str, example: str) -> list[float]:
    """Weights written "0.3,0.7" or "0.3 0.7"; `example` shows how to write them where they were given."""
    try:
        return [float(w) for w in text.replace(",", " ").split()]
    except ValueError as exc:
        raise DllgError(f"{text!r} is not a list of numbers: write e.g. {example}") from exc


def check_weights(values: list[float], count: int, rule: str) -> torch.Tensor:
    """Fixed weights must be one finite, non-negative value per expert, not all zero."""
    if len(values) != count:
        raise DllgError(f"rule {rule!r} got {len(values)} weights for {count} experts: give one per expert")
    tensor = torch.tensor(values, dtype=torch.float32)
    if not torch.isfinite(tensor).all():
        raise DllgError(f"rule {rule!r} got a non-finite weight {values}: weights must be finite numbers")
    if (tensor < 0).any():
        raise DllgError(f"rule {rule!r} got a negative weight {values}: weights must be >= 0")
    if tensor.sum() <= 0:
        raise DllgError(f"rule {rule!r} got all-zero weights {values}: at least one must be > 0")
    return tensor
