"""The guard against results that could lie, run inside the sandbox before the tests see the program.

Like `harness.py`, not imported by dllg: `sandbox.py` sends this file's source, then the harness's, to
`python -I -B -c` as one script, so it must stay standard-library only and define nothing the harness
defines. Tests import it as a module to call the guard directly.

Results that could lie: an object whose `__eq__` always returns True passes every `assert f(x) == y`. So the
tests never see the program's functions themselves but checking wrappers (`_Guard`), in a namespace of
their own: every value a wrapped call returns, yields, or leaves in its arguments is searched (containers,
the program's own objects, object columns of numpy and pandas) for an object whose comparisons, truth,
hash, iteration or arithmetic would run the program's code, and for library objects that claim to equal
an object they cannot have seen (`unittest.mock.ANY`). Builtin values, library objects (DataFrames,
arrays) and the program's plain classes pass untouched. A refusal is recorded where the program cannot
reach it, so a test that catches the exception still fails. At the end, the classes of returned objects
are checked again, and library modules and classes are searched for the program's functions (a patched
`pandas.testing.assert_frame_equal`).
"""

import collections
import contextlib
import functools
import itertools
import sys
import types

_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made at run time; C's static types cannot be changed
# Read through `type` itself, so that a metaclass of the program cannot answer for its classes.
_class_dict = type.__dict__["__dict__"].__get__
_class_mro = type.__dict__["__mro__"].__get__
_class_flags = type.__dict__["__flags__"].__get__
_class_qualname = type.__dict__["__qualname__"].__get__
# Classes are compared by identity throughout: `==` or hashing would run a metaclass of the program.
_PLAIN_KINDS = (int, float, complex, bool, str, bytes, bytearray, range, type(None), type(...))
_PLAIN = frozenset(id(kind) for kind in _PLAIN_KINDS)
_CONTAINERS = (list, tuple, set, frozenset, collections.deque)
# The special methods a test never runs while it judges a value: making, copying, pickling, changing and
# deleting it. Every other one (==, <, bool, len, hash, in, iteration, [], +, -, abs, round, float, str,
# __getattr__, __class__, __call__, numpy's __array_*__, ...) runs when a test compares or inspects a result.
_LIFECYCLE = frozenset(
    {
        "__init__", "__new__", "__del__", "__init_subclass__", "__set_name__", "__class_getitem__",
        "__post_init__", "__subclasshook__", "__enter__", "__exit__", "__aenter__", "__aexit__",
        "__setattr__", "__delattr__", "__setitem__", "__delitem__", "__set__", "__delete__",
        "__getstate__", "__setstate__", "__reduce__", "__reduce_ex__", "__getnewargs__",
        "__getnewargs_ex__", "__sizeof__", "__dir__",
    }
)  # fmt: skip
# Library comparisons written in Python may call methods a subclass overrides (Mapping.__eq__ calls items).
_JUDGING = frozenset(
    {"__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__len__", "__contains__",
     "__iter__", "__getitem__"}
)  # fmt: skip
_TEXT = frozenset({"__str__", "__repr__", "__format__"})  # IntEnum's __str__ is int.__repr__: harmless
_OPERATORS = {
    "__eq__": "==", "__ne__": "!=", "__lt__": "<", "__le__": "<=", "__gt__": ">", "__ge__": ">=",
    "__bool__": "truth value", "__len__": "len()", "__hash__": "hash()", "__contains__": "`in`",
}  # fmt: skip
_C_DESCRIPTORS = (
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
)
# Modules that hold hooks a program may set honestly (sys.excepthook, warnings.showwarning, ...).
_HOOK_MODULES = frozenset({"builtins", "sys", "warnings", "threading", "logging", "atexit"})
_BUDGET = 200_000  # objects searched per value; beyond it a huge result passes unsearched
# Wrapped for the tests whatever their origin: a library function's partial may hold a program callback.
_FUNCTIONS = (types.FunctionType, types.MethodType, functools.partial)


class _Refused(BaseException):
    """Stops the tests where they received an object that could lie. A BaseException, so that a test's
    `except Exception` does not swallow it; the refusal is recorded besides, for the verdict."""


class _Stranger:
    """A fresh object: nothing honest claims to equal it."""

    __slots__ = ()


def _is_one_of(kind: type, options: tuple) -> bool:
    return any(kind is option for option in options)


def _truthy_scalar(value) -> bool:
    if _is_one_of(type(value), (bool, int)):
        return bool(value)
    # numpy's bool_ is not an int; a 0-d numpy answer is a scalar too.
    return type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0 and bool(value)


