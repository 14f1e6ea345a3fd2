"""`dllg bench ...`: benchmark scripts that print `key=value` lines."""

import itertools

import typer

from dllg.cli.common import console, user_errors
from dllg.errors import DllgError

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
    backend: str = typer.Option(
        "hf", help="hf, llamacpp, or both in one run (llamacpp,hf): then their fused speeds are compared."
    ),
) -> None:
    """Tokens/s of each expert generating alone, of the fused loop, and its ratio to the sequential limit,
    per backend; with several backends, the ratio between their fused loops, all from this one run."""
    from dllg.bench.decode import bench_decode, format_line, machine_line, resident_gb
    from dllg.experts import ExpertPool

    names = list(experts) if experts else default_experts()
    backends = backend.split(",")
    if not names and backends != ["hf"]:
        raise DllgError("the llama.cpp backend needs GGUF experts: fetch the real pair or give --experts")
    sizes = tuple(int(b) for b in batch_sizes.split(","))
    print(format_line(machine_line()), flush=True)
    fused: dict[str, dict[int, float]] = {}
    for name in backends:
        if names:
            from dllg.experts.loading import load_experts

            pool = ExpertPool(load_experts(names, device=device, dtype=dtype, backend=name))
        else:
            from dllg.tiny import tiny_pool

            console.print(
                "# the real pair is not fetched: timing tiny random models (`dllg models fetch ...`)"
            )
            pool = tiny_pool(dtype=dtype, device=device)
        print(format_line({"backend": name, "resident_gb_after_load": resident_gb()}), flush=True)
        fused[name] = {}
        for line in bench_decode(pool, sizes, new_tokens, rule, repeats):
            line = {"backend": name, **line}
            if "fused_tok_s" in line:
                fused[name][int(line["batch"])] = float(line["fused_tok_s"])
            print(format_line(line), flush=True)
        del pool
    for a, b in itertools.pairwise(backends):
        for size in sizes:
            ratio = round(fused[a][size] / fused[b][size], 2)
            print(format_line({"batch": size, f"fused_{a}_over_{b}": ratio}), flush=True)


@app.command("collect")
@user_errors
def collect_command(
    experts: list[str] = typer.Option(
        None, "--experts", "-e", help="Default: the real pair if fetched, else the world's experts."
    ),
    backend: str = typer.Option("llamacpp,hf", help="Backends to time in this run, in order."),
    task: str = typer.Option("gsm_symbolic", "--task", help="Training prompts of this task."),
    split: str = typer.Option("train", "--split"),
    limit: int = typer.Option(8, "--limit"),
    batch_size: int = typer.Option(8, "--batch-size"),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", "-n"),
    dtype: str = typer.Option("auto", help="HF compute dtype (auto: bf16 on native-bf16 CPUs)."),
) -> None:
    """Label collection (dllg collect's path: generate, verify, append) on each backend in one run:
    answers/min and tokens/s of each, and their ratio."""
    import tempfile

    from dllg.bench.decode import bench_collect, format_line, machine_line
    from dllg.experts import ExpertPool
    from dllg.experts.loading import load_experts
    from dllg.pipeline.collect import TaskExample
    from dllg.tasks import get_task

    names = list(experts) if experts else (default_experts() or ["world:arith", "world:code"])
    examples = [TaskExample(task, split, e) for e in get_task(task).load(split, limit=limit)]
    print(format_line(machine_line()), flush=True)
    speeds: list[tuple[str, float]] = []
    for name in backend.split(","):
        pool = ExpertPool(load_experts(names, dtype=dtype, backend=name))
        dtype_name = str(pool.experts[0].dtype).removeprefix("torch.")
        with tempfile.TemporaryDirectory() as folder:
            line = bench_collect(pool, examples, batch_size, max_new_tokens, folder)
        speeds.append((name, float(line["tok_s"])))
        print(format_line({"backend": name, "dtype": dtype_name, "task": task, **line}), flush=True)
        del pool
    for (a, fast), (b, slow) in itertools.pairwise(speeds):
        print(format_line({f"collect_{a}_over_{b}": round(fast / slow, 2)}), flush=True)


