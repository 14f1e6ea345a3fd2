"""Exact speculative decoding: with a drafter the loop gives token-for-token the plain loop's output (and the
same per-token weights) for every rule and every gate variant (the aux-LM gates roll their own cache back),
over 52 prompts at batch 1 and 4, in float64 on tiny models; rows finish at different steps (a stop string)
and drafts are really kept and refused."""

import pytest
import torch
from test_loop_matrix import HIDDEN, build_rule  # tests/decode/test_loop_matrix.py

from dllg.decode import GenerationConfig, generate
from dllg.decode.drafting import Drafter, NgramDrafter, ReferenceDrafter, make_drafter
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.fusion import RULES, make_rule
from dllg.gate import GATES
from dllg.tiny import tiny_expert, tiny_tokenizer

WORDS = ["def", "add", "(a, b):", "return", "a + b", "Hello", "world", "answer", "is", "42", "x", "="]
# Repetitive prompts give the n-gram drafter something to find; random tiny models also repeat themselves.
PROMPTS = [
    " ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(3 + i % 6)) * (1 + i % 3) for i in range(52)
]
CONFIG = GenerationConfig(max_new_tokens=14, stop=("e", "t", "r"))  # rows stop after 1 to 14 tokens
ROLLBACK_VARIANTS = sorted(GATES)  # every variant, the aux-LM gates with their own cache too


def cases() -> list[tuple[str, str | None]]:
    return [
        (name, variant)
        for name in sorted(RULES)
        for variant in (ROLLBACK_VARIANTS if name == "dllg" else [None])
    ]


@pytest.fixture(scope="module")
def pool() -> ExpertPool:
    tok = tiny_tokenizer()
    sizes = HIDDEN[2]
    return ExpertPool(
        [tiny_expert(40 + i, hidden=h, dtype=torch.float64, tokenizer=tok) for i, h in enumerate(sizes)]
    )


def in_batches(pool, rule_factory, prompts, size, **kwargs):
    out = []
    for start in range(0, len(prompts), size):
        out += generate(pool, rule_factory(), prompts[start : start + size], CONFIG, **kwargs)
    return out


class ReplayDrafter(Drafter):
    """Drafts the plain loop's own continuation, wrong on every third token, shifted by the prompt's index:
    drafts are accepted often and rejected part-way at different places in different rows, so rows that go
    on roll back different counts in one step."""

    name = "replay"

    def __init__(self, prompts: list[list[int]], outputs: list[list[int]]) -> None:
        self.known = [(p, o) for p, o in zip(prompts, outputs, strict=True)]

    def draft(self, prompt: list[int], output: list[int], count: int) -> list[int]:
        context = prompt + output
        for shift, (known, answer) in enumerate(self.known):
            done = len(context) - len(known)
            if context[: len(known)] == known and context[len(known) :] == answer[:done]:
                follow = answer[done : done + count]
                return [t if (done + i + shift) % 3 else (t + 1) % 300 for i, t in enumerate(follow)]
        return []


@pytest.mark.parametrize(("name", "variant"), cases())
def test_speculative_output_equals_the_plain_loop(pool, name, variant):
    gates: dict = {}
    prompts = [pool.tokenizer(p)["input_ids"] for p in PROMPTS]
    factory = lambda: build_rule(name, variant, pool, gates)  # noqa: E731
    plain = in_batches(pool, factory, prompts, 4)
    assert len({len(g.token_ids) for g in plain}) > 2  # rows stop at different steps
    replay = ReplayDrafter(prompts, [g.token_ids for g in plain])
    for drafter, size in (("ngram", 1), ("ngram", 4), (replay, 1), (replay, 4), ("expert", 1), ("expert", 4)):
        fast = in_batches(pool, factory, prompts, size, drafter=drafter, draft_tokens=4)
        for a, b in zip(plain, fast, strict=True):
            assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
            torch.testing.assert_close(a.weights, b.weights, atol=1e-6, rtol=1e-6)
        if drafter in (replay, "expert"):  # drafts were kept and refused, row by row
            accepted, drafted = sum(g.accepted for g in fast), sum(g.drafted for g in fast)
            assert 0 < accepted < drafted


