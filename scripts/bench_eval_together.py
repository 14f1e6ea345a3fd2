"""Time `dllg eval` on the real pair with the fused methods decoded one after another (apart) and together
(`--together`), on the same examples, in one run: how much does sharing rows save on llama.cpp, and does
any answer change?

Each half writes to its own copy of the committed records with the chosen methods' records for those
examples removed (the experts' and the gate's stay: dllg-static reads the gate's), so both decode the same
examples, greedily, 768 new tokens, 8 rows at once. Prints wall time per half, answers equal between the
halves and to the committed records where there are some, and the expert steps each half fed (the rows
of every step; counted by a hook in the eval process). Run it alone (two cores):

  nice python scripts/bench_eval_together.py --task humaneval:test --limit 8 \\
      | tee -a results/bench/eval-together.txt

Add --out-together FILE to keep the together half's records (e.g. to append them to the table's file).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from dllg.experts.device import cpu_description

SMALL, LARGE = "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"
RECORDS = Path("results/qwen-coder-pair/eval/records.jsonl")
GATE = "src/dllg/shipped/qwen-coder-duo"
METHODS = f"uniform,entropy,packllm,majority,unite,dllg-static:{GATE}"
# Run inside the eval's process: counts the rows fed to the experts at every step (after the prefill).
COUNTING = """
import sys
from dllg.decode.lockstep import LockstepExperts
from dllg.cli.main import main
fed = [0]
step = LockstepExperts.step
def counting(self, tokens):
    fed[0] += tokens.shape[0] * tokens.shape[1]
    return step(self, tokens)
LockstepExperts.step = counting
try:
    main()
finally:
    print(f"ROWS_FED {fed[0]}", file=sys.stderr)
"""


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_eval(out: Path, methods: list[str], args: argparse.Namespace, together: bool) -> tuple[float, int]:
    command = [
        args.python, "-c", COUNTING, "eval", "--experts", SMALL, LARGE, "--backend", "llamacpp",
        "--methods", f"expert:{SMALL}", f"expert:{LARGE}", *methods,
        "--tasks", args.task, "--limit", str(args.limit), "--max-new-tokens", "768", "--batch-size", "8",
        "--speculate", "none", "--prompt-cache", args.prompt_cache, "--out", str(out),
        *(["--together"] if together else []),
    ]  # fmt: skip
    print("$ dllg " + " ".join(command[3:]), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    fed = [int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("ROWS_FED")]
    return time.perf_counter() - started, fed[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=METHODS, help="Comma-separated fused methods.")
    parser.add_argument("--task", default="humaneval:test")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--records", type=Path, default=RECORDS)
    parser.add_argument("--python", default=".venv/bin/python")
    parser.add_argument("--prompt-cache", default=str(Path.home() / ".cache/dllg/prompt-states"))
    parser.add_argument("--out-together", type=Path, help="Keep the together half's records here.")
    args = parser.parse_args()
    methods = args.methods.split(",")
    task = args.task.partition(":")[0]

    committed = read(args.records)
    order = [r["example_id"] for r in committed if r["method"] == f"expert:{LARGE}" and r["task"] == task]
    examples = set(order[: args.limit])
    kept = [r for r in committed if not (r["method"] in methods and r["example_id"] in examples)]
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {cpu_description()}  llama.cpp Q4_K_M, greedy, 768 tokens")
    print(f"# {len(examples)} examples of {task} ({order[0]}...), methods: {', '.join(methods)}")
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for together in (False, True):
            out = Path(scratch) / f"{'together' if together else 'apart'}.jsonl"
            out.write_text("".join(json.dumps(r) + "\n" for r in kept))
            seconds, fed = run_eval(out, methods, args, together)
            new = {(r["method"], r["example_id"]): r for r in read(out)[len(kept) :]}
            results[together] = new
            tokens = sum(r["tokens"] for r in new.values())
            print(
                f"{'together' if together else 'apart':>8}: {seconds:7.1f} s, {len(new)} answers, "
                f"{tokens} tokens, {fed} expert rows fed, {tokens / seconds:.2f} answer tokens/s",
                flush=True,
            )
            if together and args.out_together:
                shutil.copy(out, args.out_together)
    apart, together = results[False], results[True]
    same = sum(apart[k]["response"] == together[k]["response"] for k in apart)
    print(f"answers equal apart vs together: {same}/{len(apart)}")
    for k in sorted(apart):
        if apart[k]["response"] != together[k]["response"]:
            print(
                f"  differs: {k[0]} {k[1]} (correct apart {apart[k]['correct']}, "
                f"together {together[k]['correct']})"
            )
    before = {(r["method"], r["example_id"]): r["response"] for r in committed if r["method"] in methods}
    for name, new in (("apart", apart), ("together", together)):
        known = [k for k in new if k in before]
        equal = sum(new[k]["response"] == before[k] for k in known)
        print(f"{name} equal to the committed records: {equal}/{len(known)}")
    correct = {
        name: sum(r["correct"] for r in new.values())
        for name, new in (("apart", apart), ("together", together))
    }
    print(f"correct: apart {correct['apart']}, together {correct['together']}")


if __name__ == "__main__":
    main()
