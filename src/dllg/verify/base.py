"""What every verifier shares: the verdict it returns, the reference it checks against, and one registry."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Protocol

from dllg.errors import DllgError
from dllg.registry import register_unique

Status = Literal["pass", "fail", "timeout", "error"]
STATUSES: tuple[Status, ...] = ("pass", "fail", "timeout", "error")
TestKind = Literal["script", "unittest", "stdio"]


@dataclass(frozen=True)
class Verdict:
    """The judgement of one response.

    pass: judged correct. fail: judged wrong (a wrong answer; code that does not compile, fails or
    crashes its tests, or exits before they finish). timeout: ran out of wall-clock or CPU time.
    error: nothing could be judged (no answer or program in the response, none stated before a
    max_new_tokens cut, a module missing from the environment, tests that do not load, or the sandbox
    itself failed). Only pass counts as correct.
    """

    status: Status
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass(frozen=True)
class Reference:
    """What a response is checked against; each verifier reads only the fields it needs.

    answer: the gold final answer (math, exact match).
    tests: test code run after the program; `test_kind` says how: "script" passes when it runs
      without raising (HumanEval's `check(...)`, MBPP's asserts), "unittest" when the TestCase classes it
      defines all pass (BigCodeBench, DataFrameBench), "stdio" when the program, run as a script on each
      JSON {"inputs": [...], "outputs": [...]} case, prints the expected output (Code-R1's TACO part).
    entry_point: the function the task asks for. prompt_code: the stub a completion-style response
      continues (HumanEval's prompt); prepended when the response does not define the entry point.
    timeout_seconds: the wall-clock and CPU limit of one run when the sandbox default is too short.
    """

    answer: str | None = None
    tests: str | None = None
    test_kind: TestKind = "script"
    entry_point: str | None = None
    prompt_code: str | None = None
    timeout_seconds: float | None = None


class Verifier(Protocol):
    """Judges one response against a reference; `verify_many` may run checks in parallel.

    `truncated`: the response was cut off by max_new_tokens. It matters to some verifiers (a final answer
    must then have been stated, not guessed from where the text stopped) and not to others (a program is
    run as it is): every verifier takes the flag, and the ones it does not matter to ignore it.
    """

    name: str

    def ready(self) -> None:
        """Raise a DllgError naming what to install when this verifier cannot run on this machine."""

    def verify(self, response: str, reference: Reference, *, truncated: bool = False) -> Verdict: ...

    def verify_many(
        self,
        items: Sequence[tuple[str, Reference]],
        max_workers: int | None = None,
        *,
        truncated: Sequence[bool] | None = None,
    ) -> list[Verdict]: ...


def truncation_flags(items: Sequence, truncated: Sequence[bool] | None) -> list[bool]:
    """One flag per item (none given: nothing was cut off)."""
    flags = list(truncated) if truncated is not None else [False] * len(items)
    if len(flags) != len(items):
        raise ValueError(f"{len(items)} items but {len(flags)} truncation flags")
    return flags


class SequentialVerifier:
    """Base for cheap verifiers: `verify_many` is a loop (threads would not help pure-Python work).

    Subclasses implement `verify(response, reference, *, truncated=False)`.
    """

    name = "base"

    def ready(self) -> None:
        """Pure-Python verifiers run wherever dllg's own dependencies are installed."""

    def verify(self, response: str, reference: Reference, *, truncated: bool = False) -> Verdict:
        raise NotImplementedError

    def verify_many(
        self,
        items: Sequence[tuple[str, Reference]],
        max_workers: int | None = None,
        *,
        truncated: Sequence[bool] | None = None,
    ) -> list[Verdict]:
        flags = truncation_flags(items, truncated)
        return [
            self.verify(response, reference, truncated=flag)
            for (response, reference), flag in zip(items, flags, strict=True)
        ]


def map_bounded(fn, items: Sequence, max_workers: int) -> list:
    """`fn` over `items` with at most `max_workers` in flight, results in input order."""
    if max_workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        return list(pool.map(fn, items))


# The one registry: name -> verifier instance. Each verifier module adds itself at import.
VERIFIERS: dict[str, Verifier] = {}

# Modules that register verifiers; imported on first lookup so `base` has no import cycle with them.
_VERIFIER_MODULES = ("dllg.verify.math", "dllg.verify.exact", "dllg.verify.code")


def register(verifier: Verifier) -> Verifier:
    return register_unique(VERIFIERS, verifier.name, verifier, "verifier")


def get_verifier(name: str) -> Verifier:
    for module in _VERIFIER_MODULES:
        importlib.import_module(module)
    if name not in VERIFIERS:
        known = ", ".join(sorted(VERIFIERS))
        raise DllgError(f"unknown verifier {name!r}: use one of {known}")
    return VERIFIERS[name]