@app.command("gate")
@user_errors
def gate_command(
    experts: list[str] = typer.Option(
        None, "--experts", "-e", help="Default: the real pair if fetched, else the world's experts."
    ),
    batch_sizes: str = typer.Option("1,8", "--batch-sizes"),
    aux_layers: str = typer.Option(
        "all,4,2,1", "--aux-layers", help="aux-LM gates: layers of the aux LM kept (all: every layer)."
    ),
    steps: int = typer.Option(32, "--steps", help="Gate steps per timing."),
    repeats: int = typer.Option(2, "--repeats"),
    backend: str = typer.Option("hf", help="The experts' backend: hf or llamacpp."),
    dtype: str = typer.Option("auto", help="The experts' compute dtype (hf); gates run in fp32."),
) -> None:
    """Each gate variant's cost per decoding step as a fraction of the experts' step, in one run."""
    from dllg.bench.decode import format_line, machine_line
    from dllg.bench.gate import bench_gate_costs
    from dllg.experts import ExpertPool
    from dllg.experts.loading import load_experts
    from dllg.gate import GATES

    names = list(experts) if experts else (default_experts() or ["world:arith", "world:code"])
    variants: list[tuple[str, dict]] = []
    for variant in sorted(GATES):
        if not variant.endswith("aux_lm"):
            variants.append((variant, {}))
            continue
        for layers in aux_layers.split(","):
            variants.append((variant, {} if layers == "all" else {"aux_layers": int(layers)}))
    pool = ExpertPool(load_experts(names, dtype=dtype, backend=backend))
    print(format_line(machine_line()), flush=True)
    sizes = tuple(int(b) for b in batch_sizes.split(","))
    for line in bench_gate_costs(pool, variants, sizes, steps, repeats):
        print(format_line({"backend": backend, **line}), flush=True)


@app.command("gate-train")
@user_errors
def gate_train_command(
    experts: list[str] = typer.Option(
        None, "--experts", "-e", help="Default: the real pair if fetched, else the world's experts."
    ),
    variants: str = typer.Option("mlp,cross_attn,lowrank_aux_lm", "--variants"),
    aux_layers: int = typer.Option(4, "--aux-layers", help="aux-LM gates: layers of the aux LM kept."),
    precisions: str = typer.Option("fp32,bf16", "--precisions", help="train.precision values to time."),
    batch_size: int = typer.Option(32, "--batch-size", help="Answers per step (train.batch_size)."),
    tokens: int = typer.Option(200, "--tokens", help="Tokens per answer."),
    steps: int = typer.Option(3, "--steps", help="Timed steps per setting (after one warm-up)."),
    backend: str = typer.Option("hf", help="The experts' backend (only their widths are read)."),
) -> None:
    """Seconds per gate training step, per variant and train.precision, on random states of the experts'
    widths (the aux LM is the smallest expert, as `dllg train` picks it)."""
    from dllg.bench.decode import format_line, machine_line
    from dllg.bench.gate import bench_gate_training
    from dllg.experts import ExpertPool
    from dllg.experts.loading import load_experts
    from dllg.pipeline.run import smallest_expert_source

    names = list(experts) if experts else (default_experts() or ["world:arith", "world:code"])
    pool = ExpertPool(load_experts(names, backend=backend))
    sizes = [e.hidden_size for e in pool.experts]
    chosen = [(v, {"aux_layers": aux_layers} if v.endswith("aux_lm") else {}) for v in variants.split(",")]
    print(format_line(machine_line()), flush=True)
    lines = bench_gate_training(
        pool.names,
        sizes,
        smallest_expert_source(pool),
        chosen,
        tuple(precisions.split(",")),  # type: ignore[arg-type]
        batch_size,
        tokens,
        steps,
    )
    for line in lines:
        print(format_line(line), flush=True)


