"""`dllg generate`: fuse experts on a prompt and print the answer (optionally each token's weights)."""

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from dllg.cli.common import BACKEND_HELP, PRESET_HELP, RAY_HELP, console, user_errors
from dllg.config import rule_and_gate
from dllg.errors import DllgError
from dllg.fusion import RULES
from dllg.fusion.base import make_rule, parse_weights, rule_options
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
    fusions: list[str] = typer.Option(
        None,
        "--fusion",
        "-f",
        help=f"Fusion rule: {', '.join(sorted(RULES))}. Several (repeated, or uniform,entropy,dllg) compare "
        "the rules on the same prompts, decoding together (greedy).",
    ),
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
    names = [name for value in fusions or [] for name in value.split(",") if name]
    if len(names) > 1 and (temperature != 0 or speculate not in ("auto", "none")):
        raise DllgError(
            "several --fusion rules decode together greedily: drop --temperature and --speculate "
            "(or give one --fusion)"
        )
    experts, rules = experts_and_rules(experts, preset, gate, names, options)
    devices = device.split(",") if "," in device else device
    dtypes = dtype.split(",") if "," in dtype else dtype
    with console.status(f"loading {len(experts)} experts"):
        backends = backend.split(",") if "," in backend else backend
        ensemble = Ensemble(experts, device=devices, dtype=dtypes, backend=backends, ray=ray)
    if len(rules) == 1:
        [(fusion, rule_kwargs)] = rules.items()
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
            **rule_kwargs,
        )
        answers = {fusion: results}
    else:
        built = [make_rule(name, **kwargs) for name, kwargs in rules.items()]
        answers = ensemble.compare(
            texts, built, chat=not raw, batch_size=batch_size, max_new_tokens=max_new_tokens, stop=stop or ()
        )
    tokenizer = ensemble.pool.tokenizer
    labels = [
        "-".join(([str(i + 1)] if len(texts) > 1 else []) + ([fusion] if len(answers) > 1 else []))
        for i in range(len(texts))
        for fusion in answers
    ]
    pages = iter(html_paths(html, labels)) if html is not None else None
    for i, prompt in enumerate(texts):
        for fusion, results in answers.items():
            if len(texts) > 1 or len(answers) > 1:
                heading = [prompt[:80]] if len(texts) > 1 else []
                console.rule(" · ".join(heading + ([fusion] if len(answers) > 1 else [])), style="dim")
            print_generation(results[i], tokenizer, show_weights)
            if pages is not None:
                path = next(pages)
                write_generation_html(path, prompt, results[i], tokenizer, fusion)
                console.print(f"wrote {path}", highlight=False)


def experts_and_rules(
    experts: list[str], preset: str | None, gate: str | None, names: list[str], options: dict[str, object]
) -> tuple[list[str], dict[str, dict]]:
    """The experts to load and each rule to run with its options ({rule: options}, the gate among them)."""
    if len(names) <= 1:
        choice = choose_experts(experts, preset, names[0] if names else None, gate)
        fusion, rule_gate = rule_and_gate(choice.fusion, choice.gate, None)
        gated = {"gate": rule_gate} if rule_gate is not None else {}
        return choice.experts, {fusion: {**choice.options, **options, **gated}}
    rules = compared_rules(names, options)
    choice = choose_experts(experts, preset, "dllg" if "dllg" in rules else names[0], gate)
    if "dllg" in rules:
        rule_gate = rule_and_gate("dllg", choice.gate, None)[1]
        rules["dllg"] = {**choice.options, **rules["dllg"], "gate": rule_gate}
    elif gate is not None:
        raise DllgError("--gate fuses with rule dllg: add dllg to the --fusion rules (or drop --gate)")
    return choice.experts, rules


def compared_rules(names: list[str], options: dict[str, object]) -> dict[str, dict]:
    """Each compared rule with the flags it takes: a flag goes to every named rule that takes it (--tau to
    entropy and packllm alike); a flag that none of them takes is an error."""
    unknown = sorted(set(names) - set(RULES))
    if unknown:
        raise DllgError(f"unknown fusion rule {unknown[0]!r}: choose from {', '.join(sorted(RULES))}")
    if len(set(names)) != len(names):
        raise DllgError(f"--fusion {','.join(names)}: name each rule once")
    unused = sorted(k for k in options if not any(k in rule_options(name) for name in names))
    if unused:
        raise DllgError(f"none of the rules {', '.join(names)} takes {', '.join(unused)}: drop it")
    return {name: {k: v for k, v in options.items() if k in rule_options(name)} for name in names}


def print_generation(result: "Generation", tokenizer, show_weights: bool) -> None:
    console.print(result.text, markup=False, highlight=False)
    if show_weights:
        console.print(weights_table(result, tokenizer))
        mean = result.weights.mean(0).tolist()
        summary = ", ".join(f"{n}={w:.3f}" for n, w in zip(result.expert_names, mean, strict=True))
        console.print(f"mean weights: {summary}; finish: {result.finish_reason}", highlight=False)


def html_paths(path: Path, labels: list[str]) -> list[Path]:
    """One page per answer: answer.html for one, else answer-LABEL.html (answer-2-entropy.html: the second
    prompt's answer by rule entropy)."""
    if labels == [""]:
        return [path]
    return [path.with_name(f"{path.stem}-{label}{path.suffix or '.html'}") for label in labels]


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
