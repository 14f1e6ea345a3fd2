"""Issue 15's test-set table while its evaluation is still running: the rows from the records so far, each
cell only where the method has every example of the task (a score on the first n examples of a task would not
compare with the others), the progress per cell, and the truncation rates. The full table comes from
`bash scripts/qwen_pair_eval.sh all` once every record is there.

    .venv/bin/python scripts/qwen_pair_partial.py   # writes partial.md beside the records
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dllg.jsonl import read_records
from dllg.pipeline.report import (
    cell_counts,
    markdown_table,
    results_table,
    task_column,
    task_columns,
    truncation_table,
)

RECORDS = Path("results/qwen-coder-pair/eval/records.jsonl")


def complete_cells(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """The records of the (method, task) cells that hold every example of the task (its size: the most
    examples any method has there), and one progress row per method: "done/size" per task."""
    columns, multi = task_columns(records)
    counts, size = cell_counts(records)
    methods = list(dict.fromkeys(r["method"] for r in records))
    progress = [{"method": m} | {c: f"{counts[(m, c)]}/{size[c]}" for c in columns} for m in methods]
    kept = [r for r in records if counts[(r["method"], task_column(r, multi))] == size[task_column(r, multi)]]
    return kept, progress


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=RECORDS)
    parser.add_argument("--out", type=Path, default=None, help="default: partial.md beside the records")
    args = parser.parse_args()
    records = list(read_records(args.records))
    kept, progress = complete_cells(records)
    out = args.out or args.records.parent / "partial.md"
    text = (
        f"# Partial test-set table ({len(records)} records)\n\n"
        "% correct, greedy, 768 new tokens, llama.cpp Q4_K_M, batch 8; '-' where the method has not done\n"
        "every example of the task yet (then avg is '-' too). From `scripts/qwen_pair_partial.py`.\n\n"
        + markdown_table(results_table(kept, oracle=True))
        + "\nRecords so far (done/examples):\n\n"
        + markdown_table(progress)
        + "\n% truncated (finish = length), complete cells only:\n\n"
        + markdown_table(truncation_table(kept))
    )
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
