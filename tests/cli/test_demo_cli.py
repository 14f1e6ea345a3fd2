"""`dllg demo` on the shipped world: the fused answer with weights, then every method's table; resumable."""

import json

from typer.testing import CliRunner

from dllg.cli.demo import WORLD_METHODS, WORLD_TASK_NAMES, headline
from dllg.cli.main import app
from dllg.world.assets import assets_fingerprint

runner = CliRunner()


def test_demo_prints_the_weights_and_the_table_and_resumes(tmp_path):
    out = tmp_path / "demo" / "records.jsonl"
    args = ["demo", "--limit", "2", "--out", str(out), "--workers", "1"]
    first = runner.invoke(app, args, terminal_width=200)
    assert first.exit_code == 0, first.output
    assert "expert weights per token" in first.output and "verdict:" in first.output
    for method in WORLD_METHODS:
        assert method in first.output
    assert "Dynamic vs static weights" in first.output
    assert "world-mixed: dllg:world:gate" in first.output and "vs the best other method" in first.output

    records_file = tmp_path / "demo" / assets_fingerprint() / "records.jsonl"
    records = [json.loads(line) for line in records_file.read_text().splitlines()]
    assert len(records) == len(WORLD_METHODS) * len(WORLD_TASK_NAMES) * 2
    assert {r["method"] for r in records} == set(WORLD_METHODS)
    fused = [r for r in records if r["method"] in ("uniform", "dllg:world:gate")]
    assert fused and all(len(r["weights"]) == r["tokens"] for r in fused)
    main_table, tag_table = (records_file.parent / "results.md").read_text().split("\n\n")[:3:2]
    assert main_table.count("\n| ") == len(WORLD_METHODS) + 1  # a row per method and the oracle
    assert "needs-both" in tag_table and tag_table.count("\n| ") == len(WORLD_METHODS)

    again = runner.invoke(app, args, terminal_width=200)
    assert again.exit_code == 0, again.output
    assert "0 new" in again.output
    assert len(records_file.read_text().splitlines()) == len(records)


def test_headline_names_the_best_other_row_and_the_margin():
    rows = [
        {"method": "a", "t": 30.0},
        {"method": "dllg:g", "t": 52.0},
        {"method": "dllg-static:g", "t": 34.0},
        {"method": "b", "t": None},
    ]
    line = headline(rows, "t", "dllg:g")
    assert line == "t: dllg:g 52.00 vs the best other method, dllg-static:g, 34.00: +18.00 points"
    assert "no comparison" in headline([{"method": "a", "t": 1.0}], "t", "dllg:g")
