"""`dllg merge`: write a weight merge of same-shape experts as a normal HF folder (loadable as an expert)."""

from pathlib import Path

import typer

from dllg.cli.common import console, user_errors
from dllg.errors import DllgError


def _floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise DllgError(f"--weights {text!r}: give numbers separated by commas, e.g. 0.3,0.7") from exc


@user_errors
def merge_command(
    method: str = typer.Option(..., "--method", help="linear, slerp or task_arithmetic."),
    experts: list[str] = typer.Option(
        ..., "--experts", help="The experts to merge (same architecture and size)."
    ),
    out: Path = typer.Option(..., "--out", help="The folder to write the merged model to."),
    weights: str = typer.Option(
        None, "--weights", help="linear: one weight per expert, e.g. 0.3,0.7 (normalised)."
    ),
    t: float = typer.Option(None, "--t", help="slerp: 0 gives the first expert, 1 the second (default 0.5)."),
    base: str = typer.Option(
        None, "--base", help="task_arithmetic: the base model the experts were tuned from."
    ),
    lambda_: float = typer.Option(
        None, "--lambda", help="task_arithmetic: scale of the summed task vectors (1)."
    ),
    dtype: str = typer.Option(
        None, "--dtype", help="float32, bfloat16 or float16; default: the first expert's."
    ),
) -> None:
    """Merge experts' weights (linear soup, SLERP, task arithmetic) with mergekit."""
    from dllg.baselines.merging import merge_experts

    options = {"weights": _floats(weights), "t": t, "lambda_": lambda_}
    folder = merge_experts(
        method, experts, out, base=base, dtype=dtype, **{k: v for k, v in options.items() if v is not None}
    )
    console.print(f"merged ({method}): {folder}", highlight=False)
