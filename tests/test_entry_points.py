"""What the README's entry points need is installed or checked before they run: the Makefile's targets
that verify code depend on the sandbox target, and every command that verifies code says at once, before
any model runs, that bubblewrap is missing."""

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dllg.cli.main import app

ROOT = Path(__file__).parents[1]
runner = CliRunner()


def make_targets() -> dict[str, tuple[list[str], list[str]]]:
    """target -> (prerequisites, recipe lines), read from the Makefile."""
    targets: dict[str, tuple[list[str], list[str]]] = {}
    current = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        rule = re.match(r"^([\w.$()/-]+):(?!=)\s*(.*)$", line)
        if rule:
            current = rule.group(1)
            targets[current] = (rule.group(2).split(), [])
        elif line.startswith("\t") and current:
            targets[current][1].append(line.strip())
    return targets


def test_every_make_target_that_verifies_code_installs_the_sandbox():
    targets = make_targets()
    verifying = [
        name
        for name, (_, recipe) in targets.items()
        if any(re.search(r"dllg (demo|eval|collect|verify)|-m pytest", line) for line in recipe)
    ]
    assert {"demo", "test"} <= set(verifying)  # the README's two quickstart commands
    for name in verifying:
        assert "sandbox" in targets[name][0], f"make {name} verifies code but does not depend on sandbox"
    assert any("apt-get install" in line and "bubblewrap" in line for line in targets["sandbox"][1])


def test_readme_quickstart_targets_exist():
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"^make (\w+)", readme, re.MULTILINE):
        assert target in make_targets(), f"README shows `make {target}`, which the Makefile lacks"


@pytest.fixture
def no_bubblewrap(monkeypatch):
    from dllg.verify import code

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "bwrap" else real_which(name))
    monkeypatch.setattr(code.CodeVerifier, "_sandbox", None, raising=False)
    fresh = code.CodeVerifier()
    monkeypatch.setitem(__import__("dllg.verify.base", fromlist=["VERIFIERS"]).VERIFIERS, "code", fresh)


def test_demo_stops_before_any_model_runs_without_bubblewrap(no_bubblewrap, tmp_path, monkeypatch):
    import dllg.ensemble

    def no_models(*args, **kwargs):
        raise AssertionError("a model was loaded before the sandbox was checked")

    monkeypatch.setattr(dllg.ensemble.Ensemble, "__init__", no_models)
    result = runner.invoke(app, ["demo", "--limit", "1", "--out", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 1
    assert "needs bubblewrap" in result.output and "apt-get install" in result.output


def test_collect_stops_before_generating_without_bubblewrap(no_bubblewrap, tmp_path, monkeypatch):
    from dllg.pipeline import collect

    def no_generation(*args, **kwargs):
        raise AssertionError("answers were generated before the sandbox was checked")

    monkeypatch.setattr(collect, "generate_stream", no_generation)
    config = ROOT / "configs" / "tiny.yaml"
    args = [
        "collect",
        "--config",
        str(config),
        "--set",
        f"collect.out={tmp_path}/labels.jsonl",
        "--limit",
        "1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "needs bubblewrap" in result.output
    assert not (tmp_path / "labels.jsonl").exists()


def test_make_test_builds_the_llamacpp_backend_so_its_tests_run():
    targets = make_targets()
    assert "llamacpp" in targets["test"][0]
    assert any("[llamacpp]" in line for line in targets["$(LLAMACPP_STAMP)"][1])
    assert "llamacpp" not in targets["demo"][0]  # the quickstart demo does not wait for a C++ build
