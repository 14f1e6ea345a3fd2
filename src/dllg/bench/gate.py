"""What a gate costs per decoding step, against what the experts cost: each variant's `step` (one new
position per row, its own cache advancing) timed on random states of the experts' widths, beside the sum of
the experts' own step times on their backend, at the same batch size, in one run. And what a training step
costs, per variant and precision (`dllg bench gate-train`)."""

import time
from collections.abc import Iterator, Sequence

import torch

from dllg.bench.decode import encode, own_generate_runner, step_time
from dllg.config import Precision
from dllg.experts import ExpertPool
from dllg.gate import GateConfig, build_gate
from dllg.pipeline.train import forward_precision, masked_mse


def gate_step_seconds(gate, hidden_sizes: list[int], batch: int, steps: int, repeats: int) -> float:
    """Mean seconds of one `gate.step` over `steps` positions (best of `repeats`), after a warm-up."""
    generator = torch.Generator().manual_seed(0)
    states = [torch.randn(batch, 1, d, generator=generator) for d in hidden_sizes]
    best = float("inf")
    with torch.inference_mode():
        for attempt in range(repeats + 1):
            state = gate.new_state(batch)
            start = time.perf_counter()
            for _ in range(steps):
                gate.step(states, state)
            if attempt:  # the first pass warms up
                best = min(best, (time.perf_counter() - start) / steps)
    return best


def bench_gate_costs(
    pool: ExpertPool,
    variants: Sequence[tuple[str, dict]],
    batch_sizes: Sequence[int] = (1, 8),
    steps: int = 32,
    repeats: int = 2,
) -> Iterator[dict[str, object]]:
    """One dict per batch size and gate variant (with its options): ms per step of the gate and of the
    experts (sequential limit), and the gate's cost as a fraction of the experts' step."""
    hidden_sizes = [e.hidden_size for e in pool.experts]
    smallest = min(pool.experts, key=lambda e: e.parameter_count())
    for batch in batch_sizes:
        prompts = encode(pool, batch)
        experts_step = sum(
            step_time(own_generate_runner(e, prompts), 16, repeats).step_seconds for e in pool.experts
        )
        for variant, options in variants:
            config = GateConfig(
                variant=variant,
                expert_names=pool.names,
                hidden_sizes=hidden_sizes,
                aux_model=options.get("aux_model", smallest.source),
                **{k: v for k, v in options.items() if k != "aux_model"},
            )
            gate = build_gate(config).eval()
            seconds = gate_step_seconds(gate, hidden_sizes, batch, steps, repeats)
            described = ",".join(f"{k}:{v}" for k, v in options.items()) or "-"
            yield {
                "batch": batch,
                "variant": variant,
                "options": described,
                "gate_params_m": round(sum(p.numel() for p in gate.parameters()) / 1e6, 2),
                "gate_ms": round(seconds * 1e3, 2),
                "experts_ms": round(experts_step * 1e3, 2),
                "gate_share_of_experts": round(seconds / experts_step, 3),
            }
            del gate


def train_step_seconds(
    gate, hidden_sizes: list[int], batch: int, tokens: int, steps: int, precision: Precision
) -> float:
    """Mean seconds of one training step (forward, eq. 5 loss, backward, AdamW) on random states of
    (batch, tokens) per expert, as `dllg train` runs it, after one warm-up step."""
    generator = torch.Generator().manual_seed(0)
    states = [torch.randn(batch, tokens, d, generator=generator) for d in hidden_sizes]
    mask = torch.ones(batch, tokens)
    labels = torch.randint(0, 2, (batch, len(hidden_sizes)), generator=generator).float()
    params = [p for p in gate.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    gate.train()
    total = 0.0
    for attempt in range(steps + 1):
        start = time.perf_counter()
        with forward_precision(gate, precision):
            weights = gate(states, mask.long())
        loss = masked_mse(weights.float(), mask, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if attempt:  # the first step warms up
            total += time.perf_counter() - start
    return total / steps


def bench_gate_training(
    expert_names: list[str],
    hidden_sizes: list[int],
    aux_model: str,
    variants: Sequence[tuple[str, dict]],
    precisions: Sequence[Precision] = ("fp32", "bf16"),
    batch: int = 32,
    tokens: int = 200,
    steps: int = 3,
) -> Iterator[dict[str, object]]:
    """One dict per gate variant (with its options) and precision: seconds per training step."""
    for variant, options in variants:
        for precision in precisions:
            config = GateConfig(
                variant=variant,
                expert_names=expert_names,
                hidden_sizes=hidden_sizes,
                aux_model=aux_model,
                **options,
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                gate = build_gate(config)
            seconds = train_step_seconds(gate, hidden_sizes, batch, tokens, steps, precision)
            yield {
                "variant": variant,
                "options": ",".join(f"{k}:{v}" for k, v in options.items()) or "-",
                "precision": precision,
                "batch": batch,
                "tokens": tokens,
                "train_step_s": round(seconds, 3),
            }
            del gate