@pytest.mark.parametrize(("name", "variant"), [("uniform", None), ("dllg", "lowrank_aux_lm")])
def test_drafting_from_other_rules_answers_gives_the_plain_loops_output(pool, name, variant):
    """What `dllg eval --speculate reference` does: each expert's own answer and another rule's answer to
    the same prompt as references; the answers agree in part, so drafts are kept and refused."""
    prompts = [pool.tokenizer(p)["input_ids"] for p in PROMPTS[:16]]
    factory = lambda: build_rule(name, variant, pool, {})  # noqa: E731
    plain = in_batches(pool, factory, prompts, 4)
    drafter = ReferenceDrafter()
    others = [lambda k=k: make_rule("single", expert=k) for k in range(len(pool))]
    others.append(lambda: build_rule("majority", None, pool, {}))
    answers = [[g.token_ids for g in in_batches(pool, other, prompts, 4)] for other in others]
    for i, prompt in enumerate(prompts):
        drafter.add(prompt, [a[i] for a in answers])
    fast = in_batches(pool, factory, prompts, 4, drafter=drafter, draft_tokens=6)
    for a, b in zip(plain, fast, strict=True):
        assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
        torch.testing.assert_close(a.weights, b.weights, atol=1e-6, rtol=1e-6)
    accepted, drafted = sum(g.accepted for g in fast), sum(g.drafted for g in fast)
    assert 0 < accepted < drafted


def test_drafts_the_continuation_of_the_last_tokens_earlier_occurrence():
    drafter = NgramDrafter()
    assert drafter.draft([1, 2, 3, 4, 9], [2, 3], 2) == [4, 9]  # "2 3" was followed by "4 9"
    assert drafter.draft([1, 2], [3], 2) == []  # nothing repeats
    assert drafter.draft([7], [7], 3) == [7]


def test_reference_drafts_from_other_answers_to_the_same_prompt():
    drafter = ReferenceDrafter()
    prompt, other = [5, 6, 7], [9, 9, 9]
    drafter.add(prompt, [[1, 2, 3, 4, 5, 6], [1, 2, 8, 4, 1, 2, 3, 0], []])
    # an answer that begins with the whole output so far: its continuation, whatever the suffixes say
    assert drafter.draft(prompt, [1, 2], 3) == [3, 4, 5]
    assert drafter.draft(prompt, [1, 2, 8], 9) == [4, 1, 2, 3, 0]
    # no answer begins so: the output's last tokens found in an answer, nearest the output's length
    assert drafter.draft(prompt, [7, 1, 2], 2) == [3, 4]  # "1 2" ends at 2 and 6; the output is 3 long
    assert drafter.draft(prompt, [7, 7, 7, 7, 7, 1, 2], 2) == [3, 0]
    assert drafter.draft(prompt, [4, 2, 3, 4], 2) == [5, 6]  # the longest suffix first: "2 3 4", then "3 4"
    # one shared token is too little (min_ngram 2); then the prompt and output, as ngram
    assert drafter.draft(prompt, [0, 6], 2) == []
    assert drafter.draft(prompt, [6, 7, 0, 6, 7], 2) == [0, 6]
    # answers to another prompt are not used
    assert drafter.draft(other, [1, 2], 3) == []
    assert ReferenceDrafter().draft(prompt, [1, 2], 3) == []


def test_what_speculation_refuses(pool):
    prompts = [pool.tokenizer("Hello world")["input_ids"]]
    stuck = build_rule("uniform", None, pool, {})
    stuck.can_roll_back = False  # a rule whose state cannot undo positions
    with pytest.raises(DllgError, match="cannot roll its state back per row yet"):
        generate(pool, stuck, prompts, CONFIG, drafter="ngram")
    with pytest.raises(DllgError, match="unknown drafter 'oracle'"):
        make_drafter("oracle")
    # auto never speculates where it cannot: the plain loop's answer
    plain = generate(pool, build_rule("uniform", None, pool, {}), prompts, CONFIG)[0]
    auto = generate(pool, stuck, prompts, CONFIG, drafter="auto")[0]
    assert auto.token_ids == plain.token_ids and auto.drafted == 0


