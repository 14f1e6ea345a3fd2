"""`dllg generate`: fuse experts on a prompt and print the answer (optionally each token's weights)."""

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from dllg.cli.common import BACKEND_HELP, PRESET_HELP, RAY_HELP, console, user_errors
from dllg.config import rule_and_gate
from dllg.errors import DllgError
from dllg.fusion import RULES
from dllg.fusion.base import parse_weights
from dllg.presets import choose_experts

if TYPE_CHECKING:  # the decode loop imports transformers: seconds that light commands should not pay
    from dllg.decode import Generation


POWER_HELP = "dllg: raise the gate's weights to this power (rescaled): >1 sharpens, inf hands over."


def rule_options_from_flags(
    weights: str | None,
    expert: str | None,
    tau: float | None,
    top_k: int | None,
    space: str | None,
    power: float | None = None,
) -> dict[str, object]:
    """Only the flags the user set: the rule itself says which it accepts."""
    parsed = parse_weights(weights, "--weights 0.3,0.7") if weights is not None else None
    given = {"weights": parsed, "expert": expert, "tau": tau, "top_k": top_k, "space": space, "power": power}
    return {k: v for k, v in given.items() if v is not None}


def weights_table(generation: "Generation", tokenizer) -> Table:
    table = Table(title="expert weights per token", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("token")
    for name in generation.expert_names:
        table.add_column(name, justify="right")
    for step, (token, weights) in enumerate(zip(generation.token_ids, generation.weights, strict=True)):
        piece = tokenizer.decode([token])
        table.add_row(str(step), repr(piece), *(f"{w:.3f}" for w in weights.tolist()))
    return table


def split_trailing_prompt(experts: list[str], prompts: list[str]) -> tuple[list[str], list[str]]:
    """`--experts A B "a prompt"` puts the prompt among the experts: a value with whitespace that is not
    an existing path can be no model name (hub ids and catalog names have none), so it is the prompt."""
    if not prompts:
        while len(experts) > 1 and any(c.isspace() for c in experts[-1]) and not Path(experts[-1]).exists():
            prompts.insert(0, experts.pop())
    return experts, prompts


@user_errors
def generate_command(
    prompts: list[str] = typer.Argument(None, help="Prompt(s); put them after the options (or after --)."),
    experts: list[str] = typer.Option(
        None, "--experts", "-e", help="Experts: catalog name, folder, .gguf or hub id."
    ),
    preset: str = typer.Option(None, "--preset", "-p", help=PRESET_HELP),
    fusion: str = typer.Option(None, "--fusion", "-f", help=f"Fusion rule: {', '.join(sorted(RULES))}."),
    gate: str = typer.Option(None, "--gate", help="A trained gate folder: fuse with rule dllg."),
    weights: str = typer.Option(None, help="static: one weight per expert, e.g. 0.3,0.7."),
    expert: str = typer.Option(None, help="single: the expert to use (name or 0-based index)."),
    tau: float = typer.Option(None, help="entropy / packllm: temperature of the weight softmax."),
    top_k: int = typer.Option(None, "--top-k", help="unite: top-k tokens per expert."),
    space: str = typer.Option(None, help="Weighted rules: fuse 'logits' or 'probs'."),
    power: float = typer.Option(None, help=POWER_HELP),
    prompts_file: Path = typer.Option(None, help="A text file with one prompt per line."),
    raw: bool = typer.Option(False, "--raw", help="Do not apply the experts' chat template."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", "-n"),
    temperature: float = typer.Option(0.0, help="0 = greedy."),
    top_p: float = typer.Option(1.0, "--top-p"),
    seed: int = typer.Option(None),
    stop: list[str] = typer.Option(None, "--stop", help="Stop string (repeatable)."),
    batch_size: int = typer.Option(8, "--batch-size"),
    device: str = typer.Option("auto", help="Device for every expert, or one per expert: cpu,cuda:0."),
    dtype: str = typer.Option("auto", help="auto (bf16 on GPU / native-bf16 CPUs, else fp32), bf16, fp32..."),
    backend: str = typer.Option("hf", help=BACKEND_HELP),
    ray: str = typer.Option(None, "--ray", help=RAY_HELP),
    speculate: str = typer.Option(
        "auto",
        help="Speculative decoding, the same answers: ngram (drafts from the prompt and output), expert (the "
        "smallest expert drafts), none, or auto (ngram where it was measured to pay: greedy, one prompt at "
        "a time, HF experts; else none).",
    ),
    draft_tokens: int = typer.Option(4, "--draft-tokens", help="Drafted tokens per step, at most."),
    show_weights: bool = typer.Option(
        False, "--show-weights", help="Print each token with its expert weights."
    ),
    html: Path = typer.Option(
        None, "--html", help="Write the answer as a page: tokens coloured by expert, weights plotted."
    ),
) -> None:
    """Generate with several experts fused token by token."""
    from dllg.ensemble import Ensemble

    experts, texts = split_trailing_prompt(list(experts or []), list(prompts or []))
    if prompts_file is not None:
        if not prompts_file.is_file():
            raise DllgError(
                f"no such prompts file {str(prompts_file)!r}: give a text file, one prompt per line"
            )
        texts += [line for line in prompts_file.read_text().splitlines() if line.strip()]
    if not texts:
        raise DllgError(
            'no prompt given: put it after the options, e.g. --fusion uniform "PROMPT" (or after --)'
        )
    options = rule_options_from_flags(weights, expert, tau, top_k, space, power)
    choice = choose_experts(experts, preset, fusion, gate)
    experts = choice.experts
    fusion, gate = rule_and_gate(choice.fusion, choice.gate, None)
    if gate is not None:
        options["gate"] = gate
    devices = device.split(",") if "," in device else device
    dtypes = dtype.split(",") if "," in dtype else dtype
    with console.status(f"loading {len(experts)} experts"):
        backends = backend.split(",") if "," in backend else backend
        ensemble = Ensemble(experts, device=devices, dtype=dtypes, backend=backends, ray=ray)
    results = ensemble.generate(
        texts,
        fusion,
        chat=not raw,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        stop=stop or (),
        speculate=speculate,
        draft_tokens=draft_tokens,
        **options,
    )
    for prompt, result in zip(texts, results, strict=True):
        if len(texts) > 1:
            console.rule(prompt[:80])
        console.print(result.text, markup=False, highlight=False)
        if show_weights:
            console.print(weights_table(result, ensemble.pool.tokenizer))
            mean = result.weights.mean(0).tolist()
            summary = ", ".join(f"{n}={w:.3f}" for n, w in zip(result.expert_names, mean, strict=True))
            console.print(f"mean weights: {summary}; finish: {result.finish_reason}", highlight=False)
    if html is not None:
        for path, prompt, result in zip(html_paths(html, len(texts)), texts, results, strict=True):
            write_generation_html(path, prompt, result, ensemble.pool.tokenizer, fusion)
            console.print(f"wrote {path}", highlight=False)


def html_paths(path: Path, count: int) -> list[Path]:
    """One page per prompt: answer.html, or answer-1.html, answer-2.html, ... for several."""
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix or '.html'}") for i in range(1, count + 1)]


def write_generation_html(path: Path, prompt: str, result: "Generation", tokenizer, fusion: str) -> None:
    from dllg.view import write_answer_html
    from dllg.view.tokens import token_pieces

    write_answer_html(
        path,
        token_pieces(tokenizer, result.token_ids),
        result.weights.tolist(),
        result.expert_names,
        title=f"dllg generate ({fusion})",
        prompt=prompt,
        meta={"method": fusion, "finish": result.finish_reason},
    )
