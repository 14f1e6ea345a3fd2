"""`dllg analyze` and `dllg plot`: what the per-token expert weights in `dllg eval` records do."""

from pathlib import Path

import typer

from dllg.cli.common import console, user_errors

RECORDS_HELP = "The records file (JSONL) that `dllg eval` or `dllg demo` wrote."


@user_errors
def analyze_command(
    records: Path = typer.Argument(..., help=RECORDS_HELP),
    out: Path = typer.Option(
        None,
        "--out",
        help="Folder for analysis.md and analysis.csv; default: analysis/ beside the records file.",
    ),
    methods: list[str] = typer.Option(
        None,
        "--methods",
        "-m",
        help="Only these methods (with the static ablation of a dllg:GATE among them); default: all.",
    ),
) -> None:
    """Weight statistics per method and task (switches, leaders by third of the answer, correct vs incorrect
    with p-values) and dynamic vs static per task; prints the Markdown and writes it with a CSV."""
    from dllg.analysis.dynamics import analyze
    from dllg.analysis.dynamics_report import write_analysis

    analysis = analyze(records, methods or ())
    md_path, csv_path, markdown = write_analysis(analysis, out or records.parent / "analysis")
    console.print(markdown, markup=False, highlight=False, soft_wrap=True)
    console.print(f"written: {md_path}, {csv_path}", highlight=False)


@user_errors
def plot_command(
    records: Path = typer.Argument(..., help=RECORDS_HELP),
    out: Path = typer.Option(..., "--out", help="Folder for the figures (PNG and SVG of each)."),
    method: str = typer.Option(
        None,
        "--method",
        help="The method whose weights to draw; default: the first dllg:GATE, else the first with weights.",
    ),
    ids: list[str] = typer.Option(
        None,
        "--ids",
        help="Draw these example ids' responses (repeat the flag or "
        "separate by commas) instead of the first of each outcome per task.",
    ),
    max_examples: int = typer.Option(
        1,
        "--max-examples",
        help="Responses drawn per task and outcome (correct, incorrect) when no --ids are given.",
    ),
) -> None:
    """Figures of the weights: per response over decoding steps, mean by position in the answer (correct
    vs incorrect) per task, and dynamic vs static accuracy; prints the files written."""
    from dllg.analysis.figures import draw_figures

    wanted = [i for value in ids or () for i in value.split(",") if i]
    for path in draw_figures(records, out, method, wanted, max_examples):
        console.print(str(path), highlight=False, soft_wrap=True)