@app.command("speculative")
@user_errors
def speculative_command(
    experts: list[str] = typer.Option(["world:arith", "world:code"], "--experts", "-e"),
    rule: str = typer.Option("uniform", "--rule", help="A fusion rule (dllg with --gate)."),
    gate: str = typer.Option(None, "--gate", help="A gate folder or world:gate: rule dllg."),
    task: str = typer.Option("world-mixed", "--task", help="Prompts from this task's evaluation split."),
    limit: int = typer.Option(20, "--limit"),
    batch_sizes: str = typer.Option("1,4", "--batch-sizes"),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens", "-n"),
    speculate: str = typer.Option(
        "ngram,expert",
        "--speculate",
        help="Drafters to time: ngram, expert, reference (from each expert's own answer, made first).",
    ),
    draft_tokens: int = typer.Option(4, "--draft-tokens"),
    repeats: int = typer.Option(1, "--repeats", help="Best of this many timings of each."),
    backend: str = typer.Option("hf", help="hf or llamacpp."),
    dtype: str = typer.Option("auto", help="Compute dtype (hf): auto, fp32, bf16, float64."),
) -> None:
    """Greedy generation plain and with each drafter in one run, on a task's prompts: tokens/s, ratio to
    the sequential limit, drafts kept, tokens per round, time shares, outputs the same as the plain loop's."""
    from dllg.bench.decode import bench_speculative, format_line, machine_line
    from dllg.decode.drafting import make_drafter
    from dllg.decode.prompts import encode_prompt
    from dllg.experts import ExpertPool
    from dllg.experts.loading import load_experts
    from dllg.fusion import make_rule
    from dllg.tasks import get_task

    drafters = tuple(d.strip() for d in speculate.split(",") if d.strip() and d.strip() != "none")
    for name in drafters:
        make_drafter(name)  # an unknown drafter fails before any model loads
    pool = ExpertPool(load_experts(list(experts), dtype=dtype, backend=backend))
    examples = get_task(task).load(limit=limit)
    prompts = [encode_prompt(pool.tokenizer, e.messages) for e in examples]

    def factory():
        return make_rule("dllg", gate=gate) if gate else make_rule(rule)

    print(format_line(machine_line()), flush=True)
    dtype_name = str(pool.experts[0].dtype).removeprefix("torch.")
    where = {"backend": backend, "dtype": dtype_name, "rule": "dllg" if gate else rule, "task": task}
    for size in (int(b) for b in batch_sizes.split(",")):
        for line in bench_speculative(
            pool, factory, prompts, size, max_new_tokens, drafters, draft_tokens, repeats
        ):
            print(format_line(where | line), flush=True)


@app.command("ray")
@user_errors
def ray_command(
    experts: list[str] = typer.Option(
        None, "--experts", "-e", help="Default: the real pair if fetched, else tiny:0 tiny:1."
    ),
    batch_sizes: str = typer.Option("1,8", "--batch-sizes", help="Comma-separated batch sizes."),
    new_tokens: int = typer.Option(16, "--new-tokens", help="Tokens per sequence for each timing."),
    rule: str = typer.Option("uniform", "--rule"),
    repeats: int = typer.Option(2, "--repeats", help="Best of this many timings."),
    dtype: str = typer.Option("auto", help="Compute dtype of every expert (auto: per device)."),
    backend: str = typer.Option("hf", help="hf or llamacpp, for every expert."),
    ray: str = typer.Option("local", "--ray", help="The Ray cluster: local (start one here) or an address."),
) -> None:
    """The fused step with every expert in its own one-CPU Ray actor against the same experts in this
    process (same run): each actor's own compute per step, and the overhead the round trip adds."""
    from dllg.bench.decode import format_line, machine_line
    from dllg.bench.placement import bench_ray
    from dllg.experts.ray_placement import ensure_ray

    names = list(experts) if experts else (default_experts() or ["tiny:0", "tiny:1"])
    ensure_ray(ray)
    print(format_line(machine_line()), flush=True)
    sizes = tuple(int(b) for b in batch_sizes.split(","))
    for row in bench_ray(names, backend, dtype, sizes, new_tokens, rule, repeats):
        print(format_line(row), flush=True)
