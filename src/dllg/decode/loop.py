"""The one decode loop: K experts in lock-step over a batch, fused by a rule, each with its own KV cache.

prefill -> (fuse -> choose -> stop? -> drop finished rows -> step) until every sequence is done.
Every user of generation (CLI, eval, server, benchmarks, collection) goes through `generate`.

With a drafter (speculative decoding, greedy only), a step feeds each row its chosen token followed by a
few drafted ones; every expert and the rule score all of those positions at once, a row keeps the draft
only as far as the fused greedy choice agrees with it, and every cache rolls back per row to what was
kept. The output is the plain loop's (exactly, where the arithmetic is deterministic).
"""

import itertools
from dataclasses import dataclass

import torch

from dllg.decode.config import GenerationConfig
from dllg.decode.drafting import Drafter, make_drafter
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
    drafted: int = 0  # drafted tokens fed to the experts (speculative decoding)
    accepted: int = 0  # of those, the ones the fused choice agreed with


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
        """Feed (B, T) new tokens (one chosen, T - 1 drafted) per running sequence to every expert."""
        tokens = tokens.cpu()
        return [e.step(s, tokens) for e, s in zip(self.experts, self.states, strict=True)]

    def rollback(self, counts: torch.Tensor) -> None:
        for expert, state in zip(self.experts, self.states, strict=True):
            expert.rollback(state, counts)

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
    """(B, K, V) for one position per row, (B, T, K, V) for several (a speculative step)."""
    if outputs[0].logits.shape[1] == 1:
        logits = torch.stack([o.logits[:, -1].to(device, torch.float32) for o in outputs], dim=1)
        return FusionInput(logits=logits, hidden=[o.hidden[:, -1].to(device) for o in outputs])
    logits = torch.stack([o.logits.to(device, torch.float32) for o in outputs], dim=2)
    return FusionInput(logits=logits, hidden=[o.hidden.to(device) for o in outputs])


def _ban_early_eos(
    scores: torch.Tensor, made: list[int], eos_index: torch.Tensor, config: GenerationConfig
) -> torch.Tensor:
    """(B, T, V) scores with EOS at -inf wherever the position's token would come before min_new_tokens."""
    device = scores.device
    index = torch.tensor(made, device=device)[:, None] + torch.arange(scores.shape[1], device=device)
    eos = torch.zeros(scores.shape[-1], dtype=torch.bool, device=device)
    eos[eos_index] = True
    return scores.masked_fill((index < config.min_new_tokens)[..., None] & eos, float("-inf"))


