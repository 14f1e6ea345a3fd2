"""What the llama.cpp prompt cache saves on the real pair: the evaluation prompts' prefill computed (and kept)
and then restored from the cache, batch by batch as `dllg eval` prefills them (8 at once), each expert in
turn; prints seconds, tokens/s and the cache's bytes per prompt token. Run it alone (two cores):

  python scripts/bench_prompt_cache.py --limit 16 | tee -a results/bench/llamacpp-prompt-cache.txt
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from dllg.decode.prompts import encode_prompt
from dllg.experts.device import cpu_description
from dllg.experts.loading import load_expert
from dllg.tasks import get_task

EXPERTS = ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
TASKS = (("humaneval", "test"), ("gsm8k", "eval"), ("dataframebench", "test"))


def prefill_all(expert, prompts: list[list[int]], batch: int) -> tuple[float, list[torch.Tensor]]:
    started, logits = time.perf_counter(), []
    for start in range(0, len(prompts), batch):
        state, out = expert.prefill(prompts[start : start + batch])
        logits.append(out.logits)
        expert.release(state)
    return time.perf_counter() - started, logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=16, help="Prompts per task.")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    when = time.strftime("%Y-%m-%d %H:%M")
    print(f"# {when} UTC, {cpu_description()}, {os.cpu_count()} cores, Q4_K_M, f16 KV")
    for name in EXPERTS:
        with tempfile.TemporaryDirectory() as folder:
            expert = load_expert(name, backend="llamacpp", llamacpp={"prompt_cache": folder})
            for task, split in TASKS:
                examples = get_task(task).load(split, limit=args.limit)
                prompts = [encode_prompt(expert.tokenizer, e.messages) for e in examples]
                tokens = sum(map(len, prompts))
                computed, first = prefill_all(expert, prompts, args.batch)
                restored, again = prefill_all(expert, prompts, args.batch)
                same = all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
                size = sum(f.stat().st_size for f in Path(folder).glob("*.npz"))
                print(
                    f"expert={name} task={task} prompts={len(prompts)} prompt_tokens={tokens} "
                    f"computed_s={computed:.2f} computed_tok_s={tokens / computed:.1f} "
                    f"restored_s={restored:.3f} speedup={computed / restored:.1f} same_logits={same} "
                    f"cache_kb_per_token={size / 1024 / tokens:.1f}",
                    flush=True,
                )
                for f in Path(folder).glob("*.npz"):
                    f.unlink()


if __name__ == "__main__":
    main()
