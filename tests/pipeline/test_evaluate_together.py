"""`dllg eval --together`: the fused methods decode each example in one tree of rows and write the very
records they write one after another (tiny experts, three GSM8K examples), resuming where some methods
have records already; what cannot decode together decodes alone."""

from dataclasses import replace

import pytest
import torch
from test_evaluate import CONFIG, gate_dir, pool, tasks  # noqa: F401 - fixtures of tests/pipeline

from dllg.errors import DllgError
from dllg.jsonl import read_records
from dllg.pipeline.evaluate import evaluate, record_key

SAME = ("response", "tokens", "finish", "correct")
CLOSE = ("weights", "weight_mean", "static_weights")  # fp32: a batch of another make-up moves the 6th decimal


def by_key(path) -> dict:
    return {record_key(r): r for r in read_records(path)}


def test_methods_decoded_together_write_the_records_they_write_apart(pool, tasks, gate_dir, tmp_path):  # noqa: F811
    first = [f"dllg:{gate_dir}", "uniform", "entropy", "expert:0"]
    second = [f"dllg-static:{gate_dir}", "packllm", "majority", "unite"]
    apart, together = tmp_path / "apart.jsonl", tmp_path / "together.jsonl"
    evaluate(pool, first + second, tasks, apart, CONFIG, batch_size=2)
    # uniform has one record already: its other two examples decode with the rest
    one = [replace(tasks[0], examples=tasks[0].examples[:1])]
    evaluate(pool, ["uniform"], one, together, CONFIG, batch_size=2)
    evaluate(pool, first, tasks, together, CONFIG, batch_size=2, together=True)
    # dllg's records are there now: its static ablation decodes together with the heuristics
    counts = evaluate(pool, second, tasks, together, CONFIG, batch_size=2, together=True)
    assert counts["generated"] == 12
    expected, got = by_key(apart), by_key(together)
    assert set(expected) == set(got)
    for key, record in expected.items():
        assert {f: record.get(f) for f in SAME} == {f: got[key].get(f) for f in SAME}, key
        for field in CLOSE:
            assert (field in record) == (field in got[key])
            if field in record:
                torch.testing.assert_close(
                    torch.tensor(got[key][field]), torch.tensor(record[field]), atol=2e-4, rtol=0
                )
    first_example = tasks[0].examples[0].id
    for (method, _, _, example), record in got.items():
        if method == "expert:0" or (method == "uniform" and example == first_example):
            assert "decoded_with" not in record  # decoded alone
        elif method in first:
            alone = {"uniform"} if example == first_example else set()
            partners = {m for m in first[:3] if m != method} - alone
            assert set(record["decoded_with"]) == partners
        else:
            assert set(record["decoded_with"]) == set(second) - {method}


def test_dllg_static_waits_for_its_gates_records_before_decoding_together(pool, tasks, gate_dir, tmp_path):  # noqa: F811
    out = tmp_path / "records.jsonl"
    evaluate(pool, [f"dllg-static:{gate_dir}", "uniform"], tasks, out, CONFIG, batch_size=3, together=True)
    records = list(read_records(out))
    assert len(records) == 9  # the gate's run, required, came first
    static = [r for r in records if r["method"] == f"dllg-static:{gate_dir}"]
    assert all("decoded_with" not in r for r in static)
    assert all(r["decoded_with"] == ["uniform"] for r in records if r["method"] == f"dllg:{gate_dir}")


def test_together_refuses_drafting(pool, tasks, tmp_path):  # noqa: F811
    config = replace(CONFIG, speculate="ngram")
    with pytest.raises(DllgError, match="--together decodes greedily without a drafter"):
        evaluate(pool, ["uniform", "entropy"], tasks, tmp_path / "r.jsonl", config, together=True)
