"""`dllg demo`: fetch the real Qwen2.5-Coder pair (once) and fuse it on a coding prompt, with weights."""

import time

import typer

from dllg.cli.bench import REAL_PAIR
from dllg.cli.common import console, user_errors
from dllg.cli.generate import weights_table

DEMO_PROMPT = "Write a Python function that reverses a string."


@user_errors
def demo_command(
    fusion: list[str] = typer.Option(["uniform", "entropy"], "--fusion", help="Rules to show (repeatable)."),
    max_new_tokens: int = typer.Option(120, "--max-new-tokens", "-n"),
    tiny: bool = typer.Option(
        False, "--tiny", help="Tiny random experts instead: no download, gibberish text."
    ),
) -> None:
    """Fuse two experts on one prompt with a few rules, printing each token's expert weights."""
    from dllg.ensemble import Ensemble

    if tiny:
        from dllg.tiny import tiny_pool

        ensemble = Ensemble(tiny_pool().experts)
    else:
        from dllg.sources import fetch_model

        for name in REAL_PAIR:
            fetch_model(name)
        with console.status("loading the experts"):
            ensemble = Ensemble(list(REAL_PAIR))
    console.print(f"experts: {ensemble}")
    console.print(f"prompt: {DEMO_PROMPT}\n", highlight=False)
    for rule in fusion:
        console.rule(f"fusion rule: {rule}")
        start = time.perf_counter()
        result = ensemble.generate(DEMO_PROMPT, rule, max_new_tokens=max_new_tokens)[0]
        seconds = time.perf_counter() - start
        console.print(weights_table(result, ensemble.pool.tokenizer))
        console.print(result.text, markup=False, highlight=False)
        mean = ", ".join(
            f"{n}={w:.3f}" for n, w in zip(result.expert_names, result.weights.mean(0).tolist(), strict=True)
        )
        console.print(
            f"[dim]{len(result.token_ids)} tokens in {seconds:.1f} s; finish: {result.finish_reason}; "
            f"mean weights: {mean}[/]",
            highlight=False,
        )
