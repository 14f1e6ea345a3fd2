"""`majority`: every expert votes for its most likely token; the token with most votes wins.

Scores are log(votes + eps * mean probability): the vote count decides, the experts' mean probability only
breaks ties. An expert's weight is 1 when its vote went to the winning token, else 0.
"""

import torch

from dllg.fusion.base import FusionInput, FusionOutput, FusionRule, register_rule

TIE_BREAK = 1e-3


@register_rule
class Majority(FusionRule):
    name = "majority"

    def __init__(self) -> None:
        pass

    def fuse(self, inputs: FusionInput) -> FusionOutput:
        logits = inputs.logits
        votes_for = logits.argmax(-1)  # (..., K)
        votes = torch.zeros(logits.shape[:-2] + logits.shape[-1:], device=logits.device)
        votes.scatter_add_(-1, votes_for, torch.ones_like(votes_for, dtype=votes.dtype))
        mean_probs = torch.softmax(logits, dim=-1).mean(-2)
        scores = torch.log(votes + TIE_BREAK * mean_probs)
        winner = scores.argmax(-1, keepdim=True)
        weights = (votes_for == winner).to(logits.dtype)
        return FusionOutput(scores=scores, weights=weights)
