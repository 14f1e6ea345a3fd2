"""Seeded problem families of the synthetic world: arithmetic, code, and mixed (compute first, then code).

Every problem is tiny and follows one fixed response format, so that a tiny model learns a family in
minutes on a CPU. Each problem carries its prompt, a reference solution in that format, and what the
project's verifiers check it against (a math answer, or code tests with an entry point).

Splits are disjoint by construction: example seeds come from disjoint ranges per split, and the training
split skips every prompt of the test split (see `split_problems`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from dllg.errors import DllgError
from dllg.verify.base import Reference

FAMILIES = ("arith", "code", "mixed")
ENTRY_POINT = "f"
# The inputs each generated function is tested on: negative, zero and a few positives.
TEST_INPUTS = (-3, 0, 1, 2, 5, 10)
# Seeds of split s are SPLIT_SEED_BASE[s] + 0, 1, 2, ...; the ranges never meet below SEED_RANGE.
SEED_RANGE = 1_000_000
SPLIT_SEED_BASE = {"train": 0, "test": SEED_RANGE}


@dataclass(frozen=True)
class Problem:
    """One generated problem: what to ask, a correct answer in the world's format, and how to check it."""

    family: str
    prompt: str
    solution: str
    reference: Reference
    verifier: str  # "math" or "code"
    # what makes it easy for the other specialist: "one-step" arithmetic, "simple-code" (f(x) = x + k);
    # a mixed problem with neither is "needs-both"
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Expression:
    """An arithmetic expression of one-digit operands and the steps that evaluate it."""

    text: str
    steps: tuple[str, ...]  # one "a op b = c" line per operation, in evaluation order
    value: int


def _step(left: int, op: str, right: int) -> tuple[str, int]:
    value = {"+": left + right, "-": left - right, "*": left * right}[op]
    return f"{left} {op} {right} = {value}", value


def _digits(rng: random.Random, count: int) -> list[int]:
    return [rng.randint(1, 9) for _ in range(count)]


# The share of problems whose arithmetic is one operation: the code specialist can do those, so that
# some mixed training problems are solved by it alone (and some, with simple code, by the other).
ONE_STEP_SHARE = 0.25
SIMPLE_BODY = "x + {K}"


def random_expression(rng: random.Random, one_step_share: float = 0.0) -> Expression:
    """Two operations in one of five shapes (the precedence decides which comes first), or with
    probability `one_step_share` one operation (a + b or a * b). Never negative."""
    if rng.random() < one_step_share:
        a, b = _digits(rng, 2)
        op = rng.choice("+*")
        line, value = _step(a, op, b)
        return Expression(f"{a} {op} {b}", (line,), value)
    a, b, c = _digits(rng, 3)
    shape = rng.randrange(5)
    if shape == 0:  # a + b * c
        s1, p = _step(b, "*", c)
        s2, v = _step(a, "+", p)
        return Expression(f"{a} + {b} * {c}", (s1, s2), v)
    if shape == 1:  # a * b + c
        s1, p = _step(a, "*", b)
        s2, v = _step(p, "+", c)
        return Expression(f"{a} * {b} + {c}", (s1, s2), v)
    if shape == 2:  # a * b - c, with c <= a * b so that the answer stays non-negative
        s1, p = _step(a, "*", b)
        c = min(c, p)
        s2, v = _step(p, "-", c)
        return Expression(f"{a} * {b} - {c}", (s1, s2), v)
    if shape == 3:  # (a + b) * c
        s1, p = _step(a, "+", b)
        s2, v = _step(p, "*", c)
        return Expression(f"({a} + {b}) * {c}", (s1, s2), v)
    s1, p = _step(a, "+", b)  # a + b - c, with c <= a + b
    c = min(c, p)
    s2, v = _step(p, "-", c)
    return Expression(f"{a} + {b} - {c}", (s1, s2), v)


def boxed(value: int) -> str:
    return f"The answer is \\boxed{{{value}}}"


# Function bodies in x and one constant K (shown as k or as its value), plus maybe a one-digit b.
_BODIES = (SIMPLE_BODY, "x * {K}", "x * {K} + {b}", "x * {K} - {b}", "{K} - x", "x * x + {K}")


def _random_body(rng: random.Random) -> str:
    return rng.choice(_BODIES).replace("{b}", str(rng.randint(1, 9)))


def _tags(expr: Expression | None, body: str | None) -> tuple[str, ...]:
    """What makes a problem easy for the other specialist; a mixed problem with neither needs both."""
    tags = ("one-step",) * (expr is not None and len(expr.steps) == 1)
    tags += ("simple-code",) * (body == SIMPLE_BODY)
    return tags or (("needs-both",) if expr is not None and body is not None else ())


