"""Choose the real pair's gate on validation (issue 15), never on the test sets.

The validation prompts are the training prompts `dllg train` held out (`train.val_fraction`). The gated
methods' fused answers on them come from `scripts/qwen_pair_eval.sh validation dllg:GATE...`; each expert's
answer to them is already in the label table (the same greedy decoding, backend and token limit), so it is
read from there instead of being generated again. Prints and writes the table (per task, macro average,
pooled accuracy, oracle), each method's paired counts against the stronger expert, and the choice: the
highest pooled accuracy (every held-out prompt counts once; the macro average gives the ~10 GSM-Symbolic
prompts as much say as the ~70 DataFrameBench ones), ties to the cheaper gate (the order given).

    python scripts/qwen_pair_select.py --fraction 0.1 --methods $(bash scripts/qwen_pair_train.sh --methods)
"""

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from dllg.analysis.dynamics import weight_matrix
from dllg.jsonl import read_records
from dllg.pipeline.holdout import is_validation
from dllg.pipeline.report import ORACLE, markdown_table, results_table, truncation_table

RESULTS = Path("results/qwen-coder-pair")


def expert_records(labels: Path, fraction: float) -> list[dict]:
    """The label table's answers to the held-out prompts, as evaluation records of `expert:NAME`."""
    return [
        {**r, "method": f"expert:{r['expert']}", "correct": int(r["label"])}
        for r in read_records(labels)
        if is_validation(r["example_id"], fraction)
    ]


def on_common_examples(records: list[dict], methods: list[str]) -> tuple[list[dict], int]:
    """Only the examples every method has a record for, so that each row counts the same prompts."""
    seen: dict[tuple, set[str]] = defaultdict(set)
    for r in records:
        seen[(r["task"], r["example_id"])].add(r["method"])
    common = {key for key, have in seen.items() if have >= set(methods)}
    kept = [r for r in records if (r["task"], r["example_id"]) in common and r["method"] in methods]
    return kept, len(seen) - len(common)


def pooled(records: list[dict], method: str) -> tuple[int, int]:
    mine = [int(r["correct"]) for r in records if r["method"] == method]
    return sum(mine), len(mine)


def oracle(records: list[dict]) -> tuple[int, int]:
    """(prompts some expert got right, prompts) over the expert records."""
    right: dict[tuple, int] = defaultdict(int)
    for r in records:
        if r["method"].startswith("expert:"):
            right[(r["task"], r["example_id"])] |= int(r["correct"])
    return sum(right.values()), len(right)


def correctness(records: list[dict]) -> dict[str, dict[tuple, int]]:
    """method -> (task, example id) -> 1 if its answer was right."""
    right: dict[str, dict[tuple, int]] = defaultdict(dict)
    for r in records:
        right[r["method"]][(r["task"], r["example_id"])] = int(r["correct"])
    return right


def paired_counts(records: list[dict], method: str, reference: str) -> tuple[int, int]:
    """(method right and reference wrong, the reverse) over the examples both have."""
    right = correctness(records)
    a, b = right[method], right[reference]
    return sum(a[k] and not b[k] for k in a), sum(b[k] and not a[k] for k in a)


def weight_shares(records: list[dict], method: str, experts: list[str]) -> list[str]:
    """Markdown rows: the method's mean share of the weight per expert (w_k / sum of w over each answer's
    tokens, averaged over the answers), grouped by which experts' own answers were right: does the gate
    lean on the expert that was right?"""
    right = correctness(records)
    groups: dict[str, list[np.ndarray]] = defaultdict(list)
    for r in records:
        if r["method"] != method or not r.get("weights"):
            continue
        weights = weight_matrix(r)
        shares = (weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)).mean(axis=0)
        alone = [e.removeprefix("expert:") for e in experts if right[e][(r["task"], r["example_id"])]]
        groups[" + ".join(alone) or "none"].append(shares)
    names = [e.removeprefix("expert:") for e in experts]
    rows = [f"| own answer right | answers | {' | '.join(names)} |", "|:---|---:|" + "---:|" * len(names)]
    for group, shares in sorted(groups.items()):
        mean = np.mean(shares, axis=0)
        rows.append(f"| {group} | {len(shares)} | {' | '.join(f'{v:.3f}' for v in mean)} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, default=RESULTS / "full" / "labels.jsonl")
    parser.add_argument("--records", type=Path, default=RESULTS / "validation" / "records.jsonl")
    parser.add_argument("--fraction", type=float, default=0.1, help="the run config's train.val_fraction")
    parser.add_argument("--methods", nargs="+", required=True, help="the gated methods, cheapest first")
    parser.add_argument("--out", type=Path, default=RESULTS / "validation" / "selection.md")
    args = parser.parse_args()

    experts = expert_records(args.labels, args.fraction)
    expert_methods = list(dict.fromkeys(r["method"] for r in experts))
    gated = [
        r
        for r in read_records(args.records)
        if r["method"] in args.methods and is_validation(r["example_id"], args.fraction)
    ]
    methods = expert_methods + args.methods
    records, left_out = on_common_examples(experts + gated, methods)
    if not records:
        raise SystemExit("no held-out prompt has a record from every method yet: run the validation eval")

    rows = results_table(records, oracle=True)
    for row in rows:
        correct, total = pooled(records, row["method"]) if row["method"] != ORACLE else oracle(records)
        row["pooled"] = 100.0 * correct / total
    strongest = max(expert_methods, key=lambda m: pooled(records, m)[0])
    lines = [f"Held-out prompts with a record from every method: {len(records) // len(methods)}"]
    if left_out:
        lines.append(f"(left out: {left_out} prompts some method has no record for yet)")
    lines += ["", "% correct (pooled: every held-out prompt once):", "", markdown_table(rows).rstrip(), ""]
    truncated = markdown_table(truncation_table(records)).rstrip()
    lines += ["% of answers cut off at the token limit:", "", truncated]
    lines += ["", f"Paired against {strongest} (right where it is wrong / wrong where it is right):", ""]
    for method in args.methods:
        wins, losses = paired_counts(records, method, strongest)
        lines.append(f"- {method}: +{wins} / -{losses}")
    for method in args.methods:
        lines += ["", f"{method}: mean share of the weight, by which experts' own answers were right:", ""]
        lines += weight_shares(records, method, expert_methods)
    best = max(args.methods, key=lambda m: (pooled(records, m)[0], -args.methods.index(m)))
    correct, total = pooled(records, best)
    lines += ["", f"chosen: {best} ({correct}/{total} held-out prompts right)"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
