"""Shared CLI plumbing: one-line errors, and options that take several values after one flag."""

import sys
from collections.abc import Callable, Sequence
from functools import wraps
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from dllg.errors import DllgError

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)

# Options written as `--experts A B C`; click wants `--experts A --experts B --experts C`.
MULTI_VALUE_OPTIONS = ("--experts", "--methods", "--tasks", "--ids")


def expand_multi_value_options(
    argv: Sequence[str], options: Sequence[str] = MULTI_VALUE_OPTIONS
) -> list[str]:
    """Rewrite `--opt a b c` into `--opt a --opt b --opt c`: values run up to the next option (or `--`)."""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in options:
            values = []
            i += 1
            while i < len(args) and not args[i].startswith("-"):
                values.append(args[i])
                i += 1
            for value in values or [""]:
                out.extend([arg, value])
            continue
        out.append(arg)
        i += 1
    return out


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Print a DllgError as one `error:` line and exit 1, instead of a traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except DllgError as exc:
            # Text, not markup: messages quote lists and paths with brackets; soft_wrap keeps it one line.
            err_console.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def argv() -> list[str]:
    return expand_multi_value_options(sys.argv[1:])


PRESET_HELP = "Experts and their trained gate by one name (see `dllg models presets`)."
RAY_HELP = (
    "Run each expert in its own Ray actor (the experts of a step run at once): a cluster's address, or "
    "local to start one here. Needs pip install 'dllg[ray]'."
)
BACKEND_HELP = (
    "hf (transformers) or llamacpp (a .gguf file or a catalog model's GGUF, on the CPU); one for every "
    "expert, or one per expert: hf,llamacpp."
)
