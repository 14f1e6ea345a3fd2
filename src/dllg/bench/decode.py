"""Decode speed: each expert generating alone (its backend's own loop: HF `generate`, llama.cpp's), the
fused loop, and the fused loop's ratio to the sequential limit 1 / (sum of the experts' step times), all
measured in one run on one machine.

Step times exclude the prefill: each figure is (time of N new tokens - time of 1 new token) / (N - 1).
"""

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from dllg.decode import GenerationConfig, generate
from dllg.decode.drafting import ReferenceDrafter
from dllg.experts import Expert, ExpertPool
from dllg.fusion import make_rule

PROMPTS = [
    "Write a Python function that reverses a string.",
    "What is 17 * 23? Think step by step.",
    "Explain what a hash map is in two sentences.",
    "Write a function that checks whether a number is prime.",
    "Sort the list [5, 3, 9, 1] and explain each step.",
    "Give three uses of the zip function in Python.",
    "Compute the sum of the first 100 positive integers.",
    "Write a SQL query that counts the rows of a table named users.",
]


@dataclass
class Timing:
    step_seconds: float  # one decode step of the whole batch

    def tokens_per_second(self, batch: int) -> float:
        return batch / self.step_seconds


def step_time(run: Callable[[int], None], new_tokens: int, repeats: int) -> Timing:
    """Per-step time of `run(n)` (n new tokens per sequence), prefill subtracted; best of `repeats`."""
    run(2)  # warm-up: first-call allocations and lazy initialisation
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run(1)
        one = time.perf_counter() - start
        start = time.perf_counter()
        run(new_tokens)
        many = time.perf_counter() - start
        best = min(best, max(many - one, 1e-9) / (new_tokens - 1))
    return Timing(best)


def encode(pool: ExpertPool, batch: int) -> list[list[int]]:
    tokenizer = pool.tokenizer
    texts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    if tokenizer.chat_template:
        return [
            list(
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": t}],
                    add_generation_prompt=True,
                    tokenize=True,
                    return_dict=False,
                )
            )
            for t in texts
        ]
    return [tokenizer(t)["input_ids"] for t in texts]


def own_generate_runner(expert: Expert, prompts: list[list[int]]) -> Callable[[int], None]:
    """The expert's backend generating alone (HF `generate`, llama.cpp's own loop)."""
    return lambda new_tokens: expert.generate_alone(prompts, new_tokens)


def fused_runner(pool: ExpertPool, rule: str, prompts: list[list[int]]) -> Callable[[int], None]:
    def run(new_tokens: int) -> None:
        config = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        generate(pool, make_rule(rule), prompts, config)

    return run


def bench_decode(
    pool: ExpertPool,
    batch_sizes: tuple[int, ...] = (1, 8),
    new_tokens: int = 32,
    rule: str = "uniform",
    repeats: int = 2,
) -> Iterator[dict[str, object]]:
    """One result dict per batch size, then a summary dict with the batch gains."""
    fused_tps: dict[int, float] = {}
    hf_tps: dict[int, list[float]] = {}
    for batch in batch_sizes:
        prompts = encode(pool, batch)
        row: dict[str, object] = {"batch": batch, "rule": rule, "new_tokens": new_tokens}
        limit_step = 0.0
        hf_tps[batch] = []
        for index, expert in enumerate(pool.experts):
            timing = step_time(own_generate_runner(expert, prompts), new_tokens, repeats)
            limit_step += timing.step_seconds
            hf_tps[batch].append(timing.tokens_per_second(batch))
            row[f"expert{index}"] = expert.name
            row[f"expert{index}_dtype"] = str(expert.dtype).removeprefix("torch.")
            row[f"expert{index}_alone_tok_s"] = round(timing.tokens_per_second(batch), 2)
        fused = step_time(fused_runner(pool, rule, prompts), new_tokens, repeats)
        fused_tps[batch] = fused.tokens_per_second(batch)
        row["fused_tok_s"] = round(fused_tps[batch], 2)
        row["limit_tok_s"] = round(batch / limit_step, 2)
        row["limit_ratio"] = round(limit_step / fused.step_seconds, 3)
        row["peak_resident_gb"] = peak_resident_gb()
        yield row
    if len(batch_sizes) >= 2:
        low, high = min(batch_sizes), max(batch_sizes)
        summary: dict[str, object] = {
            "batch_gain": round(fused_tps[high] / fused_tps[low], 2),
            "gain_of": f"{high}/{low}",
        }
        for index in range(len(pool)):
            summary[f"expert{index}_alone_batch_gain"] = round(hf_tps[high][index] / hf_tps[low][index], 2)
        yield summary


