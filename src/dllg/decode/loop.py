"""The one decode loop: K experts in lock-step over a batch, fused by a rule, each with its own KV cache.

prefill -> (fuse -> choose -> stop? -> drop finished rows -> step) until every sequence is done.
Every user of generation (CLI, eval, server, benchmarks, collection) goes through `generate`.
"""

from dataclasses import dataclass

import torch

from dllg.decode.config import GenerationConfig
from dllg.decode.padding import left_pad, right_pad
from dllg.decode.sampling import choose_tokens, make_generator
from dllg.decode.stopping import StopChecker
from dllg.errors import DllgError
from dllg.experts.expert import Expert, ExpertOutput
from dllg.experts.pool import ExpertPool
from dllg.fusion.base import FusionInput, FusionOutput, FusionRule, PromptContext


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    weights: torch.Tensor  # (num_tokens, K): each expert's weight at each generated token (0: not run)
    finish_reason: str  # "eos", "stop" or "length"
    expert_names: list[str]


class _Batch:
    """The running experts' caches and the rows still decoding (their original indices)."""

    def __init__(self, experts: list[Expert], ids: torch.Tensor, mask: torch.Tensor) -> None:
        self.experts = experts
        self.caches = [e.new_cache() for e in experts]
        self.rows = torch.arange(ids.shape[0])
        self.mask = mask
        self.next_position = mask.sum(-1)  # positions count only real tokens: left padding is invisible

    def prefill(self, ids: torch.Tensor) -> list[ExpertOutput]:
        positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        return [
            e.forward(ids, self.mask, positions, c) for e, c in zip(self.experts, self.caches, strict=True)
        ]

    def step(self, tokens: torch.Tensor) -> list[ExpertOutput]:
        """Feed one new token per running sequence to every expert."""
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=-1)
        positions = self.next_position.unsqueeze(-1)
        self.next_position = self.next_position + 1
        tokens = tokens.unsqueeze(-1).cpu()
        return [
            e.forward(tokens, self.mask, positions, c) for e, c in zip(self.experts, self.caches, strict=True)
        ]

    def keep(self, keep: torch.Tensor) -> None:
        self.rows = self.rows[keep]
        self.mask = self.mask[keep]
        self.next_position = self.next_position[keep]
        for expert, cache in zip(self.experts, self.caches, strict=True):
            expert.select_rows(cache, keep.to(expert.device))


def prompt_nll(
    experts: list[Expert], sequences: list[list[int]], pad_id: int, device: torch.device
) -> torch.Tensor:
    """(B, K): the mean next-token NLL of each sequence under each expert (Pack of LLMs' perplexity)."""
    ids, mask = right_pad(sequences, pad_id)
    return torch.stack([e.mean_nll(ids, mask).to(device) for e in experts], -1)


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


def _fusion_input(outputs: list[ExpertOutput], device: torch.device) -> FusionInput:
    logits = torch.stack([o.logits[:, -1].to(device, torch.float32) for o in outputs], dim=1)
    hidden = [o.hidden[:, -1].to(device) for o in outputs]
    return FusionInput(logits=logits, hidden=hidden)


def generate(
    pool: ExpertPool,
    rule: FusionRule,
    prompts: list[list[int]],
    config: GenerationConfig | None = None,
    scored_prompts: list[list[int]] | None = None,
) -> list[Generation]:
    """Generate one continuation per prompt (token ids) with the experts fused by `rule`.

    `scored_prompts`: what a rule that weighs experts by perplexity scores, one per prompt (Pack of LLMs
    scores the user's input alone, without the chat template's system prompt); default: the prompts."""
    config = config or GenerationConfig()
    running = rule.bind(pool.names)
    experts = [pool[i] for i in running]
    fusion_device = experts[0].device
    eos_ids = pool.eos_token_ids()
    stopper = StopChecker(pool.tokenizer, eos_ids, config)
    generator = make_generator(config, fusion_device)
    eos_index = torch.tensor(sorted(eos_ids), dtype=torch.long, device=fusion_device)
    running_index = torch.tensor(running, dtype=torch.long)

    if scored_prompts is not None and len(scored_prompts) != len(prompts):
        raise DllgError(f"{len(scored_prompts)} scored prompts for {len(prompts)} prompts: give one each")
    ids, mask = left_pad(prompts, pool.pad_token_id())
    nll = None
    if rule.needs_prompt_nll:
        nll = prompt_nll(experts, scored_prompts or prompts, pool.pad_token_id(), fusion_device)
    batch = _Batch(experts, ids, mask)
    outputs = batch.prefill(ids)
    rule.start(PromptContext(input_ids=ids, attention_mask=mask, prompt_nll=nll))
    names = [pool.names[i] for i in running]

    tokens_out: list[list[int]] = [[] for _ in prompts]
    weights_out: list[list[torch.Tensor]] = [[] for _ in prompts]
    reasons: list[str] = [""] * len(prompts)
    for step in range(config.max_new_tokens):
        inputs = _fusion_input(outputs, fusion_device)
        fused = rule.fuse(inputs)
        check_finite(fused, inputs, names, rule.name, step)
        scores = fused.scores
        if step < config.min_new_tokens and len(eos_index):
            scores = scores.index_fill(-1, eos_index, float("-inf"))
        tokens = choose_tokens(scores, config, generator)
        full_weights = torch.zeros(len(tokens), len(pool))
        full_weights[:, running_index] = fused.weights.float().cpu()

        keep: list[int] = []
        for i, (row, token) in enumerate(zip(batch.rows.tolist(), tokens.tolist(), strict=True)):
            tokens_out[row].append(token)
            weights_out[row].append(full_weights[i])
            reason = stopper.reason(tokens_out[row])
            if reason:
                reasons[row] = reason
            else:
                keep.append(i)
        if not keep:
            break
        if len(keep) < len(batch.rows):
            keep_index = torch.tensor(keep, dtype=torch.long)
            batch.keep(keep_index)
            rule.keep_rows(keep_index)
            tokens = tokens[keep_index.to(tokens.device)]
        outputs = batch.step(tokens)

    return [
        Generation(
            text=stopper.text(tokens_out[row], reasons[row]),
            token_ids=tokens_out[row],
            weights=torch.stack(weights_out[row]),
            finish_reason=reasons[row],
            expert_names=pool.names,
        )
        for row in range(len(prompts))
    ]
