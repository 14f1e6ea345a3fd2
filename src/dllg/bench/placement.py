"""`dllg bench ray`: the fused loop with every expert in its own Ray actor against the same experts in this
process, in one run. Per batch size: the fused step in process (torch's threads), the fused step on actors
(one thread each, the experts stepping at once), each actor's own compute per step (measured inside it), and
what is left: the round trip (transport, scheduling) plus the driver's fusion and choice. The actors' steps
go through compiled graphs (the default placement) and, for comparison, as plain actor calls (`plain_*`);
one set of actors at a time, so that a small machine holds them."""

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
    prompts = {batch: encode(local, batch) for batch in batch_sizes}
    in_process = {
        batch: step_time(fused_runner(local, rule, prompts[batch]), new_tokens, repeats).step_seconds
        for batch in batch_sizes
    }
    on_actors: dict[str, dict[int, tuple[float, list[float]]]] = {}
    for placement, compiled in (("", True), ("plain_", False)):
        remote = ExpertPool(
            [RayExpert(n, "auto", dtype, backend, {"num_cpus": 1}, compiled_steps=compiled) for n in names]
        )
        on_actors[placement] = {
            batch: actor_step_times(remote, rule, prompts[batch], new_tokens, repeats)
            for batch in batch_sizes
        }
        for expert in remote.experts:
            expert.close()  # type: ignore[attr-defined]
    for batch in batch_sizes:
        row: dict[str, object] = {"batch": batch, "rule": rule, "backend": backend, "new_tokens": new_tokens}
        row["in_process_step_ms"] = _ms(in_process[batch])
        for placement, timings in on_actors.items():
            step, per_actor = timings[batch]
            slowest = max(per_actor)
            row[f"{placement}ray_step_ms"] = _ms(step)
            for index, seconds in enumerate(per_actor):
                row[f"{placement}actor{index}_compute_ms"] = _ms(seconds)
            row[f"{placement}overhead_ms"] = _ms(
                step - slowest
            )  # round trip + the driver's fusion and choice
            row[f"{placement}overhead_of_in_process_step"] = round((step - slowest) / in_process[batch], 3)
            row[f"{placement}ray_step_over_slowest_actor"] = round(step / slowest, 3)
            row[f"{placement}ray_speed_over_in_process"] = round(in_process[batch] / step, 3)
        yield row
