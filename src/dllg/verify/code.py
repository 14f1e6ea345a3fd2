"""Code answers: pull the program out of a response, then run it against the task's tests in the sandbox."""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence

from dllg.errors import DllgError
from dllg.verify.base import Reference, Verdict, register, truncation_flags
from dllg.verify.sandbox import Job, Limits, Sandbox

# An opening fence with an optional language, up to a closing fence or the end (a cut-off generation).
_FENCE = re.compile(
    r"^[ \t]*```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.DOTALL | re.MULTILINE
)
_PYTHON_TAGS = {"", "python", "python3", "py", "py3"}


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # null bytes, absurd nesting
        return False
    return True


def extract_program(response: str, entry_point: str | None = None) -> str | None:
    """The code of a response: all of it when it parses as Python (bare code, whose docstrings may hold
    fences of their own), else the last fenced Python block that defines `entry_point`, else the last
    fenced Python block."""
    if response.strip() and _parses(response):
        return response
    blocks = [body for tag, body in _FENCE.findall(response) if tag.lower() in _PYTHON_TAGS and body.strip()]
    if entry_point:
        defining = [b for b in blocks if _defines(b, entry_point)]
        if defining:
            return defining[-1]
    return blocks[-1] if blocks else None


def _prompt_imports(prompt_code: str) -> str:
    """The import lines of a stub: a response that rewrites the function often drops them."""
    lines = [ln for ln in prompt_code.splitlines() if re.match(r"(?:import|from)\s+\w", ln)]
    return "\n".join(lines)


def assemble_program(response: str, reference: Reference) -> str | None:
    """The program to test: the extracted code, completed by the prompt's stub when it is only a body."""
    code = extract_program(response, reference.entry_point)
    stub = reference.prompt_code
    if code is None:
        # A bare, indented function body parses only once the stub is in front of it.
        if stub and response.strip() and _parses(stub + response):
            return stub + response
        return None
    if stub and reference.entry_point and not _defines(code, reference.entry_point):
        # A completion-style answer continues the prompt: the body of the requested function.
        return stub + code
    if stub:
        imports = _prompt_imports(stub)
        return f"{imports}\n{code}" if imports else code
    return code


class CodeVerifier:
    """Pass when the program passes `reference.tests` inside the sandbox. A truncated response is run as
    it is: a program cut off mid-way fails its tests on its own."""

    name = "code"

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits
        self._sandbox: Sandbox | None = None

    @property
    def sandbox(self) -> Sandbox:
        # Built on first use: only code tasks need bubblewrap installed.
        if self._sandbox is None:
            self._sandbox = Sandbox(self.limits)
        return self._sandbox

    def ready(self) -> None:
        """Fails now, naming bubblewrap, rather than after a collection or evaluation generated answers."""
        _ = self.sandbox

    def job(self, response: str, reference: Reference) -> Job | Verdict:
        if not reference.tests:
            raise DllgError("the code verifier needs tests: the task gave none")
        program = assemble_program(response, reference)
        if program is None:
            return Verdict("error", "no Python code found in the response")
        return Job(program, reference.tests, reference.test_kind, reference.timeout_seconds)

    def verify(self, response: str, reference: Reference, *, truncated: bool = False) -> Verdict:
        return self.verify_many([(response, reference)], max_workers=1, truncated=[truncated])[0]

    def verify_many(
        self,
        items: Sequence[tuple[str, Reference]],
        max_workers: int | None = None,
        *,
        truncated: Sequence[bool] | None = None,
    ) -> list[Verdict]:
        truncation_flags(items, truncated)  # checked for its length; a program is judged as it is
        prepared = [self.job(response, reference) for response, reference in items]
        jobs = [p for p in prepared if isinstance(p, Job)]
        results = iter(self.sandbox.run_many(jobs, max_workers) if jobs else [])
        return [p if isinstance(p, Verdict) else next(results).verdict for p in prepared]


register(CodeVerifier())
