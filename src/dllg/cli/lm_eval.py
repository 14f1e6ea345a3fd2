"""`dllg lm-eval`: any lm-evaluation-harness task on a fused ensemble (lm-eval's own CLI loads no plug-ins,
so this command registers the model `dllg` and calls `lm_eval.simple_evaluate`)."""

import json
from datetime import datetime
from pathlib import Path

import typer

from dllg.cli.common import BACKEND_HELP, PRESET_HELP, console, user_errors
from dllg.cli.generate import POWER_HELP, rule_options_from_flags
from dllg.cli.pipeline import CONFIG_HELP
from dllg.errors import DllgError
from dllg.fusion import RULES
from dllg.presets import choose_experts

OUTPUT_DIR = Path("runs/lm-eval")


def task_names(tasks: list[str]) -> list[str]:
    """`--tasks a,b` and `--tasks a b` alike."""
    names = [name.strip() for item in tasks for name in item.split(",") if name.strip()]
    if not names:
        raise DllgError("no task given: name lm-eval tasks, e.g. --tasks hellaswag,gsm8k")
    return names


def model_args(
    config: Path | None,
    experts: list[str] | None,
    fusion: str | None,
    gate: str | None,
    options: dict[str, object],
    device: str,
    dtype: str,
    backend: str,
    max_length: int | None,
    preset: str | None = None,
) -> dict[str, object]:
    """The `dllg` model's arguments, only those given: the model applies its own defaults."""
    choice = choose_experts(experts, preset, fusion, gate, config, has_config=True)
    args: dict[str, object] = {"config": str(config)} if config is not None else {"experts": choice.experts}
    given = {"fusion": choice.fusion, "gate": choice.gate, "max_length": max_length}
    given.update({**choice.options, **options})  # a flag wins over the preset's choice
    args.update({k: v for k, v in given.items() if v is not None})
    for key, value in (("device", device), ("dtype", dtype), ("backend", backend)):
        args[key] = value.split(",") if "," in value else value
    return args


def write_results(results: dict, output: Path) -> None:
    from lm_eval.utils import handle_non_serializable

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False))


@user_errors
def lm_eval_command(
    tasks: list[str] = typer.Option(..., "--tasks", "-t", help="lm-eval task names: a,b or a b."),
    config: Path = typer.Option(None, "--config", "-c", help=CONFIG_HELP + " Its experts are evaluated."),
    experts: list[str] = typer.Option(None, "--experts", "-e", help="Experts, instead of --config."),
    preset: str = typer.Option(None, "--preset", "-p", help=PRESET_HELP),
    fusion: str = typer.Option(
        None, "--fusion", "-f", help=f"Fusion rule: {', '.join(sorted(RULES))} (default uniform)."
    ),
    gate: str = typer.Option(
        None, "--gate", help="A trained gate folder: rule dllg (with --config, --fusion dllg takes its gate)."
    ),
    weights: str = typer.Option(None, help="static: one weight per expert, e.g. 0.3,0.7."),
    expert: str = typer.Option(None, help="single: the expert to use (name or 0-based index)."),
    tau: float = typer.Option(None, help="entropy / packllm: temperature of the weight softmax."),
    top_k: int = typer.Option(None, "--top-k", help="unite: top-k tokens per expert."),
    space: str = typer.Option(None, help="Weighted rules: fuse 'logits' or 'probs'."),
    power: float = typer.Option(None, help=POWER_HELP),
    limit: int = typer.Option(None, "--limit", min=1, help="At most this many examples per task."),
    num_fewshot: int = typer.Option(None, "--num-fewshot", help="Few-shot examples; default: the task's."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    max_length: int = typer.Option(
        None, "--max-length", help="Tokens an expert reads at once (rolling windows, truncation); 2048."
    ),
    output: Path = typer.Option(
        None, "--output", "-o", help=f"The results JSON; default {OUTPUT_DIR}/results_DATE.json."
    ),
    include_path: Path = typer.Option(None, "--include-path", help="A folder of extra task YAMLs."),
    apply_chat_template: bool = typer.Option(
        False, "--apply-chat-template", help="Render prompts with the experts' chat template."
    ),
    log_samples: bool = typer.Option(
        False, "--log-samples", help="Keep every request and answer in the JSON."
    ),
    device: str = typer.Option("auto", help="Device for every expert, or one per expert: cpu,cuda:0."),
    dtype: str = typer.Option("auto", help="auto (bf16 on GPU / native-bf16 CPUs, else fp32), bf16, fp32..."),
    backend: str = typer.Option("hf", help=BACKEND_HELP),
) -> None:
    """Evaluate the fused experts on lm-evaluation-harness tasks; print lm-eval's table, write its JSON."""
    names = task_names(tasks)
    if include_path is not None and not include_path.is_dir():
        raise DllgError(
            f"--include-path {str(include_path)!r} is not a folder: give the folder of task YAMLs"
        )
    options = rule_options_from_flags(weights, expert, tau, top_k, space, power)
    args = model_args(config, experts, fusion, gate, options, device, dtype, backend, max_length, preset)
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
        from lm_eval.utils import make_table

        import dllg.harness  # noqa: F401  (registers the model dllg)
    except ImportError as exc:
        raise DllgError(
            f"lm-evaluation-harness is not installed ({exc}): pip install 'dllg[lmeval]'"
        ) from exc

    manager = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [name for name in names if name not in manager.all_tasks]
    if unknown:
        raise DllgError(
            f"unknown lm-eval task(s) {', '.join(unknown)}: see `lm-eval ls tasks`, or add --include-path DIR"
        )
    results = lm_eval.simple_evaluate(
        model="dllg",
        model_args=args,
        tasks=names,
        num_fewshot=num_fewshot,
        batch_size=batch_size,
        limit=limit,
        task_manager=manager,
        apply_chat_template=apply_chat_template,
        log_samples=log_samples,
    )
    console.print(make_table(results), markup=False, highlight=False)
    if results.get("groups"):
        console.print(make_table(results, "groups"), markup=False, highlight=False)
    output = output or OUTPUT_DIR / f"results_{datetime.now().strftime('%Y-%m-%dT%H-%M-%S')}.json"
    write_results(results, output)
    console.print(f"results: {output}", highlight=False)
