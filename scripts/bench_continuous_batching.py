"""What continuous batching saves in `dllg eval` / `dllg collect`: the same prompts answered in fixed batches
(each batch decoded until its longest answer is done, the batch emptying as rows finish: what both did
before) and with `--batch-size` rows kept decoding (a finished row's place goes to the next prompt), in one
run, on one expert, greedy; prints wall time, tokens per second and whether every answer is the same.

    .venv/bin/python scripts/bench_continuous_batching.py --expert qwen2.5-coder-0.5b-instruct \\
        --backend llamacpp --task humaneval --limit 24 --batch-size 8 -n 768
"""

import argparse
import time

from dllg.decode import GenerationConfig, generate, generate_stream
from dllg.decode.prompts import encode_prompt
from dllg.experts import ExpertPool
from dllg.experts.device import cpu_description
from dllg.experts.loading import load_expert
from dllg.fusion import make_rule
from dllg.tasks.base import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--expert", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--backend", default="llamacpp")
    parser.add_argument("--task", default="humaneval")
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("-n", "--max-new-tokens", type=int, default=768)
    args = parser.parse_args()
    pool = ExpertPool([load_expert(args.expert, backend=args.backend)])
    task = get_task(args.task)
    examples = task.load(task.default_split, limit=args.limit)
    prompts = [encode_prompt(pool.tokenizer, e.messages) for e in examples]
    config = GenerationConfig(max_new_tokens=args.max_new_tokens)
    rule = make_rule("single")
    cpu = cpu_description()
    print(f"# {cpu}, {args.expert} on {args.backend} ({pool.experts[0].dtype})")
    print(f"# {len(prompts)} {args.task} prompts, batch {args.batch_size}, greedy, -n {args.max_new_tokens}")

    started = time.perf_counter()
    fixed = []
    for start in range(0, len(prompts), args.batch_size):
        fixed += generate(pool, rule, prompts[start : start + args.batch_size], config)
    fixed_s = time.perf_counter() - started

    started = time.perf_counter()
    finished = dict(generate_stream(pool, rule, prompts, config, max_rows=args.batch_size))
    continuous = [finished[i] for i in range(len(prompts))]
    continuous_s = time.perf_counter() - started

    tokens = sum(len(g.token_ids) for g in continuous)
    same = sum(a.token_ids == b.token_ids for a, b in zip(fixed, continuous, strict=True))
    lengths = sorted(len(g.token_ids) for g in fixed)
    print(f"answer_tokens_min={lengths[0]} median={lengths[len(lengths) // 2]} max={lengths[-1]}")
    print(f"mode=fixed wall_s={fixed_s:.1f} tok_s={sum(len(g.token_ids) for g in fixed) / fixed_s:.1f}")
    print(f"mode=continuous wall_s={continuous_s:.1f} tok_s={tokens / continuous_s:.1f}")
    print(f"speedup={fixed_s / continuous_s:.2f} same_answers={same}/{len(prompts)}")


if __name__ == "__main__":
    main()