def test_auto_speculates_only_where_it_was_measured_to_pay(pool):
    from dllg.decode.drafting import NoDrafter

    auto = make_drafter("auto")
    assert auto.resolve(["hf", "llamacpp"]).name == "none" and isinstance(
        auto.resolve(["llamacpp"]), NoDrafter
    )
    assert auto.resolve(["hf", "hf"]).name == "expert" and auto.resolve(["hf", "hf"]).greedy_only
    assert auto.resolve(["hf"]).name == "ngram" and auto.resolve(["hf"]).max_rows == 1
    prompts = [pool.tokenizer(p)["input_ids"] for p in PROMPTS[:12]]
    factory = lambda: build_rule("uniform", None, pool, {})  # noqa: E731
    plain = in_batches(pool, factory, prompts, 4, drafter="none")
    alone = in_batches(pool, factory, prompts, 1, drafter="auto")
    batched = in_batches(pool, factory, prompts, 4, drafter="auto")
    assert sum(g.drafted for g in alone) > 0 and sum(g.drafted for g in batched) > 0  # greedy on HF: drafts
    assert [g.token_ids for g in alone] == [g.token_ids for g in batched] == [g.token_ids for g in plain]
    sampled = GenerationConfig(max_new_tokens=14, temperature=0.8, seed=3)
    assert all(g.drafted == 0 for g in generate(pool, factory(), prompts[:1], sampled, drafter="auto"))
    # one expert alone: n-grams, one sequence at a time
    single = lambda: make_rule("single", expert=0)  # noqa: E731
    assert sum(g.drafted for g in in_batches(pool, single, prompts, 1, drafter="auto")) > 0
    assert sum(g.drafted for g in in_batches(pool, single, prompts[:2], 2, drafter="none")) == 0


def test_the_cli_drafts_and_prints_the_same_answer():
    from typer.testing import CliRunner

    from dllg.cli.common import expand_multi_value_options
    from dllg.cli.main import app

    # float64: the same tokens exactly (bf16 rounds a drafted multi-token pass differently from single
    # steps, so a near-tie may flip: it did with oneDNN's AMX kernels on a Xeon)
    args = [
        "generate",
        "--experts",
        "tiny:0",
        "tiny:1",
        "--fusion",
        "uniform",
        "-n",
        "12",
        "--dtype",
        "float64",
    ]
    runner = CliRunner()
    plain = runner.invoke(app, expand_multi_value_options([*args, "def add(a, b): return a + b"]))
    fast = runner.invoke(
        app, expand_multi_value_options([*args, "--speculate", "ngram", "def add(a, b): return a + b"])
    )
    assert plain.exit_code == fast.exit_code == 0, fast.output
    assert fast.output == plain.output
    bad = runner.invoke(app, expand_multi_value_options([*args, "--speculate", "psychic", "Hello"]))
    assert bad.exit_code == 1 and "unknown drafter 'psychic'" in bad.output


class ConstantDrafter(Drafter):
    """Proposes the same token at every position: a draft the fused distribution keeps only sometimes."""

    name = "constant"

    def __init__(self, token: int) -> None:
        self.token = token

    def draft(self, prompt: list[int], output: list[int], count: int) -> list[int]:
        return [self.token] * count


