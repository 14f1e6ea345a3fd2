"""`dllg eval --holdout F`: fused decoding on exactly the prompts `dllg train` holds out at val_fraction F."""

import json

import pytest
from typer.testing import CliRunner

from dllg.cli.common import expand_multi_value_options
from dllg.cli.main import app
from dllg.errors import DllgError
from dllg.pipeline.evaluate import load_eval_tasks
from dllg.pipeline.holdout import is_validation, validation_tasks

runner = CliRunner()


def test_holdout_keeps_exactly_the_validation_ids_of_each_task():
    tasks = load_eval_tasks(["gsm_symbolic:train", "dataframebench:train"])
    kept = validation_tasks(tasks, 0.1)
    for whole, part in zip(tasks, kept, strict=True):
        expected = [e.id for e in whole.examples if is_validation(e.id, 0.1)]
        assert [e.id for e in part.examples] == expected
        assert 0 < len(expected) < len(whole.examples) * 0.2  # about a tenth, never the whole split
    bigger = validation_tasks(tasks, 0.3)  # a larger fraction holds out a superset: the split is nested
    for small, large in zip(kept, bigger, strict=True):
        assert {e.id for e in small.examples} < {e.id for e in large.examples}


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_a_fraction_outside_0_1_is_refused(fraction):
    with pytest.raises(DllgError, match="between 0 and 1"):
        validation_tasks(load_eval_tasks(["gsm_symbolic:train"]), fraction)


def test_eval_holdout_records_only_the_held_out_prompts(tmp_path):
    out = tmp_path / "records.jsonl"
    args = ["eval", "--experts", "tiny:0", "tiny:1", "--methods", "expert:0", "--tasks", "gsm_symbolic:train"]
    args += ["--holdout", "0.1", "--out", str(out), "-n", "2", "--batch-size", "4"]
    args += ["--dtype", "fp32", "--device", "cpu"]
    result = runner.invoke(app, expand_multi_value_options(args))
    assert result.exit_code == 0, result.output
    ids = {json.loads(line)["example_id"] for line in out.read_text().splitlines()}
    whole = load_eval_tasks(["gsm_symbolic:train"])[0].examples
    assert ids == {e.id for e in whole if is_validation(e.id, 0.1)}
