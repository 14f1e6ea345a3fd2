"""Results that could lie about equality: refused through the real sandbox, while honest results pass.

Each lying program below passes its tests under a runner that only runs them (an object whose `__eq__`
always returns True satisfies any `assert f(x) == y`), so each of these tests fails if the guard is gone.
"""

from __future__ import annotations

import textwrap

import pytest

from dllg.verify import Reference
from dllg.verify.code import CodeVerifier
from dllg.verify.sandbox import Job, Limits, Sandbox

LIMITS = Limits(wall_seconds=30, cpu_seconds=20, memory_bytes=2 << 30, max_output_bytes=4096)
# HumanEval's shape: a check(candidate) function, called with the entry point.
HUMANEVAL_TESTS = textwrap.dedent(
    """
    def check(candidate):
        assert candidate([1, 2, 3]) == 6
        assert candidate([]) == 0
        assert candidate([-1, 1]) == 0

    check(total)
    """
)
UNITTEST_TESTS = textwrap.dedent(
    """
    import unittest

    class TestTotal(unittest.TestCase):
        def test_small(self):
            self.assertEqual(total([1, 2, 3]), 6)

        def test_empty(self):
            self.assertEqual(total([]), 0)
    """
)
ALWAYS_EQUAL = "class AlwaysEqual:\n    def __eq__(self, other):\n        return True\n\n"


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(LIMITS)


@pytest.fixture(scope="module")
def verifier() -> CodeVerifier:
    return CodeVerifier(LIMITS)


def run(sandbox: Sandbox, program: str, tests: str = HUMANEVAL_TESTS, kind: str = "script"):
    return sandbox.run(Job(program=textwrap.dedent(program), tests=textwrap.dedent(tests), test_kind=kind))


# --- lying results are refused ----------------------------------------------------------------------------


def test_always_equal_object_fails_a_humaneval_style_check(verifier):
    reference = Reference(tests=HUMANEVAL_TESTS, entry_point="total")
    response = f"```python\n{ALWAYS_EQUAL}def total(xs):\n    return AlwaysEqual()\n```"
    verdict = verifier.verify(response, reference)
    assert verdict.status == "fail"
    assert verdict.reason == "the program returned an object of its own class AlwaysEqual whose == could lie"


def test_always_equal_object_fails_unittest_assert_equal(sandbox):
    program = ALWAYS_EQUAL + "def total(xs):\n    return AlwaysEqual()\n"
    result = run(sandbox, program, UNITTEST_TESTS, "unittest")
    assert result.verdict.status == "fail"
    assert "own class AlwaysEqual whose == could lie" in result.verdict.reason


