"""Time `dllg eval` on the real pair plainly and with the `reference` drafter, on examples one method has
already been evaluated on, in one run: does drafting from the other methods' recorded answers pay on
llama.cpp, and does it change answers?

Each run writes to its own copy of the records with the method's records for those examples removed (the
other methods' answers stay: they are what `reference` drafts from), so both decode the same examples in the
same batches. Prints wall time, tokens/s, drafts kept, and how many answers equal each other's and the
committed records'. Run it alone (two cores):

  nice python scripts/bench_eval_drafting.py --method uniform --task humaneval:test --limit 16 \\
      --draft-tokens 8 | tee -a results/bench/eval-reference-drafting.txt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from dllg.experts.device import cpu_description

SMALL, LARGE = "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"
RECORDS = Path("results/qwen-coder-pair/eval/records.jsonl")


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_eval(out: Path, args: argparse.Namespace, drafter: str) -> float:
    command = [
        args.dllg, "eval", "--experts", SMALL, LARGE, "--backend", "llamacpp",
        "--methods", f"expert:{SMALL}", f"expert:{LARGE}", args.method,
        "--tasks", args.task, "--limit", str(args.limit), "--max-new-tokens", "768", "--batch-size", "8",
        "--speculate", drafter, "--draft-tokens", str(args.draft_tokens), "--out", str(out),
    ]  # fmt: skip
    print("$ " + " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="uniform")
    parser.add_argument("--task", default="humaneval:test")
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--draft-tokens", type=int, default=8)
    parser.add_argument("--drafters", default="reference,none", help="In this order, each in turn.")
    parser.add_argument("--records", type=Path, default=RECORDS)
    parser.add_argument("--dllg", default=".venv/bin/dllg")
    args = parser.parse_args()
    task = args.task.partition(":")[0]

    committed = read(args.records)
    mine = [r for r in committed if r["method"] == args.method and r["task"] == task]
    first = {r["example_id"]: r for r in mine}
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')} UTC, {cpu_description()}, {os.cpu_count()} cores; "
        f"{args.method} on the first {args.limit} of {args.task}; committed records of it: {len(mine)}",
        flush=True,
    )
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for drafter in args.drafters.split(","):
            out = Path(scratch) / drafter / "records.jsonl"
            out.parent.mkdir()
            # the method's own answers go: it decodes them again; every other method's stay
            kept = [r for r in committed if not (r["method"] == args.method and r["task"] == task)]
            out.write_text("".join(json.dumps(r) + "\n" for r in kept))
            seconds = run_eval(out, args, drafter)
            new = [r for r in read(out) if r["method"] == args.method and r["task"] == task]
            results[drafter] = new
            tokens = sum(r["tokens"] for r in new)
            drafted = sum(r.get("drafted", 0) for r in new)
            accepted = sum(r.get("accepted", 0) for r in new)
            compared = [r for r in new if r["example_id"] in first]
            same = sum(r["response"] == first[r["example_id"]]["response"] for r in compared)
            print(
                f"drafter={drafter} draft_tokens={args.draft_tokens if drafter != 'none' else 0} "
                f"examples={len(new)} tokens={tokens} seconds={seconds:.1f} tok_s={tokens / seconds:.2f} "
                f"drafted={drafted} accepted={accepted} "
                f"accepted_per_token={accepted / max(tokens, 1):.3f} "
                f"correct={sum(r['correct'] for r in new)} same_as_committed={same}/{len(compared)}",
                flush=True,
            )
    names = list(results)
    if len(names) == 2:
        a, b = ({r["example_id"]: r["response"] for r in results[n]} for n in names)
        print(f"same answers {names[0]} vs {names[1]}: {sum(a[k] == b.get(k) for k in a)}/{len(a)}")


if __name__ == "__main__":
    main()
