"""`dllg serve`'s options: the experts named once (a run config or --experts), the rule and gate resolved
before any expert loads, and one-line errors for what does not fit together."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dllg.cli.common import expand_multi_value_options
from dllg.cli.main import app
from dllg.cli.serve import pool_and_rule
from dllg.errors import DllgError

CONFIG = Path(__file__).parents[2] / "configs" / "tiny.yaml"
runner = CliRunner()


def serve(args: list[str]):
    return runner.invoke(app, expand_multi_value_options(["serve", *args]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --config RUN.yaml or --experts A B"),
        (["--config", str(CONFIG), "--experts", "tiny:0"], "give --config RUN.yaml or --experts A B"),
        (
            ["--experts", "tiny:0", "tiny:1", "--gate", "g", "--fusion", "uniform"],
            "--gate fuses with rule dllg",
        ),
        (["--experts", "tiny:0", "--fusion", "dllg"], "--fusion dllg needs a trained gate"),
        (["--experts", "tiny:0", "--fusion", "no-such-rule"], "no-such-rule"),
    ],
)
def test_conflicting_options_are_one_line_errors(args: list[str], message: str):
    result = serve(args)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_a_run_config_names_the_experts():
    pool, rule = pool_and_rule(CONFIG, None, None, None, {}, "auto", "auto", "hf")
    assert pool.names == ["tiny:0", "tiny:1"] and rule.name == "uniform"
    pool, rule = pool_and_rule(
        None, ["tiny:1", "tiny:0"], "static", None, {"weights": [0.3, 0.7]}, "cpu", "fp32", "hf"
    )
    assert pool.names == ["tiny:1", "tiny:0"] and rule.name == "static"


def test_fusion_dllg_with_a_config_reads_the_gate_it_trains(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"experts:\n  - name: tiny:0\n  - name: tiny:1\ntrain:\n  out_dir: {tmp_path / 'trained'}\n"
    )
    with pytest.raises(DllgError, match=f"{tmp_path / 'trained' / 'gate'} is not a gate checkpoint"):
        pool_and_rule(config, None, "dllg", None, {}, "auto", "auto", "hf")
