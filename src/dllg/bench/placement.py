"""`dllg bench ray`: the fused loop with every expert in its own Ray actor against the same experts in this
process, in one run. Per batch size: the fused step in process (torch's threads), the fused step on actors
(one thread each, the experts stepping at once), each actor's own compute per step (measured inside it), and
what is left: the round trip (transport, scheduling) plus the driver's fusion and choice."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from dllg.bench.decode import encode, fused_runner, step_time
from dllg.experts import ExpertPool
from dllg.experts.loading import load_experts
from dllg.experts.ray_placement import RayExpert


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def actor_step_times(
    pool: ExpertPool, rule: str, prompts: list[list[int]], new_tokens: int, repeats: int
) -> tuple[float, list[float]]:
    """Best-of-`repeats` fused step (prefill subtracted, as `step_time`) and each actor's compute per step
    in that same timing."""
    run = fused_runner(pool, rule, prompts)
    experts: list[RayExpert] = list(pool.experts)  # type: ignore[arg-type]

    def busy() -> list[float]:
        return [e.busy_seconds() for e in experts]

    run(2)  # warm-up
    best: tuple[float, list[float]] = (float("inf"), [])
    for _ in range(repeats):
        before, start = busy(), time.perf_counter()
        run(1)
        middle, one = busy(), time.perf_counter() - start
        start = time.perf_counter()
        run(new_tokens)
        after, many = busy(), time.perf_counter() - start
        step = max(many - one, 1e-9) / (new_tokens - 1)
        if step < best[0]:
            per_actor = [
                ((c - b) - (b - a)) / (new_tokens - 1) for a, b, c in zip(before, middle, after, strict=True)
            ]
            best = (step, per_actor)
    return best


def bench_ray(
    names: Sequence[str],
    backend: str = "hf",
    dtype: str = "auto",
    batch_sizes: tuple[int, ...] = (1, 8),
    new_tokens: int = 16,
    rule: str = "uniform",
    repeats: int = 2,
) -> Iterator[dict[str, object]]:
    local = ExpertPool(load_experts(list(names), dtype=dtype, backend=backend))
    remote = ExpertPool([RayExpert(n, "auto", dtype, backend, {"num_cpus": 1}) for n in names])
    for batch in batch_sizes:
        prompts = encode(local, batch)
        in_process = step_time(fused_runner(local, rule, prompts), new_tokens, repeats).step_seconds
        on_actors, per_actor = actor_step_times(remote, rule, prompts, new_tokens, repeats)
        slowest = max(per_actor)
        row: dict[str, object] = {"batch": batch, "rule": rule, "backend": backend, "new_tokens": new_tokens}
        row["in_process_step_ms"] = _ms(in_process)
        row["ray_step_ms"] = _ms(on_actors)
        for index, seconds in enumerate(per_actor):
            row[f"actor{index}_compute_ms"] = _ms(seconds)
        row["overhead_ms"] = _ms(on_actors - slowest)  # round trip + the driver's fusion and choice
        row["overhead_of_in_process_step"] = round((on_actors - slowest) / in_process, 3)
        row["ray_step_over_slowest_actor"] = round(on_actors / slowest, 3)
        row["ray_speed_over_in_process"] = round(in_process / on_actors, 3)
        yield row
    for expert in remote.experts:
        expert.close()  # type: ignore[attr-defined]
