"""The one decode loop: K experts in lock-step over a batch, fused by a rule, each with its own KV cache.

prefill -> (fuse -> choose -> stop? -> drop finished rows -> step) until every sequence is done.
Every user of generation (CLI, eval, server, benchmarks, collection) goes through `generate`.
"""

from dataclasses import dataclass

import torch

from dllg.decode.config import GenerationConfig
from dllg.decode.sampling import choose_tokens, make_generator
from dllg.decode.stopping import StopChecker
from dllg.errors import DllgError
from dllg.experts.expert import Expert, ExpertOutput
from dllg.experts.padding import left_pad
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
    """The running experts' decoding states and the rows still decoding (their original indices)."""

    def __init__(self, experts: list[Expert]) -> None:
        self.experts = experts
        self.states: list = []
        self.rows = torch.arange(0)

    def prefill(self, prompts: list[list[int]]) -> list[ExpertOutput]:
        outputs = []
        for expert in self.experts:
            state, output = expert.prefill(prompts)
            self.states.append(state)
            outputs.append(output)
        self.rows = torch.arange(len(prompts))
        return outputs

    def step(self, tokens: torch.Tensor) -> list[ExpertOutput]:
        """Feed one new token per running sequence to every expert."""
        tokens = tokens.unsqueeze(-1).cpu()
        return [e.step(s, tokens) for e, s in zip(self.experts, self.states, strict=True)]

    def keep(self, keep: torch.Tensor) -> None:
        self.rows = self.rows[keep]
        for expert, state in zip(self.experts, self.states, strict=True):
            expert.keep_rows(state, keep)

    def release(self) -> None:
        # strict=False: a prefill that failed part-way left states for the first experts only
        for expert, state in zip(self.experts, self.states, strict=False):
            expert.release(state)


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
    rule.notice_backends([e.backend for e in experts])
    fusion_device = experts[0].device
    eos_ids = pool.eos_token_ids()
    stopper = StopChecker(pool.tokenizer, eos_ids, config)
    generator = make_generator(config, fusion_device)
    eos_index = torch.tensor(sorted(eos_ids), dtype=torch.long, device=fusion_device)
    running_index = torch.tensor(running, dtype=torch.long)

    if scored_prompts is not None and len(scored_prompts) != len(prompts):
        raise DllgError(f"{len(scored_prompts)} scored prompts for {len(prompts)} prompts: give one each")
    if not prompts or any(len(p) == 0 for p in prompts):
        raise DllgError("every prompt needs at least one token: an empty prompt cannot be continued")
    nll = prompt_nll(experts, scored_prompts or prompts, fusion_device) if rule.needs_prompt_nll else None
    names = [pool.names[i] for i in running]
    tokens_out: list[list[int]] = [[] for _ in prompts]
    weights_out: list[list[torch.Tensor]] = [[] for _ in prompts]
    reasons: list[str] = [""] * len(prompts)
    batch = _Batch(experts)
    try:
        outputs = batch.prefill(prompts)
        ids, mask = left_pad(prompts, pool.pad_token_id())  # what a rule may read about the prompts
        rule.start(PromptContext(input_ids=ids, attention_mask=mask, prompt_nll=nll))

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
    finally:
        batch.release()  # llama.cpp experts free the batch's sequences

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
