"""What the decode loop keeps per request and per row, and what it reports: a request's settings group, a
row of the batch (the requests riding on it and their tokens), a step's update and a finished generation."""

from dataclasses import dataclass, field

import torch

from dllg.decode.config import GenerationConfig
from dllg.decode.stopping import StopChecker


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    weights: torch.Tensor  # (num_tokens, K): each expert's weight at each generated token (0: not run)
    finish_reason: str  # "eos", "stop", "length" or "cancelled"
    expert_names: list[str]
    drafted: int = 0  # drafted tokens fed to the experts (speculative decoding)
    accepted: int = 0  # of those, the ones the fused choice agreed with


@dataclass
class Update:
    """What one step did for one request: the tokens it added (with their weights), and the result when
    the request finished (or the error that stopped it before it started)."""

    request: int
    tokens: list[int]
    weights: torch.Tensor  # (len(tokens), K)
    finished: Generation | None = None
    error: BaseException | None = None


@dataclass(eq=False)
class RequestGroup:
    """Requests submitted together share their settings, stop checker and random generator (a batch of
    prompts sampled with one seed draws from one stream, as one batched call would)."""

    config: GenerationConfig
    stopper: StopChecker
    generator: torch.Generator | None


@dataclass(eq=False)
class Row:
    """One row of the batch: the requests riding on it (rule index -> request id; one unless rules decode
    together) and what they share, the tokens; each request's weights are its own rule's."""

    requests: dict[int, int]
    prompt: list[int]
    scored_prompt: list[int]
    group: RequestGroup
    budget: int  # draft length for its next step, adapted to how much of its last draft was kept
    tokens: list[int] = field(default_factory=list)
    weights: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    reason: str = ""
    drafted: int = 0
    accepted: int = 0
    fed_drafts: list[int] = field(default_factory=list)  # the drafts fed after its last token

    def fork(self, rules: list[int]) -> "Row":
        """A copy of this row carrying `rules`' requests (which leave this one)."""
        requests = {r: self.requests.pop(r) for r in rules}
        weights = {r: list(self.weights.pop(r)) for r in rules}
        return Row(
            requests, self.prompt, self.scored_prompt, self.group, self.budget, list(self.tokens), weights
        )
