"""`dllg serve`: the fused experts behind an OpenAI-compatible HTTP API (chat and completions, streamed or
not), with continuous batching, and a live page at `/`."""

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dllg.cli.common import BACKEND_HELP, PRESET_HELP, RAY_HELP, console, user_errors
from dllg.cli.generate import POWER_HELP, rule_options_from_flags
from dllg.cli.pipeline import CONFIG_HELP
from dllg.errors import DllgError
from dllg.fusion import RULES
from dllg.presets import choose_experts

if TYPE_CHECKING:
    from dllg.experts import ExpertPool
    from dllg.fusion import FusionRule


def pool_and_rule(
    config: Path | None,
    experts: list[str] | None,
    fusion: str | None,
    gate: str | None,
    options: dict[str, object],
    device: str,
    dtype: str,
    backend: str,
    preset: str | None = None,
    ray: str | None = None,
) -> tuple["ExpertPool", "FusionRule"]:
    """The experts (a run config's, a preset's, or named) and the rule; a bad rule or gate fails before
    experts load."""
    from dllg.config import load_config, rule_and_gate
    from dllg.ensemble import Ensemble
    from dllg.fusion import make_rule
    from dllg.pipeline.run import load_pool

    choice = choose_experts(experts, preset, fusion, gate, config, has_config=True)
    run = load_config(config) if config is not None else None
    fusion, gate = rule_and_gate(choice.fusion, choice.gate, run)
    options = {**choice.options, **options}  # a flag wins over the preset's choice
    if gate is not None:
        options["gate"] = gate
    rule = make_rule(fusion, **options)
    if run is not None:
        return load_pool(run if ray is None else run.placed_on_ray(ray)), rule
    split = [value.split(",") if "," in value else value for value in (device, dtype, backend)]
    return Ensemble(choice.experts, device=split[0], dtype=split[1], backend=split[2], ray=ray).pool, rule


@user_errors
def serve_command(
    config: Path = typer.Option(
        None, "--config", "-c", help=CONFIG_HELP + " Its experts (and, with --fusion dllg, its gate)."
    ),
    experts: list[str] = typer.Option(None, "--experts", "-e", help="Experts, instead of --config."),
    preset: str = typer.Option(None, "--preset", "-p", help=PRESET_HELP),
    fusion: str = typer.Option(None, "--fusion", "-f", help=f"Fusion rule: {', '.join(sorted(RULES))}."),
    gate: str = typer.Option(None, "--gate", help="A trained gate folder: fuse with rule dllg."),
    weights: str = typer.Option(None, help="static: one weight per expert, e.g. 0.3,0.7."),
    expert: str = typer.Option(None, help="single: the expert to use (name or 0-based index)."),
    tau: float = typer.Option(None, help="entropy / packllm: temperature of the weight softmax."),
    top_k: int = typer.Option(None, "--top-k", help="unite: top-k tokens per expert."),
    space: str = typer.Option(None, help="Weighted rules: fuse 'logits' or 'probs'."),
    power: float = typer.Option(None, help=POWER_HELP),
    device: str = typer.Option(
        "auto", help="Device for every expert, or one per expert (not with --config)."
    ),
    dtype: str = typer.Option("auto", help="auto, bf16, fp32... (not with --config)."),
    backend: str = typer.Option("hf", help=BACKEND_HELP + " (Not with --config.)"),
    ray: str = typer.Option(None, "--ray", help=RAY_HELP),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Requests decoded together, at most."),
    max_queue: int = typer.Option(
        64, "--max-queue", min=0, help="Requests waiting for a row, at most; beyond: 429."
    ),
    timeout: float = typer.Option(
        600, "--timeout", min=0.001, help="Seconds a request may take (504 after)."
    ),
    model_name: str = typer.Option("dllg", "--model-name", help="The model id clients ask for."),
    speculate: str = typer.Option(
        "auto", help="Speculative decoding (the same answers): ngram, expert, none, or auto (where it pays)."
    ),
    threads: int = typer.Option(
        None, "--threads", min=1, help="CPU threads for the experts (default: torch's); on a busy CPU try 1."
    ),
) -> None:
    """Serve the fused experts over an OpenAI-compatible HTTP API (and a live page at /)."""
    try:
        from dllg.serve.app import create_app
        from dllg.serve.engine import Engine
        from dllg.serve.server import run_server
    except ImportError as exc:
        raise DllgError(
            f"the server's packages are not installed ({exc}): pip install 'dllg[serve]'"
        ) from exc

    options = rule_options_from_flags(weights, expert, tau, top_k, space, power)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    with console.status("loading the experts"):
        pool, rule = pool_and_rule(config, experts, fusion, gate, options, device, dtype, backend, preset)
        engine = Engine(
            pool, rule, max_batch=max_batch, max_queue=max_queue, timeout=timeout, drafter=speculate
        )
    console.print(
        f"serving {model_name!r}: {', '.join(pool.names)} fused by {rule.name}, context "
        f"{engine.context} tokens; API http://{host}:{port}/v1, live page http://{host}:{port}/",
        highlight=False,
        soft_wrap=True,
    )
    run_server(create_app(engine, model_name), host, port)
