"""`dllg analyze-handover`: where a fused method's failed derive-then-code answers leave the reference, and
which expert led there."""

from pathlib import Path

import typer

from dllg.cli.common import console, user_errors


@user_errors
def analyze_handover_command(
    records: Path = typer.Argument(
        ..., help="The records file (JSONL) that `dllg eval` or `dllg demo` wrote."
    ),
    method: str = typer.Option(
        ..., "--method", help="The fused method whose failures to read, e.g. dllg:world:gate."
    ),
    task: str = typer.Option(
        ..., "--task", help="A derive-then-code task with reference solutions, e.g. world-mixed."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for handover.md and handover.csv."),
    derivation_expert: str = typer.Option(
        None,
        "--derivation-expert",
        help="The expert that should lead before the code block; default: the first.",
    ),
    code_expert: str = typer.Option(
        None, "--code-expert", help="The expert that should lead from the code block on; default: the second."
    ),
    device: str = typer.Option("auto", "--device", help="Where the experts run (cpu, cuda, auto)."),
    dtype: str = typer.Option("auto", "--dtype", help="The experts' dtype; auto is what `dllg eval` used."),
    batch_size: int = typer.Option(
        64, "--batch-size", help="Prompts per batch; the records' eval batch size."
    ),
    context: int = typer.Option(3, "--context", help="Tokens shown before each departure."),
    examples: int = typer.Option(3, "--examples", help="Examples shown per kind."),
) -> None:
    """Decode the method's records again (reporting any that differ now), find each failure's first token off
    the reference, teacher-force up to it through both experts and the rule, and classify who led there;
    prints the Markdown and writes it with a CSV of one row per failure."""
    from dllg.analysis.handover import analyze_handover
    from dllg.analysis.handover_report import write_handover

    analysis = analyze_handover(
        records, method, task, derivation_expert, code_expert, device, dtype, batch_size, context
    )
    md_path, csv_path, markdown = write_handover(analysis, out, examples)
    console.print(markdown, markup=False, highlight=False, soft_wrap=True)
    console.print(f"written: {md_path}, {csv_path}", highlight=False)