def resident_gb() -> float:
    """This process's resident memory now (GB), from /proc (0 where there is none)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1e6, 2)
    except OSError:
        pass
    return 0.0


def peak_resident_gb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)


def machine_line() -> dict[str, object]:
    from dllg.experts.device import cpu_description, cpu_has_native_bf16

    return {
        "cpu": f"'{cpu_description()}'",  # quoted: the model name has spaces
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_has_native_bf16(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


def format_line(values: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())


def experts_answers(pool: ExpertPool, prompts: list[list[int]], max_new_tokens: int) -> ReferenceDrafter:
    """A reference drafter holding each expert's own greedy answer to each prompt."""
    drafter = ReferenceDrafter()
    config = GenerationConfig(max_new_tokens=max_new_tokens)
    answers = [generate(pool, make_rule("single", expert=k), prompts, config) for k in range(len(pool))]
    for i, prompt in enumerate(prompts):
        drafter.add(prompt, [own[i].token_ids for own in answers])
    return drafter


def bench_speculative(
    pool: ExpertPool,
    rule_factory: Callable[[], object],
    prompts: list[list[int]],
    batch_size: int,
    max_new_tokens: int,
    drafters: tuple[str, ...] = ("ngram",),
    draft_tokens: int = 4,
    repeats: int = 1,
) -> Iterator[dict[str, object]]:
    """The same greedy generations plain and with each drafter, timed in this run: tokens/s, the speedup,
    the ratio to the sequential limit (each expert generating alone on its backend, one after the other),
    drafted tokens kept, tokens per round, the time shares of drafting / the experts / the rule, and how
    many outputs are the same as the plain loop's. One dict per drafter, "none" first.

    `reference` drafts from each expert's own greedy answer to the prompt, generated first and not timed,
    as `dllg eval --speculate reference` does from the experts' records."""
    limit_step = sum(
        step_time(own_generate_runner(e, prompts[:batch_size]), 16, repeats).step_seconds
        for e in pool.experts
    )
    limit_tok_s = batch_size / limit_step
    objects = {"reference": experts_answers(pool, prompts, max_new_tokens)} if "reference" in drafters else {}

    def run(drafter: str) -> tuple[float, list, Counter]:
        config = GenerationConfig(max_new_tokens=max_new_tokens, speculate=drafter, draft_tokens=draft_tokens)
        best: tuple[float, list, Counter] | None = None
        for _ in range(repeats):
            timings: Counter = Counter()
            start, out = time.perf_counter(), []
            for first in range(0, len(prompts), batch_size):
                batch = prompts[first : first + batch_size]
                out += generate(
                    pool, rule_factory(), batch, config, drafter=objects.get(drafter), timings=timings
                )
            elapsed = time.perf_counter() - start
            if best is None or elapsed < best[0]:
                best = (elapsed, out, timings)
        assert best is not None
        return best

    run("none")  # warm-up
    plain_s, plain, plain_timings = run("none")
    tokens = sum(len(g.token_ids) for g in plain)
    for drafter in ("none", *drafters):
        seconds, out, timings = (plain_s, plain, plain_timings) if drafter == "none" else run(drafter)
        drafted, accepted = sum(g.drafted for g in out), sum(g.accepted for g in out)
        made = sum(len(g.token_ids) for g in out)
        spent = sum(timings.values()) or 1.0
        yield {
            "batch": batch_size,
            "speculate": drafter,
            "draft_tokens": draft_tokens if drafter != "none" else 0,
            "prompts": len(prompts),
            "tokens": made,
            "tok_s": round(made / seconds, 2),
            "speedup": round(plain_s / seconds * made / tokens, 3),
            "limit_tok_s": round(limit_tok_s, 2),
            "limit_ratio": round(made / seconds / limit_tok_s, 3),
            "accepted_share": round(accepted / max(drafted, 1), 3),
            "tokens_per_round": round(made / max(made - accepted, 1), 3),
            "share_drafting": round(timings["drafting"] / spent, 3),
            "share_experts": round(timings["experts"] / spent, 3),
            "share_rule": round(timings["rule"] / spent, 3),
            "same_tokens": sum(a.token_ids == b.token_ids for a, b in zip(plain, out, strict=True)),
        }


def bench_collect(
    pool: ExpertPool, examples: list, batch_size: int, max_new_tokens: int, folder: str
) -> dict[str, object]:
    """`dllg collect`'s own path (each expert's greedy answers, verified, appended to a label file) timed on
    these examples into a fresh file in `folder`: answers/s and generated tokens/s of the whole collection."""
    from pathlib import Path

    from dllg.jsonl import read_records
    from dllg.pipeline.collect import collect_labels

    out = Path(folder) / "labels.jsonl"
    config = GenerationConfig(max_new_tokens=max_new_tokens)
    start = time.perf_counter()
    collect_labels(pool, examples, out, config, batch_size=batch_size)
    seconds = time.perf_counter() - start
    records = list(read_records(out))
    tokens = sum(r["tokens"] for r in records)
    return {
        "answers": len(records),
        "tokens": tokens,
        "seconds": round(seconds, 1),
        "answers_per_min": round(60 * len(records) / seconds, 2),
        "tok_s": round(tokens / seconds, 2),
        "truncated": sum(r["finish"] == "length" for r in records),
    }
