"""Every fusion rule (and every gate variant) x K experts, with rows leaving the batch at different steps:
the batched loop must give each prompt exactly what it gets when generated alone (tokens and weights).

Rows are made to finish at chosen steps by a hook on the rule's scores (EOS forced at step s_i for row i,
banned before), so the finish steps do not depend on what random tiny models happen to emit, and every
rule, including the aux-LM gates with their own KV cache, sees rows dropped inside `generate()`.
"""

import dataclasses

import pytest
import torch

from dllg.decode import Generation, GenerationConfig, generate
from dllg.experts import ExpertPool
from dllg.fusion import RULES, FusionInput, FusionOutput, FusionRule, PromptContext, make_rule
from dllg.gate import GATES, Gate
from dllg.tiny import random_gate, tiny_expert, tiny_model, tiny_tokenizer

TEXTS = ["def add(a, b):", "Hello", "The answer is 42. Let us", "Write a Python function", "How are you"]
# Step at which each row is forced to emit EOS (None: never, it runs to the budget). Rows 0 and 3 leave
# together (non-adjacent rows), row 1 leaves at the very first step, row 4 one step before the budget.
FINISH: list[int | None] = [3, 0, None, 3, 5]
MAX_NEW = 7
EXPECTED_LENGTHS = [MAX_NEW if s is None else s + 1 for s in FINISH]
# Rows the loop should still be running at each step, given FINISH.
EXPECTED_ALIVE = [sum(1 for s in FINISH if s is None or s >= step) for step in range(MAX_NEW)]
HIDDEN = {2: [32, 48], 3: [32, 48, 64]}  # experts of different widths: the gate sees ragged states
WEIGHT_ATOL = 1e-6  # weights are recorded in float32; float64 models differ far less


def rule_cases() -> list[tuple[str, str | None]]:
    """Every registered rule; `dllg` once per registered gate variant, so new ones are covered too."""
    return [
        (name, variant) for name in sorted(RULES) for variant in (sorted(GATES) if name == "dllg" else [None])
    ]


@pytest.fixture(scope="module")
def pools() -> dict[int, ExpertPool]:
    # float64 experts: left padding and dropped cache rows change no logit beyond rounding noise.
    tok = tiny_tokenizer()
    return {
        k: ExpertPool(
            [
                tiny_expert(10 + k * 10 + i, hidden=h, dtype=torch.float64, tokenizer=tok)
                for i, h in enumerate(sizes)
            ]
        )
        for k, sizes in HIDDEN.items()
    }


@pytest.fixture(scope="module")
def gates() -> dict[tuple[str, int], Gate]:
    return {}  # built on first use per (variant, K), then shared by the batched and the one-at-a-time runs


def perturbed_gate(variant: str, pool: ExpertPool) -> Gate:
    """A small gate of `variant` whose trained parameters are moved off their (partly zero) init, so its
    weights vary by row and step; aux-LM variants get a fresh 2-layer tiny LM as aux model."""
    # The same gate every run whatever ran before (LoRA and head inits draw from the global RNG).
    gate = random_gate(
        pool.names,
        [e.hidden_size for e in pool.experts],
        variant,
        aux_model=tiny_model(99, vocab_rows=16, hidden=32, layers=2),
        seed=len(pool) * 100 + sorted(GATES).index(variant),
    )
    # float64 like the experts (the gate's input norms cast to the gate's dtype): batched and alone then
    # agree to float64 rounding, not float32 noise (seen up to 1.2e-5 through the aux LM): a tight tolerance.
    return gate.double().eval()


def build_rule(
    name: str, variant: str | None, pool: ExpertPool, gates: dict[tuple[str, int], Gate]
) -> FusionRule:
    k = len(pool)
    if name == "single":
        return make_rule(name, expert=k - 1)  # not expert 0: checks the weight lands in the right column
    if name == "static":
        # With K=3 a zero weight leaves a gap among the running experts.
        return make_rule(name, weights=[0.3, 0.7] if k == 2 else [0.5, 0.0, 1.5])
    if name == "dllg":
        assert variant is not None
        if (variant, k) not in gates:
            gates[variant, k] = perturbed_gate(variant, pool)
        return make_rule(name, gate=gates[variant, k])
    return make_rule(name)  # a new rule with required options fails here: give it its options above