class _Guard:
    """Checks what the program hands to the tests, and remembers the first refusal."""

    def __init__(self, program_ns: dict) -> None:
        self.program_ns = program_ns
        self.program_name = program_ns["__name__"]
        self.refusal: str | None = None
        self.seen: dict[int, type] = {}  # classes of handed-over objects: checked again at the end
        self._made: dict[int, bool] = {}
        self._reasons: dict[int, str | None] = {}

    # -- whose code is it ---------------------------------------------------------------------------------

    def program_code(self, value, depth: int = 0, peek: bool = True) -> bool:
        """Whether calling `value` runs the program's code: its functions, or a wrapper around one."""
        kind = type(value)
        if kind is types.FunctionType:
            return value.__globals__ is self.program_ns or value.__code__.co_filename == "<solution>"
        if depth > 3:
            return False
        if kind is property:
            return any(self.program_code(f, depth + 1, peek) for f in (value.fget, value.fset, value.fdel))
        if _is_one_of(kind, (staticmethod, classmethod, types.MethodType)):
            return self.program_code(value.__func__, depth + 1, peek)
        if kind is functools.partial:
            return self.program_code(value.func, depth + 1, peek)
        if _class_flags(kind) & _HEAPTYPE and self.made(kind):
            return True  # an instance of the program's own class (a callable object, a descriptor)
        if not peek:
            return False
        for attr in ("__wrapped__", "func", "__func__", "pyfunc"):  # lru_cache, partialmethod, np.vectorize
            try:
                # object.__getattribute__: a mock's __getattr__ would make up the attribute.
                inner = object.__getattribute__(value, attr)
            except Exception:
                continue
            if inner is not value and self.program_code(inner, depth + 1, peek):
                return True
        return False

    def made(self, cls: type) -> bool:
        """Whether the program (or the tests, which share its module name) made this class, not counting its
        bases. The program's code inside any other class is a patch of that class."""
        key = id(cls)
        if key not in self._made:
            module = _class_dict(cls).get("__module__")
            self._made[key] = type(module) is str and module == self.program_name
        return self._made[key]

    # -- which classes could lie ---------------------------------------------------------------------------

    def class_reason(self, cls: type) -> str | None:
        """Why an object of this class could lie to the tests, or None."""
        key = id(cls)
        if key not in self._reasons:
            self._reasons[key] = None  # provisional: `type` is its own metaclass
            self._reasons[key] = self._find_reason(cls)
        return self._reasons[key]

    def _find_reason(self, cls: type) -> str | None:
        name = _class_qualname(cls)
        mro = _class_mro(cls)
        for chain in (mro, _class_mro(type(cls))):  # the class's own methods, then its metaclass's
            for owner in chain:
                if not _class_flags(owner) & _HEAPTYPE:
                    continue
                made = self.made(owner)
                for key, value in _class_dict(owner).items():
                    key = key if type(key) is str else str.__str__(key)
                    if not self._could_lie(owner, chain, key, value, made):
                        continue
                    if not made:
                        where = f"{owner.__module__}.{_class_qualname(owner)}.{key}"
                        return f"an object of class {name}, whose {where} the program patched"
                    what = _OPERATORS.get(key, key)
                    if chain is not mro:
                        return f"an object of class {name} whose metaclass's {what} could lie"
                    via = "" if owner is cls else f" (from its base {_class_qualname(owner)})"
                    return f"an object of its own class {name}{via} whose {what} could lie"
        # A program subclass of a library class whose comparisons are Python code that calls other methods.
        if any(_class_flags(c) & _HEAPTYPE and self._has_program_code(c) for c in mro):
            for base in mro:
                if not _class_flags(base) & _HEAPTYPE or self.made(base):
                    continue
                own = _class_dict(base)
                if any(type(own.get(key)) is types.FunctionType for key in _JUDGING):
                    library = f"{base.__module__}.{_class_qualname(base)}"
                    return f"an object of its own class {name}, which overrides {library} (its == is Python)"
        return None

    def _has_program_code(self, cls: type) -> bool:
        return any(self.program_code(v, peek=False) for v in _class_dict(cls).values())

    def _could_lie(self, owner: type, chain: tuple, key: str, value, made: bool) -> bool:
        special = key.startswith("__") and key.endswith("__") and key not in _LIFECYCLE
        if self.program_code(value, peek=special):
            # The program's own methods are its business; its code inside a library class is a patch.
            return special or not made
        if not special or not made or value is None:
            return False
        kind = type(value)
        if _is_one_of(kind, (types.FunctionType, staticmethod, classmethod, property)):
            return False  # library code (program code was ruled out above)
        if _is_one_of(kind, _C_DESCRIPTORS):
            # A base's own C method is honest; `__eq__ = int.__ne__` is not.
            return not _is_one_of(value.__objclass__, chain) or (value.__name__ != key and key not in _TEXT)
        # Plain data (__slots__, __match_args__) is harmless; anything callable or a descriptor here is
        # code that answers for the program: `__eq__ = id`, `= bool`, a partial, a mock.
        return callable(value) or any("__get__" in _class_dict(c) for c in _class_mro(kind))

    # -- the objects handed over ---------------------------------------------------------------------------

    def search(self, value, probe: bool) -> str | None:
        """Why `value` (or an object inside it) could lie to the tests, or None."""
        self._reasons.clear()  # the program may have changed its classes since the last search
        self._made.clear()
        stack, visited, budget = [value], {}, _BUDGET
        while stack and budget > 0:
            obj = stack.pop()
            kind = type(obj)
            if id(kind) in _PLAIN or id(obj) in visited:
                continue
            visited[id(obj)] = obj  # holds temporaries (a pandas column) so that their ids stay unique
            budget -= 1
            reason = self.class_reason(kind)
            if reason is not None:
                return reason
            if _class_flags(kind) & _HEAPTYPE:
                self.seen[id(kind)] = kind
                if probe and self._claims_equality(obj):
                    return f"a {kind.__module__}.{_class_qualname(kind)} object that claims to equal anything"
            stack.extend(self._parts(obj, kind, budget))
        return None

    @staticmethod
    def _claims_equality(obj) -> bool:
        stranger = _Stranger()
        try:
            return _truthy_scalar(obj == stranger) or (obj != stranger) is False
        except Exception:  # a library object that refuses the comparison is not lying
            return False

    def _parts(self, obj, kind: type, budget: int) -> list:
        """The objects inside `obj` that a comparison of it would compare too."""
        try:
            if issubclass(kind, dict):
                return list(itertools.islice(itertools.chain.from_iterable(dict.items(obj)), budget))
            if issubclass(kind, _CONTAINERS):
                return list(itertools.islice(iter(obj), budget))
            if kind is types.SimpleNamespace or (_class_flags(kind) & _HEAPTYPE and self.made(kind)):
                return self._attributes(obj, kind)
            return self._cells(obj, kind, budget)
        except Exception:  # an odd library object: what could be read was read
            return []

    @staticmethod
    def _attributes(obj, kind: type) -> list:
        parts = []
        with contextlib.suppress(Exception):
            parts.extend(object.__getattribute__(obj, "__dict__").values())
        for owner in _class_mro(kind):
            for value in _class_dict(owner).values():
                if type(value) is types.MemberDescriptorType:  # __slots__
                    with contextlib.suppress(Exception):
                        parts.append(value.__get__(obj))
        return parts

    @staticmethod
    def _cells(obj, kind: type, budget: int) -> list:
        """Objects in numpy arrays and pandas objects of dtype object: they compare with Python's ==."""
        library = (kind.__module__ or "").partition(".")[0]
        if library == "numpy":
            dtype = getattr(obj, "dtype", None)
            if getattr(dtype, "hasobject", False) and hasattr(obj, "flat"):
                return list(itertools.islice(obj.flat, budget))
        elif library == "pandas":
            parts = [getattr(obj, attr, None) for attr in ("index", "columns", "name", "names")]
            if hasattr(obj, "dtypes") and hasattr(obj, "iloc") and hasattr(obj, "columns"):  # a DataFrame
                for i, dtype in enumerate(obj.dtypes):
                    if getattr(dtype, "kind", "") == "O":
                        parts.append(obj.iloc[:, i])
            elif getattr(getattr(obj, "dtype", None), "kind", "") == "O" and hasattr(obj, "to_numpy"):
                parts.append(obj.to_numpy())
            return parts
        return []

    def refuse(self, reason: str):
        if self.refusal is None:
            self.refusal = reason[:500]
        raise _Refused(reason)

    def hand_over(self, value, how: str):
        """`value` as the tests may see it, or a refusal. Generators and functions come back wrapped."""
        reason = self.search(value, probe=True)
        if reason is not None:
            self.refuse(f"the program {how} {reason}")
        kind = type(value)
        if kind is types.GeneratorType:
            return self._checked_generator(value)
        if _is_one_of(kind, (types.FunctionType, types.MethodType)) and self.program_code(value):
            return self.checked(value)
        return value

    def _checked_generator(self, gen):
        """Yields what `gen` yields, each checked; send, throw and close reach `gen`."""
        step, arg = gen.send, None
        while True:
            try:
                value = step(arg)
            except StopIteration as stop:
                return self.hand_over(stop.value, "returned")
            try:
                arg, step = (yield self.hand_over(value, "yielded")), gen.send
            except GeneratorExit:
                gen.close()
                raise
            except BaseException as err:
                step, arg = gen.throw, err

    def checked(self, fn):
        """`fn` for the tests: its results are handed over, and its arguments searched after the call."""
        guard = self
        flags = fn.__code__.co_flags if type(fn) is types.FunctionType else 0

        def after(args: tuple, kwargs: dict) -> None:
            reason = guard.search((args, kwargs), probe=False)  # the tests' inputs, which it may have filled
            if reason is not None:
                guard.refuse(f"the program left in its arguments {reason}")

        if flags & 0x20:  # CO_GENERATOR: stay a generator function, for inspect.isgeneratorfunction

            def call(*args, **kwargs):
                result = yield from guard._checked_generator(fn(*args, **kwargs))
                after(args, kwargs)
                return result

        elif flags & 0x80:  # CO_COROUTINE

            async def call(*args, **kwargs):
                result = guard.hand_over(await fn(*args, **kwargs), "returned")
                after(args, kwargs)
                return result

        else:

            def call(*args, **kwargs):
                result = guard.hand_over(fn(*args, **kwargs), "returned")
                after(args, kwargs)
                return result

        with contextlib.suppress(Exception):
            functools.update_wrapper(call, fn)
        return call

    def tests_namespace(self, namespace: dict) -> dict:
        """A copy of the program's namespace for the tests, its callables wrapped. A copy, so that the
        program's own calls skip the checks (and its recursion depth stays), and so that its functions,
        whose globals are the original, cannot reach what the tests define."""
        self._reasons.clear()
        self._made.clear()
        tests_ns = dict(namespace)
        for name, value in namespace.items():
            kind = type(value)
            if name.startswith("__") or issubclass(kind, types.ModuleType):
                continue
            if issubclass(kind, type):
                # Classes stay classes (isinstance), unless their objects could lie or their making runs
                # the program's code (a __new__ or metaclass __call__ may return anything).
                new = any(self.program_code(_class_dict(c).get("__new__")) for c in _class_mro(value))
                call = any(self.program_code(_class_dict(c).get("__call__")) for c in _class_mro(kind))
                if self.class_reason(value) is not None or new or call:
                    tests_ns[name] = self.checked(value)
            elif _is_one_of(kind, _FUNCTIONS) or (callable(value) and self.program_code(value)):
                # Not a library's callable object (a Flask app): the tests may need its attributes.
                tests_ns[name] = self.checked(value)
        return tests_ns

    # -- at the end ----------------------------------------------------------------------------------------

    def final_reason(self) -> str | None:
        """A refusal, a class changed after its object was handed over, or the program's code in a library."""
        if self.refusal is not None:
            return self.refusal
        self._reasons.clear()
        self._made.clear()
        for cls in list(self.seen.values()):
            reason = self.class_reason(cls)
            if reason is not None:
                return f"the program returned {reason} (its class was changed after the object was returned)"
        return self._patched_library()

    def _is_patch(self, value) -> bool:
        """The program's function or class, or its object where code belongs (callable, a descriptor); its
        other objects are data a program may store honestly (an asyncio policy)."""
        if not self.program_code(value, peek=False):
            return False
        kind = type(value)
        if _is_one_of(kind, _FUNCTIONS) or _is_one_of(kind, (staticmethod, classmethod, property)):
            return True
        return callable(value) or any("__get__" in _class_dict(c) for c in _class_mro(kind))

    def _patched_library(self) -> str | None:
        classes: dict[int, type] = {}
        for name, module in list(sys.modules.items()):
            attributes = getattr(module, "__dict__", None)
            if (
                type(attributes) is not dict
                or attributes is self.program_ns
                or attributes.get("__spec__") is None  # made at run time, not imported: __main__, the program
                or name.partition(".")[0] in _HOOK_MODULES
            ):
                continue
            for key, value in list(attributes.items()):
                kind = type(value)
                if issubclass(kind, type) and _class_flags(value) & _HEAPTYPE:
                    if self.made(value):
                        return f"the program put its own class into {name}.{key}"
                    classes.setdefault(id(value), value)
                elif self._is_patch(value):
                    return f"the program patched {name}.{key}"
        for cls in classes.values():
            for key, value in list(_class_dict(cls).items()):
                if self._is_patch(value):
                    return f"the program patched {cls.__module__}.{_class_qualname(cls)}.{key}"
        return None
