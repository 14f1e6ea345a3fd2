"""The house's shape: sub-packages import each other without cycles, plug-ins (tiny, world, baselines'
eval methods) are reached only through the `dllg.plugins` entry points, and registries refuse a second
entry under a taken name."""

import ast
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from dllg.errors import DllgError
from dllg.registry import register_unique

SRC = Path(__file__).parents[1] / "src"
PLUGINS = {"dllg.tiny", "dllg.world", "dllg.baselines"}


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Every dllg module `path` imports, at the top or inside a function, or names as a string."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("dllg.")
        ):
            names = [node.value]  # importlib.import_module("dllg.x") is an import too
        found.update(n for n in names if n in known)
    return found


def package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def package_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        for target in imports(path, known):
            if package(target) != package(name):
                graph.setdefault(package(name), set()).add(package(target))
    return graph


def test_sub_packages_import_each_other_without_cycles():
    graph = package_graph()
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join([*path, node])
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            visit(target, [*path, node])
        state[node] = "done"
        order.append(node)

    for node in sorted(graph):
        visit(node, [])
    assert "dllg.sources" in order and "dllg.pipeline" in order  # the graph was really read


def test_plug_ins_are_imported_by_nothing_below_them():
    graph = package_graph()
    for importer, targets in graph.items():
        if importer in PLUGINS or importer == "dllg.cli":
            continue  # plug-ins may use each other; the CLI sits on top of everything
        assert not targets & PLUGINS, f"{importer} imports plug-in(s) {sorted(targets & PLUGINS)}"


def test_plug_ins_are_declared_as_entry_points():
    declared = {entry.value for entry in entry_points(group="dllg.plugins")}
    assert {"dllg.tiny", "dllg.world.plugin", "dllg.baselines.methods"} <= declared


def test_one_resolver_knows_every_scheme():
    from dllg.sources import resolve_path, resolve_source

    assert resolve_source("tiny:3").kind == "memory"
    assert resolve_source("world:arith").kind == "packaged"
    assert (resolve_path("world:gate") / "gate.json").is_file()
    assert resolve_path("some/folder") == Path("some/folder")
    with pytest.raises(DllgError, match="integer seed"):
        resolve_source("tiny:x")


def test_a_registry_refuses_a_second_entry_under_a_taken_name():
    registry: dict[str, object] = {}

    def first() -> None: ...

    def second() -> None: ...

    register_unique(registry, "x", first, "thing")
    register_unique(registry, "x", first, "thing")  # the same entry again: harmless
    with pytest.raises(DllgError, match=r"two things are registered as 'x' .*rename one"):
        register_unique(registry, "x", second, "thing")
    assert registry["x"] is first


def test_every_registry_uses_the_refusing_helper():
    from dllg.fusion import RULES, FusionRule, register_rule

    class Impostor(FusionRule):
        name = "uniform"

        def fuse(self, inputs): ...

    with pytest.raises(DllgError, match="two fusion rules are registered as 'uniform'"):
        register_rule(Impostor)
    assert RULES["uniform"] is not Impostor
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        # a registry written to directly ("RULES[cls.name] = cls") would bypass the check
        assert not any(
            f"{name}[" in line and "] = " in line
            for line in text.splitlines()
            for name in ("RULES", "GATES", "TASKS", "VERIFIERS", "METHODS", "ROUTERS", "ENCODERS", "MERGES")
        ), path


def test_scripts_import_only_names_the_package_has():
    """The committed scripts run rarely (benchmarks, real-model jobs): a name they import that a refactor
    moved or renamed would break them unseen until then."""
    import importlib

    scripts = Path(__file__).parents[1] / "scripts"
    missing = []
    for path in sorted(scripts.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dllg")):
                continue
            try:
                module = importlib.import_module(node.module)
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.startswith("dllg"):
                    missing.append(f"{path.name}: {node.module}")
                continue  # an optional dependency this machine lacks
            missing += [
                f"{path.name}: {node.module}.{a.name}" for a in node.names if not hasattr(module, a.name)
            ]
    assert not missing, missing
