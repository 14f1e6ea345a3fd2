"""`dllg bench ...`: benchmark scripts that print `key=value` lines."""

import typer

from dllg.cli.common import console, user_errors

app = typer.Typer(help="Benchmarks that print figures as key=value lines.", no_args_is_help=True)

REAL_PAIR = ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")


def default_experts() -> list[str] | None:
    """The real Qwen2.5-Coder pair when it is fetched; None means tiny random models."""
    from dllg.sources import list_cached

    cached = {m.name for m in list_cached() if m.state == "converted"}
    return list(REAL_PAIR) if set(REAL_PAIR) <= cached else None


@app.command("decode")
@user_errors
def decode_command(
    experts: list[str] = typer.Option(
        None, "--experts", "-e", help="Default: the real pair if fetched, else tiny."
    ),
    batch_sizes: str = typer.Option("1,8", "--batch-sizes", help="Comma-separated batch sizes."),
    new_tokens: int = typer.Option(32, "--new-tokens", help="Tokens per sequence for each timing."),
    rule: str = typer.Option("uniform", "--rule"),
    repeats: int = typer.Option(2, "--repeats", help="Best of this many timings."),
    dtype: str = typer.Option("auto", help="Compute dtype of every expert (auto: per device)."),
    device: str = typer.Option("auto"),
) -> None:
    """Tokens/s of each expert's HF generate, of the fused loop, and its ratio to the sequential limit."""
    from dllg.bench.decode import bench_decode, format_line, machine_line
    from dllg.experts import ExpertPool

    names = list(experts) if experts else default_experts()
    if names:
        from dllg.experts.loading import load_experts

        pool = ExpertPool(load_experts(names, device=device, dtype=dtype))
    else:
        from dllg.tiny import tiny_pool

        console.print("# the real pair is not fetched: timing tiny random models (`dllg models fetch ...`)")
        pool = tiny_pool(dtype=dtype, device=device)
    sizes = tuple(int(b) for b in batch_sizes.split(","))
    print(format_line(machine_line()), flush=True)
    for line in bench_decode(pool, sizes, new_tokens, rule, repeats):
        print(format_line(line), flush=True)
