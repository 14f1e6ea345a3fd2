"""`dllg demo`: DLLG on the shipped synthetic world, no download: one fused answer with each token's
expert weights, then every method's score on held-out tasks. `--real` fuses the Qwen2.5-Coder pair
(preset qwen-coder-duo: uniform beside its gate)."""

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.text import Text

from dllg.cli.common import console, user_errors
from dllg.cli.generate import weights_table

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from dllg.decode.loop import Generation

REAL_PROMPT = "Write a Python function that reverses a string."
REAL_PRESET = "qwen-coder-duo"  # the real pair with the gate trained for it (issue 15)
WORLD_EXPERTS = ("world:arith", "world:code")
WORLD_GATE = "world:gate"
# The paper's table: each expert, the heuristic ensembles, the routers, the merges, then DLLG and its
# static ablation (each response's mean weights, every token).
WORLD_METHODS = (
    *(f"expert:{name}" for name in WORLD_EXPERTS),
    "uniform",
    "entropy",
    "packllm",
    "majority",
    "unite",
    "router:world:router-embedllm",
    "router:world:router-routerdc",
    "merge:linear",
    "merge:slerp",
    "merge:task_arithmetic@world:base",
    f"dllg:{WORLD_GATE}",
    f"dllg-static:{WORLD_GATE}",
)
WORLD_TASK_NAMES = ("world-arith", "world-code", "world-mixed")
EXPERT_STYLES = ("cyan", "magenta", "yellow", "green")


@user_errors
def demo_command(
    limit: int = typer.Option(None, "--limit", help="At most this many held-out examples per task."),
    out: Path = typer.Option(
        Path("runs/demo/records.jsonl"), "--out", help="Evaluation records (JSONL, resumable); tables beside."
    ),
    batch_size: int = typer.Option(64, "--batch-size"),
    workers: int = typer.Option(2, "--workers", help="Parallel verifier runs (code sandboxes)."),
    real: bool = typer.Option(
        False, "--real", help="Fuse the real Qwen2.5-Coder pair on one prompt instead (fetched once)."
    ),
    fusion: list[str] = typer.Option(
        ["uniform", "dllg"], "--fusion", help=f"--real: rules to show (dllg: preset {REAL_PRESET}'s gate)."
    ),
    max_new_tokens: int = typer.Option(120, "--max-new-tokens", "-n", help="--real: tokens per answer."),
) -> None:
    """Show DLLG at work: a fused answer with per-token weights, then the results table (see README)."""
    if real:
        real_demo(fusion, max_new_tokens)
    else:
        world_demo(limit, out, batch_size, workers)


def world_demo(limit: int | None, out: Path, batch_size: int, workers: int) -> None:
    from dllg.cli.eval import evaluate_and_report
    from dllg.decode import GenerationConfig
    from dllg.ensemble import Ensemble
    from dllg.pipeline.evaluate import load_eval_tasks, method_names
    from dllg.tasks.scoring import require_verifiers, verify_responses
    from dllg.world.assets import assets_fingerprint

    started = time.perf_counter()
    tasks = load_eval_tasks(WORLD_TASK_NAMES, limit)
    require_verifiers([e for t in tasks for e in t.examples])  # bubblewrap, before any model runs
    ensemble = Ensemble(list(WORLD_EXPERTS))
    console.print(
        f"experts: {', '.join(WORLD_EXPERTS)}: tiny Qwen2 models shipped with dllg. world:arith computes "
        "step by step and writes only the simplest code (f(x) = x + k); world:code writes code and does "
        "only one-operation arithmetic.\n"
        f"gate: {WORLD_GATE}, trained on the experts' verified answers to training prompts (one 0/1 label "
        "per answer, broadcast to every token).\n",
        highlight=False,
    )
    mixed = next(t for t in tasks if t.name == "world-mixed").examples
    # one that neither expert solves alone: two operations, and code other than f(x) = x + k
    example = next((e for e in mixed if "needs-both" in e.metadata["tags"]), mixed[0])
    console.rule("a held-out mixed problem, fused by the gate")
    console.print(example.prompt, markup=False, highlight=False)
    result = ensemble.generate(example.messages, "dllg", gate=WORLD_GATE, max_new_tokens=96)[0]
    console.print(weights_table(result, ensemble.pool.tokenizer))
    console.print(coloured_answer(result, ensemble.pool.tokenizer))
    verdict = verify_responses([example], [result.text], finishes=[result.finish_reason])[0]
    console.print(f"verdict: {verdict.status}", highlight=False)

    console.rule("every method on held-out tasks (greedy; % correct)")
    # records are kept per build of the shipped models, so a rebuild never reuses old answers
    records = out.parent / assets_fingerprint() / out.name
    config = GenerationConfig(max_new_tokens=96)
    names = method_names(list(WORLD_METHODS))
    rows = evaluate_and_report(
        ensemble.pool, names, tasks, records, config, batch_size, workers, by_tags=["world-mixed"]
    )
    console.print(headline(rows, "world-mixed", f"dllg:{WORLD_GATE}"), highlight=False)
    console.print(f"[dim]demo finished in {time.perf_counter() - started:.0f} s[/]")


def headline(rows: list[dict], task: str, method: str) -> str:
    """The issue's question in one line: how far is `method` above every other row on `task` (the oracle
    row is a ceiling, not a method)?"""
    from dllg.pipeline.report import ORACLE

    scores = {row["method"]: row.get(task) for row in rows}
    others = {m: v for m, v in scores.items() if m not in (method, ORACLE) and v is not None}
    if scores.get(method) is None or not others:
        return f"{task}: no comparison (missing records)"
    best = max(others, key=others.__getitem__)
    margin = scores[method] - others[best]
    return (
        f"{task}: {method} {scores[method]:.2f} vs the best other method, {best}, {others[best]:.2f}: "
        f"{margin:+.2f} points"
    )


def coloured_answer(result: "Generation", tokenizer: "PreTrainedTokenizerBase") -> Text:
    """The answer with each token in the colour of the expert with the larger weight."""
    text = Text()
    for token, weights in zip(result.token_ids, result.weights, strict=True):
        style = EXPERT_STYLES[int(weights.argmax()) % len(EXPERT_STYLES)]
        text.append(tokenizer.decode([token]), style=style)
    legend = "  ".join(
        f"[{EXPERT_STYLES[i % len(EXPERT_STYLES)]}]{name}[/]" for i, name in enumerate(result.expert_names)
    )
    return Text.from_markup(f"colour = the expert with the larger weight: {legend}\n") + text


def real_demo(fusion: list[str], max_new_tokens: int) -> None:
    from dllg.ensemble import Ensemble
    from dllg.presets import get_preset
    from dllg.sources import fetch_model

    for name in get_preset(REAL_PRESET).fetch:
        fetch_model(name)
    with console.status("loading the experts"):
        ensemble = Ensemble.from_preset(REAL_PRESET)  # rule dllg: its gate, with the options chosen for it
    console.print(f"experts: {ensemble}")
    console.print(f"prompt: {REAL_PROMPT}\n", highlight=False)
    for rule in fusion:
        console.rule(f"fusion rule: {rule}")
        start = time.perf_counter()
        result = ensemble.generate(REAL_PROMPT, rule, max_new_tokens=max_new_tokens)[0]
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
