"""The runner's guard against results that could lie, called directly (no sandbox) on many kinds of object:
library objects pass untouched, the program's lying ones are refused with the reason the verdict gives."""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import fractions
import http
import pathlib
import sys
import types
from unittest import mock

import pytest

from dllg.verify import result_guard

PROGRAM = """
import collections, dataclasses, enum

class AlwaysEqual:
    def __eq__(self, other):
        return True

class LyingInt(int):
    def __eq__(self, other):
        return True

class NotEqualAsEqual(int):
    __eq__ = int.__ne__  # C code, but another method's

class Plain:
    def __init__(self, x):
        self.x = x

class Slotted:
    __slots__ = ("v",)
    def __init__(self, v):
        self.v = v

class Counted(int):
    pass

@dataclasses.dataclass
class Record:
    a: int

Pair = collections.namedtuple("Pair", "a b")

class Color(enum.IntEnum):
    RED = 1

class Items(collections.UserDict):
    def items(self):
        return {}.items()

class Meta(type):
    def __eq__(cls, other):
        return True

class WithMeta(metaclass=Meta):
    pass
"""


@pytest.fixture
def program(monkeypatch):
    """A guard over a program's namespace, as the runner makes one, and that namespace."""
    module = types.ModuleType("__sandbox__")
    monkeypatch.setitem(sys.modules, "__sandbox__", module)
    exec(compile(PROGRAM, "<solution>", "exec"), module.__dict__)
    return result_guard._Guard(module.__dict__), module.__dict__


def test_the_programs_lying_objects_are_refused(program):
    guard, ns = program
    expected = {
        "AlwaysEqual": ns["AlwaysEqual"](),
        "LyingInt": ns["LyingInt"](1),
        "NotEqualAsEqual": ns["NotEqualAsEqual"](1),
        "Record": ns["Record"](1),  # a dataclass's generated == is the program's code too
    }
    for name, value in expected.items():
        assert guard.search(value, probe=True) == f"an object of its own class {name} whose == could lie"
    deep = [1, {"k": (2, collections.deque([ns["Plain"](ns["Slotted"](ns["AlwaysEqual"]()))]))}]
    assert "AlwaysEqual whose == could lie" in guard.search(deep, probe=True)
    assert "overrides collections.UserDict" in guard.search(ns["Items"](), probe=True)
    reason = guard.search(ns["WithMeta"](), probe=True)
    assert reason == "an object of class WithMeta whose metaclass's == could lie"


def test_plain_objects_of_the_program_pass(program):
    guard, ns = program
    for value in (ns["Plain"](3), ns["Slotted"](2), ns["Counted"](2), ns["Pair"](1, 2), ns["Color"].RED):
        assert guard.search(value, probe=True) is None, value


def test_library_and_builtin_objects_pass(program):
    guard, _ = program
    values = [
        0, 1.5, "s", b"b", None, True, [1, (2, {3: {4}})], frozenset({1}), range(3), (i for i in range(2)),
        collections.Counter("abc"), collections.OrderedDict(a=1), collections.defaultdict(list),
        fractions.Fraction(1, 3), decimal.Decimal("1.5"), datetime.date(2020, 1, 1), http.HTTPStatus.OK,
        pathlib.Path("/tmp"), enum.Enum("E", "A").A, types.SimpleNamespace(a=1), mock.MagicMock(), len,
    ]  # fmt: skip
    for value in values:
        assert guard.search(value, probe=True) is None, value


def test_library_objects_that_claim_to_equal_anything_are_refused(program):
    guard, _ = program
    configured = mock.MagicMock()
    configured.__eq__.return_value = True
    assert guard.search(mock.ANY, probe=True) == "a unittest.mock._ANY object that claims to equal anything"
    assert "MagicMock object that claims to equal anything" in guard.search([configured], probe=True)
    # Only results are probed: a test's own mocks, passed in as arguments, are theirs to configure.
    assert guard.search(([configured], {}), probe=False) is None


def test_pandas_and_numpy_objects_pass_unless_they_hold_a_lying_object(program):
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    guard, ns = program
    honest = [
        pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
        pd.Series(["a", "b"], name="s", dtype="category"),
        pd.MultiIndex.from_tuples([(1, "a")]),
        pd.Timestamp("2020-01-01"),
        pd.NA,
        pd.NaT,
        pd.Interval(0, 1),
        np.arange(3),
        np.array(["a", None], dtype=object),
        np.float64(1.0),
    ]
    for value in honest:
        assert guard.search(value, probe=True) is None, value
    liar = ns["AlwaysEqual"]()
    hiding = [
        pd.DataFrame({"a": [1, 2], "b": ["x", liar]}),
        pd.Series([1], index=[liar]),
        np.array([1, liar], dtype=object),
    ]
    for value in hiding:
        assert "AlwaysEqual whose == could lie" in guard.search(value, probe=True), value


def test_a_patched_library_class_is_refused(program, monkeypatch):
    guard, ns = program
    patch = eval(compile("lambda self, other: True", "<solution>", "eval"), ns)
    monkeypatch.setattr(collections.UserList, "__eq__", patch)
    reason = guard.search(collections.UserList([1]), probe=True)
    assert reason == "an object of class UserList, whose collections.UserList.__eq__ the program patched"


def test_the_final_check_finds_the_programs_code_in_a_library(program, monkeypatch):
    guard, ns = program
    assert guard.final_reason() is None
    function = eval(compile("lambda: 0", "<solution>", "eval"), ns)
    monkeypatch.setattr(fractions, "gcd_for_tests", function, raising=False)
    assert guard.final_reason() == "the program patched fractions.gcd_for_tests"


def test_the_programs_data_in_a_library_module_is_not_a_patch(program, monkeypatch):
    guard, ns = program
    # Data, like an asyncio policy object, then code.
    monkeypatch.setattr(fractions, "policy_for_tests", ns["Plain"](1), raising=False)
    assert guard.final_reason() is None
    monkeypatch.setattr(fractions, "policy_for_tests", ns["AlwaysEqual"].__eq__, raising=False)
    assert guard.final_reason() == "the program patched fractions.policy_for_tests"


def test_the_tests_namespace_wraps_functions_and_keeps_library_objects(program):
    guard, ns = program
    app = mock.MagicMock(name="app")  # a library's callable object, e.g. a Flask app the tests use
    ns.update(total=eval(compile("lambda xs: sum(xs)", "<solution>", "eval"), ns), app=app, np_like=fractions)
    tests_ns = guard.tests_namespace(ns)
    assert tests_ns["total"] is not ns["total"] and tests_ns["total"]([1, 2]) == 3
    assert tests_ns["total"].__wrapped__ is ns["total"]
    assert tests_ns["app"] is app and tests_ns["np_like"] is fractions
    assert tests_ns["Plain"] is ns["Plain"]  # plain classes stay classes, for isinstance
    assert tests_ns["AlwaysEqual"] is not ns["AlwaysEqual"]  # constructing one is handing one over
