"""The `dllg` command: a thin typer layer over the library."""

import typer

app = typer.Typer(
    name="dllg",
    help="Combine several LLMs that share a tokenizer into one generator (Dynamic Logit-Level Gating).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
