"""`dllg bench gate`: a row per gate variant (the aux-LM ones per kept layer count), timed in one run."""

from typer.testing import CliRunner

from dllg.cli.common import expand_multi_value_options
from dllg.cli.main import app
from dllg.gate import GATES


def test_the_gate_benchmark_prints_each_variants_share_of_the_experts_step():
    args = ["bench", "gate", "--experts", "world:arith", "world:code", "--batch-sizes", "1"]
    args += ["--steps", "2", "--repeats", "1", "--aux-layers", "all,1", "--dtype", "fp32"]
    result = CliRunner().invoke(app, expand_multi_value_options(args))
    assert result.exit_code == 0, result.output
    lines = [line[line.index("backend=") :] for line in result.output.splitlines() if "gate_ms=" in line]
    rows = [dict(p.split("=", 1) for p in line.split()) for line in lines]  # after any progress bar
    expected = sorted(
        (v, o) for v in GATES for o in (["-", "aux_layers:1"] if v.endswith("aux_lm") else ["-"])
    )
    assert sorted((r["variant"], r["options"]) for r in rows) == expected
    for row in rows:
        share = float(row["gate_ms"]) / float(row["experts_ms"])
        assert abs(share - float(row["gate_share_of_experts"])) < 0.01
    params = {(r["variant"], r["options"]): float(r["gate_params_m"]) for r in rows}
    assert params["aux_lm", "aux_layers:1"] < params["aux_lm", "-"]  # fewer aux layers, a lighter gate


def test_the_training_benchmark_times_each_variant_in_each_precision():
    args = ["bench", "gate-train", "--experts", "world:arith", "world:code", "--variants", "mlp,aux_lm"]
    args += ["--aux-layers", "1", "--batch-size", "2", "--tokens", "4", "--steps", "1"]
    result = CliRunner().invoke(app, expand_multi_value_options(args))
    assert result.exit_code == 0, result.output
    output = result.output.splitlines()
    lines = [line[line.index("variant=") :] for line in output if "train_step_s=" in line]
    rows = [dict(p.split("=", 1) for p in line.split()) for line in lines]  # after any progress bar
    assert sorted((r["variant"], r["options"], r["precision"]) for r in rows) == [
        ("aux_lm", "aux_layers:1", "bf16"),
        ("aux_lm", "aux_layers:1", "fp32"),
        ("mlp", "-", "bf16"),
        ("mlp", "-", "fp32"),
    ]
    assert all(float(r["train_step_s"]) > 0 for r in rows)
