"""What scoring prompts on llama.cpp (`mean_nll`: PackLLM's prompt perplexity, read at every admission) costs
when each chunk's losses are taken straight from llama.cpp's buffer, against first copying every position's
logits out (as the backend did before): seconds and the peak of the arrays allocated (tracemalloc sees
numpy's), per expert and task, both ways in one run on the same prompts; the losses must agree. Alone:

  python scripts/bench_llamacpp_nll.py --limit 8 | tee -a results/bench/llamacpp-nll.txt
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc

import numpy as np
import torch

from dllg.decode.prompts import encode_user_text
from dllg.experts.device import cpu_description
from dllg.experts.loading import load_expert
from dllg.tasks import get_task

EXPERTS = ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
TASKS = (("humaneval", "test"), ("gsm8k", "eval"), ("dataframebench", "test"))


def nll_after_copying(expert, sequences: list[list[int]]) -> torch.Tensor:
    """Every position's logits copied out first, then each sequence's mean cross-entropy."""
    logits = np.empty((sum(map(len, sequences)), expert.vocab_size), np.float32)

    def copy(offset: int, chunk: np.ndarray, _hidden: np.ndarray) -> None:
        logits[offset : offset + len(chunk)] = chunk

    expert._read(sequences, [0] * len(sequences), copy)
    losses, offset = [], 0
    for sequence in sequences:
        rows = torch.from_numpy(logits[offset : offset + len(sequence) - 1])
        losses.append(torch.nn.functional.cross_entropy(rows, torch.tensor(sequence[1:])))
        offset += len(sequence)
    return torch.stack(losses)


def measured(score, expert, sequences) -> tuple[float, float, torch.Tensor]:
    tracemalloc.start()
    started = time.perf_counter()
    losses = score(expert, sequences)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=8, help="Prompts per task, scored at once.")
    args = parser.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} UTC, {cpu_description()}, {os.cpu_count()} cores, Q4_K_M")
    for name in EXPERTS:
        expert = load_expert(name, backend="llamacpp")
        for task, split in TASKS:
            examples = get_task(task).load(split, limit=args.limit)
            sequences = [encode_user_text(expert.tokenizer, e.messages) for e in examples]
            expert.mean_nll(sequences[:1])  # warm: the first decode sizes llama.cpp's buffers
            copied_s, copied_mb, copied = measured(nll_after_copying, expert, sequences)
            direct_s, direct_mb, direct = measured(lambda e, s: e.mean_nll(s), expert, sequences)
            gap = (copied - direct).abs().max().item()
            print(
                f"expert={name} task={task} prompts={len(sequences)} tokens={sum(map(len, sequences))} "
                f"copied_s={copied_s:.2f} direct_s={direct_s:.2f} speedup={copied_s / direct_s:.2f} "
                f"copied_peak_mb={copied_mb:.0f} direct_peak_mb={direct_mb:.1f} max_loss_gap={gap:.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