class ForcedFinish:
    """Hooks a rule instance so that original row i emits EOS at step finish[i] and never before; the
    rule's own weights are untouched. Records how many rows the loop fed at each step."""

    def __init__(self, rule: FusionRule, finish: list[int | None], eos_ids: set[int]) -> None:
        self.finish = torch.tensor([-1 if s is None else s for s in finish])
        self.eos = sorted(eos_ids)
        self.alive: list[int] = []
        self.rows = torch.arange(len(finish))
        self._fuse, self._start, self._keep = rule.fuse, rule.start, rule.keep_rows
        # Instance attributes shadow the methods: the rule keeps its class, name and any other hooks.
        rule.fuse = self.fuse  # type: ignore[method-assign]
        rule.start = self.start  # type: ignore[method-assign]
        rule.keep_rows = self.keep_rows  # type: ignore[method-assign]

    def start(self, context: PromptContext) -> None:
        self.rows = torch.arange(len(self.finish))
        self.alive = []
        self._start(context)

    def keep_rows(self, rows: torch.Tensor) -> None:
        self.rows = self.rows[rows.cpu()]
        self._keep(rows)

    def fuse(self, inputs: FusionInput) -> FusionOutput:
        out = self._fuse(inputs)
        step = len(self.alive)
        self.alive.append(len(self.rows))
        scores = out.scores.clone()
        due = (self.finish[self.rows] == step).to(scores.device).unsqueeze(-1)
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.eos] = 0.0
        scores[:, self.eos] = float("-inf")  # no natural EOS: lengths are exactly the planned ones
        return dataclasses.replace(out, scores=torch.where(due, forced, scores))


def run(
    pool: ExpertPool, rule: FusionRule, prompts: list[list[int]], finish: list[int | None]
) -> tuple[list[Generation], list[int]]:
    hook = ForcedFinish(rule, finish, pool.eos_token_ids())
    out = generate(pool, rule, prompts, GenerationConfig(max_new_tokens=MAX_NEW))
    return out, hook.alive


@pytest.mark.parametrize("k", sorted(HIDDEN), ids=lambda k: f"K{k}")
@pytest.mark.parametrize(
    ("name", "variant"), rule_cases(), ids=[f"{n}-{v}" if v else n for n, v in rule_cases()]
)
def test_batch_with_rows_finishing_at_different_steps_equals_one_at_a_time(pools, gates, name, variant, k):
    pool = pools[k]
    prompts = [pool.tokenizer(t)["input_ids"] for t in TEXTS]
    batched, alive = run(pool, build_rule(name, variant, pool, gates), prompts, FINISH)

    # Not vacuous: rows really left the batch inside generate(), at the planned steps.
    assert alive == EXPECTED_ALIVE
    assert [len(g.token_ids) for g in batched] == EXPECTED_LENGTHS
    assert [g.finish_reason for g in batched] == ["length" if s is None else "eos" for s in FINISH]

    for i, (prompt, together) in enumerate(zip(prompts, batched, strict=True)):
        alone = run(pool, build_rule(name, variant, pool, gates), [prompt], [FINISH[i]])[0][0]
        assert together.token_ids == alone.token_ids, f"row {i}: tokens differ from generating it alone"
        assert together.text == alone.text
        assert together.weights.shape == (EXPECTED_LENGTHS[i], k)
        torch.testing.assert_close(
            together.weights, alone.weights, rtol=0, atol=WEIGHT_ATOL, msg=lambda m, i=i: f"row {i}: {m}"
        )

    weights = torch.cat([g.weights for g in batched])
    if name == "dllg":
        # The gate must actually react to its inputs, else batched == alone holds trivially for weights.
        assert (weights.std(0) > 1e-3).all(), f"gate {variant} gives near-constant weights"
    if name == "single":
        assert (weights[:, : k - 1] == 0).all() and (weights[:, k - 1] == 1).all()
    if name == "static" and k == 3:
        assert (weights[:, 1] == 0).all()  # the zero-weight expert is not run and gets no weight
