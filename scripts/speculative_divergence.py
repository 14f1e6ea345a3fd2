"""Where speculative decoding's output differs from the plain loop's on real prompts, is it at a near-tie?

Greedy answers plain and with a drafter, one prompt at a time; for every answer that differs, the plain
loop's fused scores at the first differing position (teacher-forced: prompt + the shared prefix) give the
margin between its top two tokens. Writes one JSON record per prompt and prints a summary.

  python scripts/speculative_divergence.py --experts qwen2.5-coder-0.5b-instruct \\
      qwen2.5-coder-1.5b-instruct --backend llamacpp --tasks humaneval gsm8k --limit 24 -n 96 \\
      --speculate expert --out results/speculative/divergence-real-llamacpp.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dllg.decode import GenerationConfig, generate
from dllg.decode.prompts import encode_prompt
from dllg.experts import ExpertPool
from dllg.experts.loading import load_experts
from dllg.fusion import make_rule
from dllg.fusion.recording import RecordingRule
from dllg.tasks import get_task


def top2_margin(pool: ExpertPool, rule_name: str, sequence: list[int]) -> tuple[float, int, int]:
    """The plain loop's fused scores after `sequence`: the gap between its best two tokens, and those."""
    recorder = RecordingRule(make_rule(rule_name))
    generate(pool, recorder, [sequence], GenerationConfig(max_new_tokens=1))
    top = recorder.last_scores[0].float().topk(2)
    return float(top.values[0] - top.values[1]), int(top.indices[0]), int(top.indices[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", nargs="+", required=True)
    parser.add_argument("--backend", default="llamacpp")
    parser.add_argument("--rule", default="uniform")
    parser.add_argument("--tasks", nargs="+", default=["humaneval", "gsm8k"])
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("-n", "--max-new-tokens", type=int, default=96)
    parser.add_argument("--speculate", default="expert")
    parser.add_argument("--draft-tokens", type=int, default=4)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    pool = ExpertPool(load_experts(args.experts, backend=args.backend))
    config = GenerationConfig(max_new_tokens=args.max_new_tokens)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {json.loads(line)["example_id"] for line in out.open()} if out.exists() else set()
    for task in args.tasks:
        for example in get_task(task).load(limit=args.limit):
            if example.id in done:
                continue  # resumable: a rerun adds only what is missing
            prompt = encode_prompt(pool.tokenizer, example.messages)
            plain = generate(pool, make_rule(args.rule), [prompt], config)[0].token_ids
            speculative = {"drafter": args.speculate, "draft_tokens": args.draft_tokens}
            fast = generate(pool, make_rule(args.rule), [prompt], config, **speculative)[0]
            record = {"example_id": example.id, "task": task, "same": fast.token_ids == plain}
            record |= {"tokens": len(plain), "drafted": fast.drafted, "accepted": fast.accepted}
            if not record["same"]:
                at = next(
                    (i for i, (a, b) in enumerate(zip(plain, fast.token_ids, strict=False)) if a != b),
                    min(len(plain), len(fast.token_ids)),
                )
                margin, first, second = top2_margin(pool, args.rule, prompt + plain[:at])
                record |= {"diverge_at": at, "top2_margin": round(margin, 5)}
                record |= {"plain_token": plain[at] if at < len(plain) else None}
                record |= {"speculative_token": fast.token_ids[at] if at < len(fast.token_ids) else None}
                record |= {"replayed_top2": [first, second]}
            with out.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
    records = [json.loads(line) for line in out.open()]
    differing = [r for r in records if not r["same"]]
    margins = sorted(r["top2_margin"] for r in differing)
    print(
        f"prompts={len(records)} same={len(records) - len(differing)} differing={len(differing)} "
        f"margins_at_divergence={margins}"
    )


if __name__ == "__main__":
    main()
