"""The runner that executes inside the sandbox: limits, then the program, then its tests, then the verdict.

This file is not imported by dllg; `sandbox.py` sends its source to `python -I -B -c` inside bubblewrap,
with argv = [token_fd, result_fd], the job as JSON on stdin. It must stay standard-library only.

How a pass is proven: the parent writes a random token to `token_fd`; this runner reads it before any
untrusted code runs and writes `PASS <token>` to `result_fd` only after every test ran without error and
the test machinery was found untouched. Printing a fake marker, exiting early (sys.exit, os._exit, a
signal) or patching unittest therefore never yields a pass. A program written against this runner (walking
the interpreter's frames or heap to the closure that makes the marker) could still forge one: the marker
stops accidents and ordinary reward hacks, while the OS-level isolation is what contains a hostile program.

Results that could lie (an object whose `__eq__` is always True passes every `assert f(x) == y`) are
refused by `_Guard`, which lives in `result_guard.py`: `sandbox.py` sends that file's source first and this
one after it, so both run as one script.
"""

import builtins
import contextlib
import json
import linecache
import os
import resource
import sys
import traceback
import types


def _set_limits(limits: dict) -> None:
    """Hard and soft limits alike, so the program (unprivileged, no capabilities) cannot raise them."""
    cpu = int(limits["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU first, SIGKILL a second later
    for name, key in (("RLIMIT_AS", "memory_bytes"), ("RLIMIT_FSIZE", "max_file_bytes")):
        value = int(limits[key])
        resource.setrlimit(getattr(resource, name), (value, value))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    # Binds here because the runner is not root; the pids cgroup is the per-run cap, this a backstop.
    nproc = int(limits["nproc_backstop"])
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def _snapshot(objects: list) -> list:
    return [(obj, dict(vars(obj))) for obj in objects]


def _tampered(snapshot: list, allow_new: bool) -> str | None:
    """Name of the first attribute that was replaced or deleted (or added, on classes)."""
    for obj, before in snapshot:
        now = vars(obj)
        for key, value in before.items():
            if now.get(key, _tampered) is not value:
                return f"{getattr(obj, '__name__', obj)}.{key}"
        if not allow_new and set(now) - set(before):
            return f"{getattr(obj, '__name__', obj)}.{sorted(set(now) - set(before))[0]}"
    return None


def _unittest_objects() -> tuple[list, list]:
    import unittest
    import unittest.case
    import unittest.loader
    import unittest.result
    import unittest.suite

    modules = [unittest, unittest.case, unittest.loader, unittest.result, unittest.suite]
    classes = [unittest.TestCase, unittest.TestResult, unittest.TestSuite, unittest.TestLoader]
    return modules, classes


def _run_unittests(classes: list) -> str | None:
    """Run the TestCase classes the tests defined; None when all passed, else why not."""
    import unittest

    loader = unittest.TestLoader()
    result = unittest.TestResult()
    expected = 0
    for cls in classes:
        suite = loader.loadTestsFromTestCase(cls)
        expected += suite.countTestCases()
        suite.run(result)
    if expected == 0:
        return "the tests define no test cases"
    if result.testsRun != expected:
        return f"{result.testsRun} of {expected} tests ran"
    problems = (
        result.failures + result.errors + [(t, "unexpected success") for t in result.unexpectedSuccesses]
    )
    if problems:
        test, text = problems[0]
        last = text.strip().splitlines()[-1] if text.strip() else ""
        return f"{len(problems)} of {expected} tests failed; first: {test.id().split('.')[-1]}: {last}"
    return None


def _test_classes(namespace: dict, before: dict) -> list:
    """TestCase classes the tests added; ones the program defined could tamper with the shared result."""
    import unittest

    return [
        value
        for key, value in namespace.items()
        if isinstance(value, type) and issubclass(value, unittest.TestCase) and before.get(key) is not value
    ]


def _run_stdio(program: types.CodeType, cases: dict) -> str | None:
    """Run the program as a script once per case: stdin is the input, stdout must match the output."""
    import io

    real_stdin, real_stdout = sys.stdin, sys.stdout
    pairs = list(zip(cases["inputs"], cases["outputs"], strict=True))
    if not pairs:
        return "the tests hold no cases"
    for number, (given, wanted) in enumerate(pairs):
        sys.stdin, sys.stdout = io.StringIO(given), io.StringIO()
        try:
            exec(program, {"__name__": "__main__", "__builtins__": builtins})
        except SystemExit as err:
            if err.code not in (None, 0):
                return f"case {number}: exited with {err.code!r}"
        finally:
            got, sys.stdin, sys.stdout = sys.stdout.getvalue(), real_stdin, real_stdout
        # Whitespace-insensitive, as competitive-programming judges compare.
        if got.split() != str(wanted).split():
            return f"case {number}: wrong output {got[:80]!r}, expected {str(wanted)[:80]!r}"
    return None


def _compile(source: str, filename: str) -> types.CodeType:
    # Registered with linecache so tracebacks show the failing line.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return compile(source, filename, "exec")


def _describe(err: BaseException) -> dict:
    if isinstance(err, ModuleNotFoundError):
        return {"status": "error", "reason": f"missing module {err.name!r}: {err}"}
    if isinstance(err, SyntaxError):
        return {"status": "fail", "reason": f"SyntaxError: {err.msg} (line {err.lineno})"}
    if isinstance(err, SystemExit):
        return {"status": "fail", "reason": f"exited (SystemExit {err.code!r}) before the tests finished"}
    detail = "".join(traceback.format_exception_only(type(err), err)).strip().splitlines()
    reason = detail[-1] if detail else type(err).__name__
    frames = traceback.extract_tb(err.__traceback__)
    if frames:
        # Where it failed, e.g. the assert of the tests that did not hold.
        last = frames[-1]
        reason += f" at {last.filename} line {last.lineno}: {(last.line or '').strip()}"
    return {"status": "fail", "reason": reason[:500]}


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        # The program may have closed or replaced the stream.
        with contextlib.suppress(BaseException):
            stream.flush()


class _Done(Exception):
    """Ends the stdio path early; the program cannot raise it (it is not reachable by name)."""


def _take_token(token_fd: int):
    """Read the secret before any untrusted code runs; only the returned closure can produce the marker."""
    token = os.read(token_fd, 128).strip()
    os.close(token_fd)
    return lambda: b"PASS " + token + b"\n"


def _main() -> None:
    token_fd, result_fd = int(sys.argv[1]), int(sys.argv[2])
    # Bound before the program runs, so that replacing them in os / sys cannot fool the checks below.
    write, exit_now = os.write, os._exit
    settrace, setprofile, gettrace = sys.settrace, sys.setprofile, sys.gettrace
    passed_marker = _take_token(token_fd)
    job = json.loads(sys.stdin.read())
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    _set_limits(job["limits"])

    def report(message: dict) -> None:
        _flush()
        write(result_fd, (json.dumps(message) + "\n").encode())
        exit_now(1)

    kind = job["test_kind"]
    try:
        tests = json.loads(job["tests"]) if kind == "stdio" else _compile(job["tests"], "<tests>")
    except (SyntaxError, ValueError) as err:
        report({"status": "error", "reason": f"the task's tests do not load: {err}"})
    try:
        program = _compile(job["program"], "<solution>")
    except SyntaxError as err:
        report(_describe(err))

    unittest_kind = kind == "unittest"
    modules, classes = _unittest_objects() if unittest_kind else ([], [])
    loose = _snapshot([builtins, *modules])
    strict = _snapshot(classes)
    # This runner's own functions are globals of __main__: `import __main__` must not reach them.
    sys.modules["__main__"] = types.ModuleType("__main__")
    # A real module, so tests can patch names in it (`patch(__name__ + ".choice")`); not __main__, so a
    # program's `if __name__ == "__main__":` demo block does not run.
    module = types.ModuleType("__sandbox__")
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    guard = _Guard(namespace)  # noqa: F821 - defined by result_guard.py, sent before this file
    failure = None
    try:
        if kind == "stdio":
            failure = _run_stdio(program, tests)
        else:
            exec(program, namespace)
            # A trace or profile hook could jump over failing asserts: the tests run without any.
            settrace(None)
            setprofile(None)
            tests_ns = guard.tests_namespace(namespace)
            before_tests = dict(tests_ns)
            exec(tests, tests_ns)
            if unittest_kind:
                failure = _run_unittests(_test_classes(tests_ns, before_tests))
    except BaseException as err:  # SystemExit and KeyboardInterrupt are failures too
        report({"status": "fail", "reason": guard.refusal} if guard.refusal else _describe(err))
    if guard.refusal is not None:  # even where a test caught the refusal
        report({"status": "fail", "reason": guard.refusal})
    if failure is not None:
        report({"status": "fail", "reason": failure})
    changed = _tampered(loose, allow_new=True) or _tampered(strict, allow_new=False)
    if changed is not None or gettrace() is not None:
        report({"status": "fail", "reason": f"the program patched the test machinery ({changed or 'trace'})"})
    lie = guard.final_reason() if kind != "stdio" else None
    if lie is not None:
        report({"status": "fail", "reason": lie})
    _flush()
    write(result_fd, passed_marker())
    exit_now(0)


if __name__ == "__main__":
    _main()