@pytest.mark.parametrize(
    ("program", "tests", "kind", "reason"),
    [
        pytest.param(
            ALWAYS_EQUAL + "def total(xs):\n    return [AlwaysEqual()]\n",
            "assert total([1, 2]) == [3]\n",
            "script",
            "own class AlwaysEqual whose == could lie",
            id="nested-in-a-list",
        ),
        pytest.param(
            ALWAYS_EQUAL + "def total(xs):\n    return {'sum': (1, AlwaysEqual())}\n",
            "import unittest\nclass T(unittest.TestCase):\n"
            "    def test(self):\n        self.assertEqual(total([1]), {'sum': (1, 1)})\n",
            "unittest",
            "own class AlwaysEqual whose == could lie",
            id="nested-in-a-dict-unittest",
        ),
        pytest.param(
            "class Liar(int):\n    def __eq__(self, other):\n        return True\n"
            "    __hash__ = int.__hash__\n\ndef total(xs):\n    return Liar(0)\n",
            HUMANEVAL_TESTS,
            "script",
            "own class Liar whose == could lie",
            id="int-subclass",
        ),
        pytest.param(
            "class Liar(str):\n    __eq__ = lambda self, other: True\n\n"
            "def total(xs):\n    return Liar('')\n",
            "assert total(['a', 'b']) == 'ab'\n",
            "script",
            "own class Liar whose == could lie",
            id="str-subclass",
        ),
        pytest.param(
            # C code answering for the program: id() of anything is truthy.
            "class Liar:\n    __eq__ = id\n\ndef total(xs):\n    return Liar()\n",
            HUMANEVAL_TESTS,
            "script",
            "own class Liar whose == could lie",
            id="builtin-as-eq",
        ),
        pytest.param(
            "class Liar:\n    def __ne__(self, other):\n        return False\n\n"
            "def total(xs):\n    return Liar()\n",
            "assert not (total([1, 2]) != 3)\n",
            "script",
            "own class Liar whose != could lie",
            id="never-unequal",
        ),
        pytest.param(
            "class Zero:\n    def __sub__(self, other):\n        return 0\n\n"
            "def total(xs):\n    return Zero()\n",
            "assert abs(total([0.5, 2.0]) - 2.5) < 1e-9\n",
            "script",
            "own class Zero whose __sub__ could lie",
            id="difference-is-zero",
        ),
        pytest.param(
            "class Yes:\n    def __bool__(self):\n        return True\n\ndef total(xs):\n    return Yes()\n",
            "assert total([1])\n",
            "script",
            "own class Yes whose truth value could lie",
            id="always-true",
        ),
        pytest.param(
            "from unittest.mock import ANY\n\ndef total(xs):\n    return ANY\n",
            HUMANEVAL_TESTS,
            "script",
            "returned a unittest.mock._ANY object that claims to equal anything",
            id="mock-any",
        ),
        pytest.param(
            ALWAYS_EQUAL + "def total(xs):\n    yield AlwaysEqual()\n",
            "assert list(total([1, 2])) == [3]\n",
            "script",
            "yielded an object of its own class AlwaysEqual",
            id="generator",
        ),
        pytest.param(
            "import functools\n"
            + ALWAYS_EQUAL
            + "@functools.lru_cache\ndef total(xs):\n    return AlwaysEqual()\n",
            "assert total((1, 2)) == 3\n",
            "script",
            "own class AlwaysEqual whose == could lie",
            id="lru-cached",
        ),
        pytest.param(
            ALWAYS_EQUAL + "class total:\n    def __new__(cls, xs):\n        return AlwaysEqual()\n",
            HUMANEVAL_TESTS,
            "script",
            "own class AlwaysEqual whose == could lie",
            id="class-as-entry-point",
        ),
        pytest.param(
            ALWAYS_EQUAL + "def total(xs):\n    xs.append(AlwaysEqual())\n",
            "data = [1, 2]\ntotal(data)\nassert data == [1, 2, 3]\n",
            "script",
            "left in its arguments an object of its own class AlwaysEqual",
            id="filled-into-an-argument",
        ),
    ],
)
def test_objects_that_could_lie_are_refused(sandbox, program, tests, kind, reason):
    result = run(sandbox, program, tests, kind)
    assert result.verdict.status == "fail", result
    assert reason in result.verdict.reason


def test_a_test_that_swallows_the_refusal_still_fails(sandbox):
    tests = "try:\n    assert total([1, 2]) == 3\nexcept BaseException:\n    pass\n"
    result = run(sandbox, ALWAYS_EQUAL + "def total(xs):\n    return AlwaysEqual()\n", tests)
    assert result.verdict.status == "fail" and "could lie" in result.verdict.reason


def test_a_class_given_a_lying_eq_after_its_object_was_returned_fails(sandbox):
    program = """
        class Box:
            pass

        def total(xs):
            if not xs:
                Box.__eq__ = lambda self, other: True
                return 0
            return Box()
        """
    tests = "result = total([1, 2])\ntotal([])\nassert result == 3\n"
    result = run(sandbox, program, tests)
    assert result.verdict.status == "fail"
    assert "own class Box whose == could lie" in result.verdict.reason


# --- tampering with what the tests rely on ----------------------------------------------------------------


def test_patching_a_library_function_the_tests_use_fails(sandbox):
    program = "import math\nmath.fabs = lambda x: 0.0\n\ndef total(xs):\n    return 0\n"
    result = run(sandbox, program, "import math\nassert math.fabs(total([1, 2]) - 3) < 1e-9\n")
    assert result.verdict == result.verdict.__class__("fail", "the program patched math.fabs")


def test_the_programs_functions_cannot_reach_the_test_classes(sandbox):
    # Called by the first test, it empties every other test through its globals (once shared with the tests).
    program = """
        import unittest

        def total(xs):
            for value in list(globals().values()):
                if isinstance(value, type) and issubclass(value, unittest.TestCase):
                    for name in dir(value):
                        if name.startswith("test_"):
                            setattr(value, name, lambda self: None)
            return 0
        """
    result = run(sandbox, program, UNITTEST_TESTS, "unittest")
    assert result.verdict.status == "fail" and "test_small" in result.verdict.reason


def test_the_runners_own_functions_are_out_of_reach(sandbox):
    program = """
        import __main__
        __main__._run_unittests = lambda classes: None  # this runner's function: all tests "pass"

        def total(xs):
            return 0
        """
    result = run(sandbox, program, UNITTEST_TESTS, "unittest")
    assert result.verdict.status == "fail" and "test_small" in result.verdict.reason


# --- honest results pass ----------------------------------------------------------------------------------

