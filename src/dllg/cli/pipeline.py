"""`dllg collect` and `dllg train`: the gate's pipeline, driven by one YAML run config."""

from pathlib import Path

import typer

from dllg.cli.common import RAY_HELP, console, user_errors
from dllg.cli.shards import SHARD_HELP

CONFIG_HELP = "The YAML run config (see configs/)."
SET_HELP = "Override a config field, e.g. --set train.steps=100 (repeatable)."


@user_errors
def collect_command(
    config: Path = typer.Option(..., "--config", "-c", help=CONFIG_HELP),
    set_: list[str] = typer.Option(None, "--set", help=SET_HELP),
    limit: int = typer.Option(None, "--limit", help="At most this many examples per task."),
    out: str = typer.Option(None, "--out", help="The label table (JSONL); default: collect.out."),
    fresh: bool = typer.Option(False, "--fresh", help="Start a new table; the old one is renamed, not lost."),
    shard: str = typer.Option(None, "--shard", help=SHARD_HELP),
    ray: str = typer.Option(None, "--ray", help=RAY_HELP),
    summary: bool = typer.Option(
        False, "--summary", help="Only print the label table's summary (accuracy, truncation, overlap)."
    ),
) -> None:
    """Each expert answers each training prompt; a verifier labels each answer (resumable)."""
    from dllg.config import load_config
    from dllg.pipeline.run import run_collect
    from dllg.pipeline.sharding import Shard

    part = Shard.parse(shard) if shard is not None else None
    overrides = list(set_ or []) + ([f"collect.out={out}"] if out else [])
    run = load_config(config, overrides)
    if summary:
        print_label_summary(part.path(run.collect.out) if part else run.collect.out)
        return
    if ray is not None:
        run = run.placed_on_ray(ray)
    if limit is not None:
        run = run.model_copy(update={"tasks": [t.model_copy(update={"limit": limit}) for t in run.tasks]})
    counts = run_collect(run, fresh=fresh, shard=part)
    console.print(
        f"labels: {part.path(run.collect.out) if part else run.collect.out}: {counts['generated']} new "
        f"({counts['correct']} correct), {counts['skipped']} already there",
        highlight=False,
    )


def print_label_summary(path: str | Path) -> None:
    from dllg.errors import DllgError
    from dllg.pipeline.collect import read_labels
    from dllg.pipeline.label_summary import expert_rows, overlap_rows
    from dllg.pipeline.report import markdown_table

    labels = read_labels(path)
    if not labels:
        raise DllgError(f"no labels in {path}: run `dllg collect --config ...` first")
    print(f"# Label table {path}: {len(labels)} answers\n")
    print(markdown_table(expert_rows(labels)))
    print("Over the examples every expert answered:\n")
    print(markdown_table(overlap_rows(labels)), end="")


@user_errors
def train_command(
    config: Path = typer.Option(..., "--config", "-c", help=CONFIG_HELP),
    set_: list[str] = typer.Option(None, "--set", help=SET_HELP),
    steps: int = typer.Option(None, "--steps", help="Training steps; default: train.steps."),
    out_dir: str = typer.Option(
        None, "--out-dir", help="Where checkpoints and the gate go; default: train.out_dir."
    ),
    fresh: bool = typer.Option(
        False, "--fresh", help="Train from step 0; an earlier run in the folder is renamed, not lost."
    ),
    fresh_features: bool = typer.Option(
        False, "--fresh-features", help="Recompute the feature cache; the old one is renamed, not lost."
    ),
) -> None:
    """Teacher-force the references through the experts (cached) and train the gate (resumable)."""
    from dllg.config import load_config
    from dllg.pipeline.run import run_train

    overrides = list(set_ or [])
    overrides += [f"train.steps={steps}"] if steps is not None else []
    overrides += [f"train.out_dir={out_dir}"] if out_dir else []
    run = load_config(config, overrides)
    metrics = run_train(run, fresh=fresh, fresh_features=fresh_features)
    shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()) or "no validation examples"
    console.print(f"gate: {Path(run.train.out_dir) / 'gate'} ({shown})", highlight=False)
