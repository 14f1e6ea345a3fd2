"""`dllg merge-shards`: join the files that `dllg collect --shard` / `dllg eval --shard` wrote."""

from pathlib import Path

import typer

from dllg.cli.common import console, err_console, user_errors

SHARD_HELP = (
    "INDEX/COUNT (from 0): run only this shard's examples, into a file beside --out "
    "(records.shard-0-of-4.jsonl); `dllg merge-shards OUT` joins the shards."
)


@user_errors
def merge_shards_command(
    out: Path = typer.Argument(
        ..., metavar="OUT", help="The file the shards were run for (their --out / collect.out)."
    ),
) -> None:
    """Append the shard files' records to OUT, each key once (resumable; rerun to add shards done since)."""
    from dllg.pipeline.sharding import EVAL_RECORDS, merge_shards

    report = merge_shards(out)
    shards = ", ".join(str(s) for s in report.shards)
    console.print(
        f"{out}: merged shards {shards}: {report.merged} new records, {report.already_present} already "
        f"there; {report.total} in all",
        highlight=False,
    )
    if report.absent:
        missing = ", ".join(str(s) for s in report.absent)
        err_console.print(f"no file yet for shard {missing}: run it, then merge again", highlight=False)
    rerun = "eval" if report.kind == EVAL_RECORDS.name else "collect"
    console.print(
        f"the same `dllg {rerun}` command without --shard now generates only what is still missing"
        + (" and writes the results table" if rerun == "eval" else ""),
        highlight=False,
    )
