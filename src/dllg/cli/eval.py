"""`dllg eval`: methods x tasks -> records (JSONL, resumable) -> the results table (Markdown and CSV)."""

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from dllg.cli.common import BACKEND_HELP, RAY_HELP, console, user_errors
from dllg.cli.shards import SHARD_HELP
from dllg.errors import DllgError

if TYPE_CHECKING:  # the CLI imports torch-heavy modules only when a command runs
    from dllg.decode import GenerationConfig
    from dllg.experts import ExpertPool
    from dllg.pipeline.evaluate import EvalTask

METHODS_HELP = (
    "Methods: expert:NAME (name or 0-based index), uniform, entropy, packllm, majority, unite, "
    "static:0.3,0.7, dllg:GATE_FOLDER, dllg-sharp:POWER:GATE_FOLDER (the gate's weights raised to POWER, "
    "rescaled), dllg-static:GATE_FOLDER (the gate's mean weights per response)."
)


def rich_table(rows: list[dict], title: str = "% correct") -> Table:
    table = Table(title=title)
    columns = list(rows[0]) if rows else ["method", "avg"]
    for i, column in enumerate(columns):  # method names whole; the score headers wrap instead
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        table.add_row(
            *(str(row[c]) if c == "method" else "-" if row[c] is None else f"{row[c]:.2f}" for c in columns)
        )
    return table