def generate(
    pool: ExpertPool,
    rule: FusionRule,
    prompts: list[list[int]],
    config: GenerationConfig | None = None,
    scored_prompts: list[list[int]] | None = None,
    drafter: str | Drafter | None = None,
    draft_tokens: int | None = None,
) -> list[Generation]:
    """Generate one continuation per prompt (token ids) with the experts fused by `rule`.

    `scored_prompts`: what a rule that weighs experts by perplexity scores, one per prompt (Pack of LLMs
    scores the user's input alone, without the chat template's system prompt); default: the prompts.
    `drafter` ("ngram", ... or a Drafter; "none": the plain loop) drafts up to `draft_tokens` tokens per
    step; both default to the config's `draft` and `draft_tokens`."""
    config = config or GenerationConfig()
    drafter = config.draft if drafter is None else drafter
    draft_tokens = config.draft_tokens if draft_tokens is None else draft_tokens
    drafting = make_drafter(drafter) if isinstance(drafter, str) else drafter
    speculative = drafting.name != "none" and draft_tokens > 0
    if speculative and not config.greedy:
        raise DllgError(
            "speculative decoding is exact for greedy decoding only: use temperature 0 or no drafter"
        )
    if speculative and not rule.can_roll_back:
        raise DllgError(
            f"fusion rule {rule.name!r} cannot roll its state back per row yet: decode without a drafter"
        )
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
    drafted, accepted = [0] * len(prompts), [0] * len(prompts)
    fed_drafts: list[list[int]] = [[] for _ in prompts]  # per running row: the drafts fed after its token
    # Draft length per sequence, adapted to how much of its last draft was kept: a multi-token step costs
    # more than one step (much more on compute-bound CPUs), so drafts that keep failing shrink.
    budget = [draft_tokens] * len(prompts)
    batch = _Batch(experts)
    try:
        outputs = batch.prefill(prompts)
        ids, mask = left_pad(prompts, pool.pad_token_id())  # what a rule may read about the prompts
        rule.start(PromptContext(input_ids=ids, attention_mask=mask, prompt_nll=nll))

        for step in itertools.count():
            inputs = _fusion_input(outputs, fusion_device)
            fused = rule.fuse(inputs)
            check_finite(fused, inputs, names, rule.name, step)
            scores, weights = fused.scores, fused.weights
            if scores.dim() == 2:  # one position per row: the same shapes as several
                scores, weights = scores.unsqueeze(1), weights.unsqueeze(1)
            rows, positions = scores.shape[:2]
            if config.min_new_tokens and len(eos_index):
                made = [len(tokens_out[r]) for r in batch.rows.tolist()]
                scores = _ban_early_eos(scores, made, eos_index, config)
            flat = choose_tokens(scores.reshape(rows * positions, -1), config, generator)
            tokens = flat.view(rows, positions)
            full_weights = torch.zeros(rows, positions, len(pool))
            full_weights[..., running_index] = weights.float().cpu()

            keep: list[int] = []
            unused = torch.zeros(rows, dtype=torch.long)  # fed positions past what each row kept
            for i, row in enumerate(batch.rows.tolist()):
                for j in range(positions):
                    token = int(tokens[i, j])
                    tokens_out[row].append(token)
                    weights_out[row].append(full_weights[i, j])
                    reasons[row] = stopper.reason(tokens_out[row]) or ""
                    drafts = fed_drafts[i]
                    # the next position is valid only if the draft fed there is the token just chosen
                    if reasons[row] or j >= len(drafts) or drafts[j] != token:
                        unused[i] = positions - 1 - j
                        accepted[row] += j
                        if drafts:  # all kept: one more next time; else as many as were kept, plus one
                            budget[row] = min(draft_tokens, j + 1 + (j == len(drafts)))
                        break
                if not reasons[row]:
                    keep.append(i)
            if unused.any():
                batch.rollback(unused)
                rule.rollback(unused)
            if not keep:
                break
            keep_index = torch.tensor(keep, dtype=torch.long)
            if len(keep) < len(batch.rows):
                batch.keep(keep_index)
                rule.keep_rows(keep_index)
            last = [tokens_out[row][-1] for row in batch.rows.tolist()]
            fed_drafts = [
                drafting.draft(prompts[row] + tokens_out[row], budget[row]) if speculative else []
                for row in batch.rows.tolist()
            ]
            width = max(len(d) for d in fed_drafts)
            for row, drafts in zip(batch.rows.tolist(), fed_drafts, strict=True):
                drafted[row] += len(drafts)
            # rows with fewer drafts are padded by repeating their token: a pad is kept only if it is right
            feed = [[t, *d, *([t] * (width - len(d)))] for t, d in zip(last, fed_drafts, strict=True)]
            fed_drafts = [[*d, *([t] * (width - len(d)))] for t, d in zip(last, fed_drafts, strict=True)]
            outputs = batch.step(torch.tensor(feed, dtype=torch.long))
    finally:
        batch.release()  # llama.cpp experts free the batch's sequences

    return [
        Generation(
            text=stopper.text(tokens_out[row], reasons[row]),
            token_ids=tokens_out[row],
            weights=torch.stack(weights_out[row]),
            finish_reason=reasons[row],
            expert_names=pool.names,
            drafted=drafted[row],
            accepted=accepted[row],
        )
        for row in range(len(prompts))
    ]
