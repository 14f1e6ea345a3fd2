"""Between the experts and the rule within one step: the experts' outputs as the rule's input, the
checks on what the rule gives back, and the prompt losses a perplexity-weighted rule reads."""

import torch

from dllg.errors import DllgError
from dllg.experts.expert import Expert, ExpertOutput
from dllg.fusion.base import FusionInput, FusionOutput


def prompt_nll(experts: list[Expert], sequences: list[list[int]], device: torch.device) -> torch.Tensor:
    """(B, K): the mean next-token NLL of each sequence under each expert (Pack of LLMs' perplexity)."""
    return torch.stack([e.mean_nll(sequences).to(device) for e in experts], -1)


def check_finite(fused: FusionOutput, inputs: FusionInput, names: list[str], rule: str, step: int) -> None:
    """A NaN or +inf anywhere would be chosen silently by argmax: say whose it was, and when."""
    scores, weights = fused.scores, fused.weights
    weights_ok = bool(torch.isfinite(weights).all())
    no_choice = torch.isneginf(scores).all(-1).any()
    if weights_ok and not (torch.isnan(scores).any() or torch.isposinf(scores).any() or no_choice):
        return
    for k, name in enumerate(names):
        logits = inputs.logits[..., k, :]
        if torch.isnan(logits).any() or torch.isposinf(logits).any():
            raise DllgError(
                f"expert {name!r} gave NaN/inf logits at step {step}: its weights or dtype are broken "
                "(try --dtype fp32, or check the model files)"
            )
    what = (
        "non-finite weights (NaN/inf)" if not weights_ok else "non-finite scores (NaN/+inf, or none finite)"
    )
    raise DllgError(
        f"fusion rule {rule!r} produced {what} at step {step} from finite expert logits: "
        "the rule, its options or its gate are broken"
    )


def fusion_input(outputs: list[ExpertOutput], device: torch.device) -> FusionInput:
    """(B, K, V) for one position per row, (B, T, K, V) for several (a speculative step)."""
    if outputs[0].logits.shape[1] == 1:
        logits = torch.stack([o.logits[:, -1].to(device, torch.float32) for o in outputs], dim=1)
        return FusionInput(logits=logits, hidden=[o.hidden[:, -1].to(device) for o in outputs])
    logits = torch.stack([o.logits.to(device, torch.float32) for o in outputs], dim=2)
    return FusionInput(logits=logits, hidden=[o.hidden.to(device) for o in outputs])


def concat_outputs(first: list[ExpertOutput], second: list[ExpertOutput]) -> list[ExpertOutput]:
    return [
        ExpertOutput(torch.cat([a.logits, b.logits]), torch.cat([a.hidden, b.hidden]))
        for a, b in zip(first, second, strict=True)
    ]


def ban_early_eos(
    scores: torch.Tensor, made: list[int], minimum: list[int], eos_index: torch.Tensor
) -> torch.Tensor:
    """(B, T, V) scores with EOS at -inf wherever the position's token would come before its row's
    min_new_tokens."""
    device = scores.device
    index = torch.tensor(made, device=device)[:, None] + torch.arange(scores.shape[1], device=device)
    early = index < torch.tensor(minimum, device=device)[:, None]
    eos = torch.zeros(scores.shape[-1], dtype=torch.bool, device=device)
    eos[eos_index] = True
    return scores.masked_fill(early[..., None] & eos, float("-inf"))