@user_errors
def eval_command(
    experts: list[str] = typer.Option(
        ..., "--experts", "-e", help="Experts: catalog name, folder, .gguf, hub id."
    ),
    methods: list[str] = typer.Option(..., "--methods", "-m", help=METHODS_HELP),
    tasks: list[str] = typer.Option(
        ..., "--tasks", "-t", help="Tasks: NAME (its default evaluation split) or NAME:SPLIT."
    ),
    limit: int = typer.Option(None, "--limit", help="At most this many examples per task."),
    out: Path = typer.Option(Path("runs/eval/records.jsonl"), "--out", help="The records file (JSONL)."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", "-n"),
    batch_size: int = typer.Option(
        8, "--batch-size", help="Rows decoding at once; a finished row's place goes to the next example."
    ),
    workers: int = typer.Option(2, "--workers", help="Parallel verifier runs (code sandboxes)."),
    device: str = typer.Option("auto", help="Device for every expert, or one per expert: cpu,cuda:0."),
    dtype: str = typer.Option("auto", help="auto (bf16 on GPU / native-bf16 CPUs, else fp32), bf16, fp32..."),
    backend: str = typer.Option("hf", help=BACKEND_HELP),
    ray: str = typer.Option(None, "--ray", help=RAY_HELP),
    speculate: str = typer.Option(
        "none",
        help="Speculative decoding's drafter (the same answers): ngram, expert, auto, none, or reference "
        "(drafts from the other methods' answers to the same example in --out).",
    ),
    draft_tokens: int = typer.Option(4, "--draft-tokens", help="Drafted tokens per step, at most."),
    prompt_cache: Path = typer.Option(
        None,
        "--prompt-cache",
        help="llama.cpp experts keep each prompt's prefill in this folder and restore it when the prompt "
        "comes again: the methods of an evaluation prefill each prompt once.",
    ),
    together: bool = typer.Option(
        False,
        "--together",
        help="The fused methods decode each example together: one row while they choose the same tokens, "
        "forked where they differ (each its own greedy answer, for fewer expert steps).",
    ),
    by_tags: list[str] = typer.Option(
        None, "--by-tags", help="Also score this task's examples grouped by their tags (e.g. world-mixed)."
    ),
    shard: str = typer.Option(None, "--shard", help=SHARD_HELP + " No table: it comes from the merged file."),
    holdout: float = typer.Option(
        None,
        "--holdout",
        help="Only the training prompts `dllg train` holds out at this train.val_fraction: choose gates "
        "on these (e.g. --tasks gsm_symbolic:train --holdout 0.1), never on the test sets.",
    ),
) -> None:
    """Evaluate methods on tasks (greedy, resumable) and print the results table."""
    from dllg.decode import GenerationConfig
    from dllg.experts import ExpertPool
    from dllg.experts.loading import load_experts
    from dllg.pipeline.evaluate import evaluate, load_eval_tasks, method_names
    from dllg.pipeline.holdout import validation_tasks
    from dllg.pipeline.sharding import Shard, shard_eval_tasks

    part = Shard.parse(shard) if shard is not None else None
    names = method_names(methods)  # a bad method name fails before any model loads
    loaded_tasks = load_eval_tasks(tasks)
    if holdout is not None:
        loaded_tasks = validation_tasks(loaded_tasks, holdout)
    if limit is not None:
        loaded_tasks = [replace(t, examples=t.examples[:limit]) for t in loaded_tasks]
    devices = device.split(",") if "," in device else device
    dtypes = dtype.split(",") if "," in dtype else dtype
    backends = backend.split(",") if "," in backend else backend
    with console.status(f"loading {len(experts)} experts"):
        options = {"prompt_cache": str(prompt_cache)} if prompt_cache is not None else None
        pool = ExpertPool(load_experts(experts, devices, dtypes, backends, ray_address=ray, llamacpp=options))
    config = GenerationConfig(max_new_tokens=max_new_tokens, speculate=speculate, draft_tokens=draft_tokens)
    if part is None:
        evaluate_and_report(
            pool, names, loaded_tasks, out, config, batch_size, workers, by_tags or (), together
        )
        return
    mine = shard_eval_tasks(part, loaded_tasks)
    counts = evaluate(pool, names, mine, part.path(out), config, batch_size, workers, together=together)
    print_counts(part.path(out), counts)
    console.print(
        f"the table: `dllg merge-shards {out}` once every shard is done, then this command without --shard",
        highlight=False,
    )


def print_counts(out: Path, counts: dict[str, int]) -> None:
    console.print(
        f"records: {out}: {counts['generated']} new ({counts['correct']} correct), "
        f"{counts['skipped']} already there",
        highlight=False,
    )


def evaluate_and_report(
    pool: "ExpertPool",
    names: list[str],
    loaded_tasks: "list[EvalTask]",
    out: Path,
    config: "GenerationConfig",
    batch_size: int,
    workers: int,
    by_tags: Sequence[str] = (),
    together: bool = False,
) -> list[dict]:
    """Run what is missing from `out`, then print and write (next to `out`) the table, the tables by tag
    of the tasks in `by_tags`, and the ablation; returns the table's rows."""
    from dllg.jsonl import read_records
    from dllg.pipeline.evaluate import evaluate
    from dllg.pipeline.report import (
        TRUNCATION_TITLE,
        ablation_line,
        ablations,
        markdown_table,
        results_table,
        select_records,
        tag_table,
        truncation_table,
        write_tables,
    )

    unknown = set(by_tags) - {t.name for t in loaded_tasks}
    if unknown:
        raise DllgError(f"--by-tags {', '.join(sorted(unknown))}: not among the evaluated tasks")
    print_counts(
        out, evaluate(pool, names, loaded_tasks, out, config, batch_size, workers, together=together)
    )
    records = select_records(list(read_records(out)), names, loaded_tasks)
    rows = results_table(records, oracle=True)
    console.print(rich_table(rows))
    notes = []
    for task in (t for t in loaded_tasks if t.name in by_tags):
        tagged = tag_table(records, task)
        console.print(rich_table(tagged, f"{task.name}: % correct by example tags"))
        notes.append(f"{task.name}, % correct by example tags:\n\n" + markdown_table(tagged).rstrip())
    for ablation in ablations(records):
        console.print(ablation_line(ablation), highlight=False)
        notes.append(ablation_line(ablation))
    truncated = truncation_table(records)
    console.print(rich_table(truncated, TRUNCATION_TITLE))
    notes.append(f"{TRUNCATION_TITLE}:\n\n" + markdown_table(truncated).rstrip())
    md_path, csv_path = write_tables(rows, out.parent, notes)
    console.print(f"tables: {md_path}, {csv_path}", highlight=False)
    return rows
