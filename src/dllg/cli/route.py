"""`dllg route`: train a router (EmbedLLM- or RouterDC-style) on the label table, and ask it for experts."""

from pathlib import Path

import typer

from dllg.cli.common import console, user_errors

app = typer.Typer(
    help="Routers that pick one expert per prompt, trained on the label table.", no_args_is_help=True
)


@app.command("train")
@user_errors
def train_command(
    config: Path = typer.Option(None, "--config", "-c", help="A run config: its experts and collect.out."),
    labels: Path = typer.Option(None, "--labels", help="The label table `dllg collect` wrote (JSONL)."),
    experts: list[str] = typer.Option(None, "--experts", help="The experts to route between, in pool order."),
    out: Path = typer.Option(..., "--out", help="The folder to save the router to."),
    kind: str = typer.Option("embedllm", "--kind", help="embedllm or routerdc."),
    encoder: str = typer.Option("expert-mean", "--encoder", help="expert-mean or minilm."),
    encoder_expert: int = typer.Option(
        0, "--encoder-expert", help="expert-mean: which of --experts encodes the prompts."
    ),
    steps: int = typer.Option(300, "--steps"),
    dim: int = typer.Option(32, "--dim", help="Size of the learned prompt and expert embeddings."),
    lr: float = typer.Option(1e-2, "--lr"),
    temperature: float = typer.Option(0.2, "--temperature", help="routerdc: contrastive temperature."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Fit a router on a frozen prompt encoder; prints how often its choice was right on the table."""
    from dllg.baselines.routing import RouterTrainConfig, make_encoder, train_router_from_table
    from dllg.errors import DllgError

    if config is not None:  # flags given beside the config win
        from dllg.config import load_config

        run = load_config(config)
        labels = labels or Path(run.collect.out)
        experts = experts or [e.name for e in run.experts]
    if labels is None or not experts:
        raise DllgError("name the label table and the experts: --config RUN.yaml, or --labels and --experts")
    if encoder == "expert-mean":
        if not 0 <= encoder_expert < len(experts):
            raise DllgError(
                f"--encoder-expert {encoder_expert} is not an index into the {len(experts)} experts"
            )
        prompt_encoder = make_encoder(encoder, expert=experts[encoder_expert])
    else:
        prompt_encoder = make_encoder(encoder)
    config = RouterTrainConfig(kind=kind, dim=dim, steps=steps, lr=lr, temperature=temperature, seed=seed)
    _, metrics = train_router_from_table(labels, experts, prompt_encoder, config, out)
    shown = " ".join(f"{k}={v:.3f}" for k, v in metrics.items())
    console.print(f"router ({kind}, {encoder}): {out} (on the table: {shown})", highlight=False)


@app.command("choose")
@user_errors
def choose_command(
    router: Path = typer.Option(..., "--router", help="A folder `dllg route train` wrote."),
    prompts: list[str] = typer.Argument(..., help="Prompts to route."),
) -> None:
    """Print the expert the router picks for each prompt."""
    from dllg.baselines.routing import load_router

    loaded = load_router(router)
    for prompt, index in zip(prompts, loaded.choose(prompts), strict=True):
        console.print(f"{index}\t{loaded.experts[index]}\t{prompt[:60]!r}", highlight=False)