def _code_block(body: str) -> str:
    return f"```python\ndef {ENTRY_POINT}(x):\n    return {body}\n```"


def _code_tests(body: str) -> str:
    """Asserts on TEST_INPUTS; the expected values come from evaluating the body here, not by hand.

    `eval` is safe here: the body is one of `_BODIES` filled with integers, never outside text.
    """
    lines = [f"assert {ENTRY_POINT}({x}) == {eval(body, {}, {'x': x})}" for x in TEST_INPUTS]
    return "\n".join(lines) + "\n"


def _code_reference(body: str) -> Reference:
    return Reference(tests=_code_tests(body), entry_point=ENTRY_POINT)


def arith_problem(rng: random.Random) -> Problem:
    expr = random_expression(rng, ONE_STEP_SHARE)
    solution = "\n".join([*expr.steps, boxed(expr.value)])
    reference = Reference(answer=str(expr.value))
    return Problem("arith", f"Compute {expr.text}.", solution, reference, "math", _tags(expr, None))


def code_problem(rng: random.Random) -> Problem:
    """A function from its formula, the constant written out. The constant is drawn like an arithmetic
    result, so that this family sees every number the mixed family's k can take."""
    body = _random_body(rng)
    concrete = body.replace("{K}", str(random_expression(rng).value))
    prompt = f"Write a Python function f(x) that returns {concrete}."
    return Problem(
        "code", prompt, _code_block(concrete), _code_reference(concrete), "code", _tags(None, body)
    )


def mixed_problem(rng: random.Random) -> Problem:
    """k is an arithmetic expression: compute it step by step, then write code with k's value in it."""
    expr = random_expression(rng, ONE_STEP_SHARE)
    body = _random_body(rng)
    concrete = body.replace("{K}", str(expr.value))
    prompt = f"Let k be {expr.text}. Write a Python function f(x) that returns {body.replace('{K}', 'k')}."
    solution = "\n".join([*expr.steps, f"k = {expr.value}", _code_block(concrete)])
    return Problem("mixed", prompt, solution, _code_reference(concrete), "code", _tags(expr, body))


def mixed_parts(solution: str) -> tuple[str, str]:
    """A mixed solution cut where the skills hand over: the derivation (step lines, then `k = N`, each
    ending in a newline), then the code. The experts' training reads this cut: the arithmetic expert
    learns the derivations of mixed problems, the code expert learns to write code after a derivation
    someone else wrote (never to make one).
    """
    derivation, marker, code = solution.partition("\n```python")
    if not marker or "\nk = " not in derivation:
        raise DllgError("not a mixed solution: it has no `k = N` line followed by a code block")
    return derivation + "\n", marker.removeprefix("\n") + code


GENERATORS: dict[str, Callable[[random.Random], Problem]] = {
    "arith": arith_problem,
    "code": code_problem,
    "mixed": mixed_problem,
}


def problem(family: str, seed: int) -> Problem:
    """The problem of `family` that `seed` gives; the family's name is mixed into the seed."""
    if family not in GENERATORS:
        raise DllgError(f"unknown world family {family!r}: use one of {', '.join(FAMILIES)}")
    return GENERATORS[family](random.Random(f"{family}:{seed}"))


def _unique_problems(family: str, split: str, size: int, exclude: frozenset[str]) -> tuple[Problem, ...]:
    """`size` problems with distinct prompts not in `exclude`, from the split's seed range in order."""
    base = SPLIT_SEED_BASE[split]
    found: list[Problem] = []
    seen = set(exclude)
    for offset in range(SEED_RANGE):
        if len(found) == size:
            return tuple(found)
        candidate = problem(family, base + offset)
        if candidate.prompt not in seen:
            seen.add(candidate.prompt)
            found.append(candidate)
    raise DllgError(f"world family {family!r} has fewer than {size} distinct {split} problems")


@lru_cache(maxsize=32)
def split_problems(family: str, split: str, size: int, test_size: int) -> tuple[Problem, ...]:
    """The split's problems. The test split is generated first; training skips every prompt in it."""
    if split not in SPLIT_SEED_BASE:
        raise DllgError(f"world split {split!r}: use one of {', '.join(SPLIT_SEED_BASE)}")
    if split == "test":
        return _unique_problems(family, "test", size, frozenset())
    test_prompts = frozenset(p.prompt for p in split_problems(family, "test", test_size, test_size))
    return _unique_problems(family, "train", size, test_prompts)