def test_sampling_with_drafts_keeps_the_fused_distribution(pool):
    """Many seeded samples of the first three tokens, plain and with drafts: the same distribution of
    tokens 2 and 3 (where the drafts are checked) by a chi-square test. Redrawing a refused position from
    the full distribution (the rejection rule's correction removed) puts measurably more mass on the
    drafted token, and the same test sees it."""
    from scipy.stats import chi2_contingency

    import dllg.decode.loop as loop

    rule = build_rule("entropy", None, pool, {})
    prompt = pool.tokenizer("Hello world answer")["input_ids"]
    config = GenerationConfig(max_new_tokens=3, temperature=0.15, top_p=0.95, seed=11)
    rows = 3000
    plain = generate(pool, rule, [prompt] * rows, config)

    def counts(generations, position):
        tokens = torch.tensor([g.token_ids[position] for g in generations if len(g.token_ids) > position])
        return torch.bincount(tokens, minlength=pool.vocab_size)

    def same_distribution_p(a, b, position):
        table = torch.stack([counts(a, position), counts(b, position)])
        frequent = table.sum(0) >= 10  # rare tokens pooled into one bin: the test needs expected counts
        table = torch.cat([table[:, frequent], table[:, ~frequent].sum(1, keepdim=True)], dim=1)
        return chi2_contingency(table.numpy()).pvalue

    common = int(counts(plain, 1).argmax())  # draft the most frequent second token everywhere
    assert 0.2 < counts(plain, 1)[common] / rows < 0.9  # a draft the fused distribution keeps only sometimes
    drafter = ConstantDrafter(common)
    fast = generate(pool, rule, [prompt] * rows, config, drafter=drafter, draft_tokens=2)
    assert 0 < sum(g.accepted for g in fast) < sum(g.drafted for g in fast)
    for position in (1, 2):
        assert same_distribution_p(plain, fast, position) > 1e-3

    original = loop.sample_with_drafts

    def uncorrected(probs, drafts, generator):
        tokens = original(probs, drafts, generator)
        redrawn = torch.multinomial(probs[:, :-1].reshape(-1, probs.shape[-1]), 1, generator=generator)
        refused = tokens[:, :-1] != drafts.to(tokens.device)
        tokens[:, :-1] = torch.where(refused, redrawn.view(refused.shape), tokens[:, :-1])
        return tokens

    loop.sample_with_drafts = uncorrected
    try:
        biased = generate(pool, rule, [prompt] * rows, config, drafter=drafter, draft_tokens=2)
    finally:
        loop.sample_with_drafts = original
    assert same_distribution_p(plain, biased, 1) < 1e-6


def test_the_speculative_benchmark_prints_a_row_per_drafter():
    from typer.testing import CliRunner

    from dllg.cli.common import expand_multi_value_options
    from dllg.cli.main import app

    args = ["bench", "speculative", "--experts", "world:arith", "world:code", "--limit", "2"]
    args += ["--batch-sizes", "1", "-n", "8", "--dtype", "float64", "--speculate", "ngram,expert,reference"]
    result = CliRunner().invoke(app, expand_multi_value_options(args))
    assert result.exit_code == 0, result.output
    rows = [
        dict(p.split("=", 1) for p in line.split()) for line in result.output.splitlines() if "tok_s=" in line
    ]
    assert [r["speculate"] for r in rows] == ["none", "ngram", "expert", "reference"]
    for row in rows:
        assert row["same_tokens"] == row["prompts"] == "2"  # float64: exactly the plain loop's answers
        shares = [float(row[f"share_{part}"]) for part in ("drafting", "experts", "rule")]
        assert abs(sum(shares) - 1) < 0.01 and float(row["limit_ratio"]) > 0
    assert float(rows[2]["accepted_share"]) > 0  # the smallest expert's drafts are sometimes kept
    assert float(rows[3]["accepted_share"]) > 0  # and so are drafts from the experts' own answers


def test_the_collection_benchmark_times_the_collect_path_per_backend():
    from typer.testing import CliRunner

    from dllg.cli.common import expand_multi_value_options
    from dllg.cli.main import app

    args = ["bench", "collect", "--experts", "world:arith", "world:code", "--backend", "hf,hf"]
    args += ["--task", "world-arith", "--split", "test", "--limit", "3", "-n", "24", "--batch-size", "2"]
    result = CliRunner().invoke(app, expand_multi_value_options(args))
    assert result.exit_code == 0, result.output
    lines = [line[line.index("backend=") :] for line in result.output.splitlines() if "answers=" in line]
    rows = [dict(p.split("=", 1) for p in line.split()) for line in lines]
    assert [r["answers"] for r in rows] == ["6", "6"]  # each expert's answer to each prompt, verified
    assert all(float(r["tok_s"]) > 0 and int(r["tokens"]) > 0 for r in rows)
    assert "collect_hf_over_hf=" in result.output
