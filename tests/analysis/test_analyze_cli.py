"""`dllg analyze` and `dllg plot` through the CLI: outputs where they belong, one-line errors, exit codes."""

import sys

from hand_records import make_record  # tests/analysis/hand_records.py
from typer.testing import CliRunner

from dllg.cli.main import app

runner = CliRunner()


def invoke(args):
    return runner.invoke(app, [str(a) for a in args], terminal_width=200)


def test_analyze_writes_beside_the_records_and_prints_the_markdown(records_file):
    result = invoke(["analyze", records_file])
    assert result.exit_code == 0, result.output
    folder = records_file.parent / "analysis"
    assert (folder / "analysis.md").read_text().strip() in result.output.replace("\r", "")
    assert (folder / "analysis.csv").is_file()
    assert "Skipped (no per-token weights): expert:a." in result.output


def test_analyze_errors_are_one_line(tmp_path):
    missing = invoke(["analyze", tmp_path / "nope.jsonl"])
    assert missing.exit_code == 1 and "no such records file" in missing.output
    assert missing.output.strip().count("\n") == 0 and "Traceback" not in missing.output
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"method": "expert:a", "task": "t", "example_id": "t/0", "correct": 1}\n')
    unweighted = invoke(["analyze", plain, "--out", tmp_path / "out"])
    assert unweighted.exit_code == 1 and "no record carries per-token `weights`" in unweighted.output
    assert not (tmp_path / "out").exists()


def test_plot_prints_the_files_and_takes_ids_comma_separated_or_repeated(records_file, tmp_path):
    out = tmp_path / "figures"
    result = invoke(["plot", records_file, "--out", out, "--ids", "t/0,t/1", "--ids", "t/3"])
    assert result.exit_code == 0, result.output
    printed = result.output.split()
    assert sorted(printed) == sorted(str(p) for p in out.iterdir())
    assert {p.stem for p in out.iterdir() if p.stem.startswith("weights")} == {
        "weights-dllg-g-t-0",
        "weights-dllg-g-t-1",
        "weights-dllg-g-t-3",
    }


def test_plot_without_matplotlib_names_the_install(records_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    result = invoke(["plot", records_file, "--out", tmp_path / "figures"])
    assert result.exit_code == 1 and "pip install matplotlib" in result.output
    assert not (tmp_path / "figures").exists()


def test_analyze_only_the_methods_named(records_file, tmp_path):
    """The gate's own rows and its static ablation; the other fused methods' rows left out; an unknown
    method is a one-line error."""
    import json

    with records_file.open("a") as out:
        weights = [[0.5, 0.5]] * 2
        out.write(json.dumps(make_record("uniform", "t/0", 1, weights)) + "\n")
    every = invoke(["analyze", records_file, "--out", tmp_path / "all"])
    only = invoke(["analyze", records_file, "--methods", "dllg:g", "--out", tmp_path / "only"])
    assert every.exit_code == 0 and only.exit_code == 0, only.output
    assert "### uniform on t" in every.output and "### uniform on t" not in only.output
    assert "### dllg:g on t" in only.output and "| g | t |" in only.output  # the static comparison stays
    unknown = invoke(["analyze", records_file, "--methods", "entropy"])
    assert unknown.exit_code == 1 and "no records of entropy; name methods it holds" in unknown.output