HONEST = [
    ("def f(x):\n    return x * 2\n", "assert f(21) == 42\nassert f(-1) != 0\n"),
    ("def f(x):\n    return [x, [x + 1], (x, None)]\n", "assert f(1) == [1, [2], (1, None)]\n"),
    ("def f(x):\n    return {'a': x, 'b': {x: [x]}}\n", "assert f(3) == {'a': 3, 'b': {3: [3]}}\n"),
    ("def f(x):\n    return x / 3\n", "assert abs(f(1) - 0.3333333) < 1e-6\nassert round(f(3), 2) == 1.0\n"),
    ("def f(x):\n    return None\n", "assert f(1) is None\nassert f(1) == None\n"),
    ("def f(x):\n    return (x, 'a', b'b', 1.5, True, {1, 2}, frozenset())\n", "assert f(0)[0] == 0\n"),
    ("def f(x):\n    return x > 0\n", "assert f(1)\nassert not f(-1)\n"),
    ("def f(x):\n    yield from range(x)\n", "assert list(f(3)) == [0, 1, 2]\n"),
    (
        # A class of its own without comparison methods: compares by identity, so it cannot lie.
        "class Point:\n    def __init__(self, x):\n        self.x = x\n    def double(self):\n"
        "        return self.x * 2\n\ndef f(x):\n    return Point(x)\n",
        "p = f(2)\nassert p.x == 2 and p.double() == 4 and isinstance(p, Point)\n",
    ),
    (
        "import collections\nPair = collections.namedtuple('Pair', 'a b')\n\n"
        "def f(x):\n    return Pair(x, x)\n",
        "assert f(1) == (1, 1)\n",
    ),
    (
        # Deep recursion through the module's own name: the tests' wrapper is not in the recursion.
        "def f(n):\n    return 0 if n == 0 else 1 + f(n - 1)\n",
        "assert f(900) == 900\n",
    ),
    (
        # The tests build the program's objects and pass them in (MBPP's shape).
        "class Node:\n    def __init__(self, v, nxt=None):\n        self.v, self.nxt = v, nxt\n\n"
        "def f(node):\n    return node.v + (f(node.nxt) if node.nxt else 0)\n",
        "assert f(Node(1, Node(2))) == 3\n",
    ),
]


@pytest.mark.parametrize(("program", "tests"), HONEST, ids=[f"honest-{i}" for i in range(len(HONEST))])
def test_honest_results_pass(sandbox, program, tests):
    result = run(sandbox, program, tests)
    assert result.verdict.status == "pass", result


def test_honest_unittest_results_pass(sandbox):
    result = run(sandbox, "def total(xs):\n    return sum(xs)\n", UNITTEST_TESTS, "unittest")
    assert result.verdict.status == "pass", result


# --- pandas and numpy results -----------------------------------------------------------------------------

FRAME_PROGRAM = """
    import pandas as pd

    def task_func(n):
        return pd.DataFrame({"n": list(range(n)), "name": [f"row{i}" for i in range(n)]})
    """
FRAME_TESTS = """
    import unittest
    import numpy as np
    import pandas as pd

    class TestFrame(unittest.TestCase):
        def test_frame(self):
            expected = pd.DataFrame({"n": [0, 1, 2], "name": ["row0", "row1", "row2"]})
            pd.testing.assert_frame_equal(task_func(3), expected)

        def test_values(self):
            np.testing.assert_array_equal(task_func(2)["n"].to_numpy(), np.array([0, 1]))
            self.assertEqual(task_func(2).shape, (2, 2))
    """


def test_pandas_and_numpy_results_pass(sandbox):
    pytest.importorskip("pandas")
    result = run(sandbox, FRAME_PROGRAM, FRAME_TESTS, "unittest")
    assert result.verdict.status == "pass", result


def test_a_lying_object_inside_a_dataframe_fails(sandbox):
    pytest.importorskip("pandas")
    program = FRAME_PROGRAM.replace('[f"row{i}" for i in range(n)]', "[AlwaysEqual()] * n")
    # Without dtype checks, assert_frame_equal compares an object column cell by cell, with each cell's ==.
    tests = FRAME_TESTS.replace("expected)", "expected, check_dtype=False)")
    result = run(sandbox, textwrap.dedent(ALWAYS_EQUAL) + textwrap.dedent(program), tests, "unittest")
    assert result.verdict.status == "fail"
    assert "own class AlwaysEqual whose == could lie" in result.verdict.reason


def test_patching_pandas_testing_fails(sandbox):
    pytest.importorskip("pandas")
    patch = "\npd.testing.assert_frame_equal = lambda *args, **kwargs: None\n"
    program = textwrap.dedent(FRAME_PROGRAM) + patch
    program = program.replace("list(range(n))", "[7] * n")  # wrong, so that only the patch could pass it
    result = run(sandbox, program, FRAME_TESTS.replace("def test_values", "def _values"), "unittest")
    assert result.verdict.status == "fail"
    assert result.verdict.reason == "the program patched pandas.testing.assert_frame_equal"
