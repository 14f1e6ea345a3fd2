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


@user_errors
def run_shards_command(
    count: int = typer.Argument(..., min=1, help="How many shards (Ray tasks)."),
    command: list[str] = typer.Argument(
        ..., help="After --: the dllg command to shard, e.g. eval --experts A B --methods ... --out OUT."
    ),
    out: Path = typer.Option(..., "--out", help="The file the shards merge into (the command's output)."),
    ray: str = typer.Option("local", "--ray", help="The Ray cluster: local (start one here) or an address."),
    cpus: float = typer.Option(1, "--cpus-per-shard", min=0, help="CPUs Ray reserves for each shard."),
    gpus: float = typer.Option(0, "--gpus-per-shard", min=0, help="GPUs Ray reserves for each shard."),
    retries: int = typer.Option(2, "--retries", min=0, help="Reruns of a shard that fails or dies."),
) -> None:
    """Run a collect or eval command once per shard on Ray workers (each adds --shard i/N and resumes its own
    file), then merge the shards into OUT."""
    from dllg.errors import DllgError
    from dllg.pipeline.ray_shards import run_shards

    if not command or command[0] not in ("collect", "eval"):
        raise DllgError("give the command to shard after --: collect --config RUN.yaml, or eval ... --out X")
    if "--shard" in command:
        raise DllgError("the command gets its --shard from run-shards: drop --shard")
    report = run_shards(command, count, out, ray, {"num_cpus": cpus, "num_gpus": gpus}, retries)
    console.print(
        f"{out}: {count} shards done; merged {report.merged} new records, {report.already_present} already "
        f"there; {report.total} in all",
        highlight=False,
    )
