"""The llama.cpp expert's two KV memory layouts, in one run: one memory shared by every sequence
(kv_split off, the default) against one stream per sequence (kv_split on). Per layout: the prefill of `rows`
prompts of 300 to 1000 tokens, then the step of those rows (one new token each) and the step of one row of
1000 tokens, best of `repeats` runs of 10 steps, the layouts taking turns so that a slow moment of the machine
hits both. Run it alone: a job beside it halves both figures.

    .venv/bin/python scripts/bench_llamacpp_kv_layout.py qwen2.5-coder-0.5b-instruct --rows 8
"""

from __future__ import annotations

import argparse
import time

import torch

from dllg.experts.device import cpu_description
from dllg.experts.loading import load_expert


def prompts(rows: int, seed: int = 0) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = [300 + (700 * i) // max(1, rows - 1) for i in range(rows)]
    return [torch.randint(100, 20000, (n,), generator=generator).tolist() for n in lengths]


def step_ms(expert, batch: list[list[int]], steps: int) -> tuple[float, float]:
    """(prefill seconds, ms per step) for `batch` decoding together."""
    start = time.perf_counter()
    state, _ = expert.prefill(batch)
    prefill = time.perf_counter() - start
    tokens = torch.full((len(batch), 1), 1000)
    expert.step(state, tokens)  # the first step after a prefill is not typical
    start = time.perf_counter()
    for _ in range(steps):
        expert.step(state, tokens)
    per_step = 1000 * (time.perf_counter() - start) / steps
    expert.release(state)
    return prefill, per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    experts = {
        split: load_expert(args.model, backend="llamacpp", llamacpp={"kv_split": split})
        for split in (False, True)
    }
    batch = prompts(args.rows)
    results: dict[bool, dict[str, list[float]]] = {s: {"prefill": [], "rows": [], "one": []} for s in experts}
    for _ in range(args.repeats):
        for split, expert in experts.items():
            prefill, rows_ms = step_ms(expert, batch, args.steps)
            _, one_ms = step_ms(expert, batch[-1:], args.steps)
            results[split]["prefill"].append(prefill)
            results[split]["rows"].append(rows_ms)
            results[split]["one"].append(one_ms)
    print(
        f"{args.model} (llama.cpp, f16 KV), {cpu_description()}, "
        f"{torch.get_num_threads()} threads; prompts {len(batch[0])}-{len(batch[-1])} tokens"
    )
    for split, figures in results.items():
        layout = "split (one stream per sequence)" if split else "shared (kv_unified)"
        print(
            f"{layout:34s} prefill {args.rows} rows {min(figures['prefill']):6.2f} s, "
            f"step {args.rows} rows {min(figures['rows']):6.1f} ms, step 1 row {min(figures['one']):6.1f} ms "
            f"(all runs: {' '.join(f'{x:.0f}' for x in figures['rows'])} / "
            f"{' '.join(f'{x:.0f}' for x in figures['one'])} ms)"
        )
    shared, split = results[False], results[True]
    print(
        f"split / shared: step {args.rows} rows {min(split['rows']) / min(shared['rows']):.2f}x, "
        f"step 1 row {min(split['one']) / min(shared['one']):.2f}x, "
        f"prefill {min(split['prefill']) / min(shared['prefill']):.2f}x (below 1: split is faster)"
    )


if __name__ == "__main__":
    main()
