"""What a gate costs per decoding step, against what the experts cost: each variant's `step` (one new
position per row, its own cache advancing) timed on random states of the experts' widths, beside the sum of
the experts' own step times on their backend, at the same batch size, in one run."""

import time
from collections.abc import Iterator, Sequence

import torch

from dllg.bench.decode import encode, own_generate_runner, step_time
from dllg.experts import ExpertPool
from dllg.gate import GateConfig, build_gate


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
