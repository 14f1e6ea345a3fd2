"""`dllg eval` on tiny experts and three offline GSM8K examples: records, resume, table, ablation, CLI."""

import csv
import json
import re
from dataclasses import replace

import pytest
import torch
import typer
from typer.testing import CliRunner

import dllg.pipeline.evaluate as evaluate_module
from dllg.cli.common import expand_multi_value_options
from dllg.cli.eval import eval_command
from dllg.decode import GenerationConfig, generate
from dllg.decode.prompts import encode_prompt
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.experts.loading import load_expert
from dllg.fusion import make_rule
from dllg.gate import GateConfig, build_gate, save_gate
from dllg.jsonl import read_records
from dllg.pipeline.evaluate import EvalTask, evaluate, load_eval_tasks, record_key
from dllg.pipeline.features import pool_meta
from dllg.pipeline.methods import make_method
from dllg.pipeline.report import (
    ablations,
    markdown_table,
    results_table,
    tag_table,
    truncation_table,
    write_tables,
)
from dllg.tasks.base import Example, user
from dllg.tiny import tiny_pool
from dllg.verify.base import Reference

CONFIG = GenerationConfig(max_new_tokens=5)


@pytest.fixture(scope="module")
def pool():
    return tiny_pool(dtype="fp32", device="cpu")


@pytest.fixture(scope="module")
def tasks():
    return load_eval_tasks(["gsm8k"], limit=3)


@pytest.fixture(scope="module")
def gate_dir(pool, tmp_path_factory):
    """An untrained MLP gate with random weights, so that its weights move from token to token."""
    meta = pool_meta(pool)
    config = GateConfig(
        variant="mlp", expert_names=meta["experts"], hidden_sizes=meta["hidden_sizes"], head_hidden=16
    )
    gate = build_gate(config)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in gate.parameters():
            param.normal_(0.0, 0.5)
    return str(save_gate(gate, tmp_path_factory.mktemp("gate") / "gate"))


def prompts(pool, tasks) -> list[list[int]]:
    return [encode_prompt(pool.tokenizer, e.messages) for e in tasks[0].examples]


def keys(records) -> list[tuple]:
    return [record_key(r) for r in records]


def test_one_record_per_method_and_example_with_weights_for_fused_methods(pool, tasks, tmp_path):
    out = tmp_path / "records.jsonl"
    counts = evaluate(pool, ["expert:0", "uniform"], tasks, out, CONFIG, batch_size=2)
    records = list(read_records(out))
    assert counts == {"generated": 6, "correct": sum(r["correct"] for r in records), "skipped": 0}
    assert sorted(keys(records)) == sorted(
        (m, "gsm8k", "eval", e.id) for m in ("expert:0", "uniform") for e in tasks[0].examples
    )
    for record in records:
        assert record["verdict"] in ("pass", "fail", "timeout", "error")
        assert record["correct"] == int(record["verdict"] == "pass")
        assert record["experts"] == pool.names and record["tokens"] >= 1
        if record["method"] == "expert:0":
            assert "weights" not in record
            continue
        weights = torch.tensor(record["weights"])
        assert weights.shape == (record["tokens"], 2)
        torch.testing.assert_close(torch.tensor(record["weight_mean"]), weights.mean(0), atol=1e-4, rtol=0)
        assert record["weight_var"] == [0.0, 0.0]  # uniform: the same weights at every token
        assert record["weight_entropy"] == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-5)
    again = evaluate(pool, ["expert:0", "uniform"], tasks, out, CONFIG, batch_size=2)
    assert again == {"generated": 0, "correct": 0, "skipped": 6}
    assert len(list(read_records(out))) == 6


def test_expert_method_equals_rule_single(pool, tasks, tmp_path):
    out = tmp_path / "records.jsonl"
    evaluate(pool, ["expert:tiny:1", "expert:0"], tasks, out, CONFIG, batch_size=3)
    by_method: dict[str, list[str]] = {}
    for record in read_records(out):
        by_method.setdefault(record["method"], []).append(record["response"])
    for method, expert in (("expert:tiny:1", 1), ("expert:0", 0)):
        direct = generate(pool, make_rule("single", expert=expert), prompts(pool, tasks), CONFIG)
        assert by_method[method] == [g.text for g in direct]


def test_a_killed_run_resumes_without_losing_or_duplicating(
    pool, tasks, tmp_path, monkeypatch, kill_at_verification
):
    methods = ["expert:1", "entropy"]  # 3 examples each, 2 rows decoding at once
    reference = tmp_path / "reference.jsonl"
    evaluate(pool, methods, tasks, reference, CONFIG, batch_size=2)

    out = tmp_path / "records.jsonl"
    kill_at_verification(evaluate_module, batch=3)  # each response is verified as it is done: 2 written
    with pytest.raises(KeyboardInterrupt):
        evaluate(pool, methods, tasks, out, CONFIG, batch_size=2)
    monkeypatch.undo()
    assert len(list(read_records(out))) == 2
    with open(out, "a") as handle:
        handle.write('{"method": "entropy", "task": "gsm8k"')  # a line torn by the kill

    counts = evaluate(pool, methods, tasks, out, CONFIG, batch_size=2)
    assert counts["generated"] == 4 and counts["skipped"] == 2
    records = list(read_records(out))
    assert len(keys(records)) == len(set(keys(records))) == 6

    def content(records):
        return {record_key(r): (r["response"], r["correct"], r.get("weights")) for r in records}

    assert content(records) == content(read_records(reference))


def test_resuming_with_other_generation_settings_is_refused(pool, tasks, tmp_path):
    out = tmp_path / "records.jsonl"
    evaluate(pool, ["expert:0"], tasks, out, CONFIG)
    assert all(r["generation"] == CONFIG.settings() for r in read_records(out))
    before = out.read_text()
    with pytest.raises(DllgError, match=r"made with max_new_tokens=5 \(now 7\): resume with the same"):
        evaluate(pool, ["expert:0", "expert:1"], tasks, out, GenerationConfig(max_new_tokens=7))
    assert out.read_text() == before  # nothing appended
    counts = evaluate(pool, ["expert:0", "expert:1"], tasks, out, CONFIG)  # the same settings resume
    assert counts["skipped"] == len(tasks[0].examples) and counts["generated"] == len(tasks[0].examples)


def test_drafting_from_the_other_methods_records_changes_no_answer(tmp_path):
    """`--speculate reference`: uniform drafts from the experts' recorded answers to the same examples
    (the world's trained experts, whose answers agree in stretches; float64: the same tokens exactly); the
    records say how they were drafted and how much was kept, and a run resumed with another drafter goes on
    (drafting is not a generation setting)."""
    pool = ExpertPool([load_expert(n, device="cpu", dtype="float64") for n in ("world:arith", "world:code")])
    tasks = load_eval_tasks(["world-mixed"], limit=4)
    config = GenerationConfig(max_new_tokens=64)
    plain, drafted = tmp_path / "plain.jsonl", tmp_path / "drafted.jsonl"
    evaluate(pool, ["expert:0", "expert:1", "uniform"], tasks, plain, config)
    evaluate(pool, ["expert:0", "expert:1"], tasks, drafted, config)
    reference = replace(config, speculate="reference", draft_tokens=6)
    assert evaluate(pool, ["uniform"], tasks, drafted, reference)["generated"] == 4

    def answers(path):
        return {record_key(r): (r["response"], r["weights"]) for r in read_records(path) if "weights" in r}

    assert answers(drafted) == answers(plain) and len(answers(plain)) == 4
    uniform = [r for r in read_records(drafted) if r["method"] == "uniform"]
    assert all(r["speculate"] == "reference" and r["draft_tokens"] == 6 for r in uniform)
    # most tokens came from the experts' answers (the prompt and output alone give far fewer)
    assert sum(r["accepted"] for r in uniform) > sum(r["tokens"] for r in uniform) / 2
    assert all("speculate" not in r and r["generation"] == config.settings() for r in read_records(plain))
    more = load_eval_tasks(["world-mixed"], limit=5)
    counts = evaluate(pool, ["uniform"], more, drafted, config)  # resumed plainly
    assert counts["generated"] == 1 and counts["skipped"] == 4


def test_table_equals_a_hand_count(tmp_path):
    def record(method, task, i, correct):
        return {
            "method": method,
            "task": task,
            "split": "eval",
            "example_id": f"{task}-{i}",
            "correct": correct,
        }

    records = [record("a", "t1", i, c) for i, c in enumerate([1, 1, 0])]
    records += [record("a", "t2", i, c) for i, c in enumerate([1, 0])]
    records += [record("b", "t1", i, c) for i, c in enumerate([0, 0, 1])]
    records += [record("b", "t2", i, c) for i, c in enumerate([1, 1])]
    records += [record("c", "t2", 0, 1)]  # no t1 records: no average either
    rows = results_table(records)
    assert rows == [
        {"method": "a", "t1": 66.67, "t2": 50.0, "avg": 58.33},
        {"method": "b", "t1": 33.33, "t2": 100.0, "avg": 66.67},
        {"method": "c", "t1": None, "t2": 100.0, "avg": None},
    ]
    md_path, csv_path = write_tables(rows, tmp_path / "tables", ["a note"])
    markdown = md_path.read_text()
    assert "| method | t1 | t2 | avg |" in markdown and "| a | 66.67 | 50.00 | 58.33 |" in markdown
    assert "| c | - | 100.00 | - |" in markdown and markdown.rstrip().endswith("a note")
    with open(csv_path) as handle:
        assert list(csv.DictReader(handle))[1] == {
            "method": "b",
            "t1": "33.33",
            "t2": "100.00",
            "avg": "66.67",
        }
    # a task seen under two splits gets a column per split
    split_rows = results_table([record("a", "t1", 0, 1), {**record("a", "t1", 0, 0), "split": "test"}])
    assert split_rows == [{"method": "a", "t1:eval": 100.0, "t1:test": 0.0, "avg": 50.0}]


def test_tag_table_groups_examples_by_their_tags():
    def example(i, tags):
        return Example(id=f"t-{i}", messages=user("q"), reference=Reference(answer="1"), verifier="math",
                       metadata={"tags": tags})  # fmt: skip

    task = EvalTask(
        "t", "test", [example(0, ["hard"]), example(1, ["hard"]), example(2, ["easy"]), example(3, [])]
    )
    records = [
        {"method": m, "task": "t", "split": "test", "example_id": f"t-{i}", "correct": c}
        for m, results in (("a", [1, 0, 1, 0]), ("b", [1, 1, 0, 1]))
        for i, c in enumerate(results)
    ]
    records.append({"method": "a", "task": "other", "split": "test", "example_id": "t-0", "correct": 0})
    assert tag_table(records, task) == [
        {"method": "a", "hard (n=2)": 50.0, "easy (n=1)": 100.0, "untagged (n=1)": 0.0},
        {"method": "b", "hard (n=2)": 100.0, "easy (n=1)": 0.0, "untagged (n=1)": 100.0},
    ]


def test_table_from_evaluated_records_matches_their_count(pool, tasks, tmp_path, monkeypatch):
    from dllg.verify import Verdict

    def even_length_passes(examples, responses, max_workers=2, finishes=None):
        return [Verdict("pass" if len(r) % 2 == 0 else "fail") for r in responses]

    monkeypatch.setattr(evaluate_module, "verify_responses", even_length_passes)
    out = tmp_path / "records.jsonl"
    evaluate(pool, ["expert:0", "expert:1", "majority"], tasks, out, CONFIG, batch_size=3)
    records = list(read_records(out))
    for row in results_table(records):
        mine = [r for r in records if r["method"] == row["method"]]
        expected = round(100 * sum(len(r["response"]) % 2 == 0 for r in mine) / len(mine), 2)
        assert row["gsm8k"] == row["avg"] == expected
    assert "| expert:0 |" in markdown_table(results_table(records))


def test_dllg_static_regenerates_with_each_responses_mean_gate_weights(pool, tasks, tmp_path, gate_dir):
    out = tmp_path / "records.jsonl"
    first = evaluate(pool, [f"dllg:{gate_dir}"], tasks, out, CONFIG, batch_size=3)
    counts = evaluate(pool, [f"dllg-static:{gate_dir}"], tasks, out, CONFIG, batch_size=3)
    assert first["generated"] == 3
    assert counts["generated"] == 3 and counts["skipped"] == 3  # the gate's records were reused
    records = list(read_records(out))
    dynamic = {r["example_id"]: r for r in records if r["method"] == f"dllg:{gate_dir}"}
    static = {r["example_id"]: r for r in records if r["method"] == f"dllg-static:{gate_dir}"}
    assert set(dynamic) == set(static) == {e.id for e in tasks[0].examples}
    assert any(max(r["weight_var"]) > 1e-4 for r in dynamic.values())  # the gate's weights do move
    for example, prompt in zip(tasks[0].examples, prompts(pool, tasks), strict=True):
        used = static[example.id]["static_weights"]
        assert used == dynamic[example.id]["weight_mean"]
        torch.testing.assert_close(
            torch.tensor(used), torch.tensor(dynamic[example.id]["weights"]).mean(0), atol=1e-4, rtol=0
        )
        assert all(row == [round(w, 4) for w in used] for row in static[example.id]["weights"])
        direct = generate(pool, make_rule("static", weights=used), [prompt], CONFIG)[0]
        assert static[example.id]["response"] == direct.text
    [ablation] = ablations(records)
    assert ablation.gate == gate_dir and ablation.examples == 3
    assert ablation.weight_var > 0 and 0 < ablation.weight_entropy < 0.7


def test_dllg_static_alone_also_keeps_the_gate_run(pool, tasks, tmp_path, gate_dir):
    out = tmp_path / "records.jsonl"
    evaluate(pool, [f"dllg-static:{gate_dir}"], tasks, out, CONFIG, batch_size=2)
    methods = [r["method"] for r in read_records(out)]
    assert methods.count(f"dllg:{gate_dir}") == methods.count(f"dllg-static:{gate_dir}") == 3


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "unknown method 'nope': use one of expert:NAME, uniform"),
        ("routr:x", "dllg-static:PATH, router:FOLDER, merge:linear|slerp|task_arithmetic@BASE|FOLDER"),
        ("dllg", "needs an argument: write dllg:PATH"),
        ("expert:", "needs an argument: write expert:NAME"),
        ("uniform:probs", "takes no argument"),
        ("static:a,b", "is not a list of numbers: write e.g. static:0.3,0.7"),
    ],
)
def test_bad_method_names_are_clear_errors(name, message):
    with pytest.raises(DllgError, match=re.escape(message)):
        make_method(name)


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("expert:nobody", "no expert named 'nobody'"),
        ("expert:5", "out of range"),
        ("static:1", "got 1 weights for 2 experts"),
        ("dllg:/no/such/gate", "is not a gate checkpoint"),
    ],
)
def test_methods_that_do_not_fit_the_pool_fail_before_generating(pool, tasks, tmp_path, method, message):
    out = tmp_path / "records.jsonl"
    with pytest.raises(DllgError, match=message):
        evaluate(pool, ["uniform", method], tasks, out, CONFIG)
    assert not out.exists()


def test_records_of_other_experts_are_refused(pool, tasks, tmp_path):
    out = tmp_path / "records.jsonl"
    out.write_text(json.dumps({"method": "uniform", "experts": ["a", "b"]}) + "\n")
    with pytest.raises(DllgError, match=r"experts \['a', 'b'\] .*same experts \(in the same order"):
        evaluate(pool, ["uniform"], tasks, out, CONFIG)


def cli_app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so that `eval` is a subcommand as under `dllg`
    app.command("eval")(eval_command)
    return app


def test_cli_prints_and_writes_the_table(tmp_path):
    out = tmp_path / "eval" / "records.jsonl"
    args = ["eval", "--experts", "tiny:0", "tiny:1", "--methods", "expert:tiny:0", "uniform"]
    args += ["--tasks", "gsm8k", "--limit", "2", "--out", str(out), "--max-new-tokens", "3"]
    args += ["--batch-size", "2", "--dtype", "fp32", "--device", "cpu"]
    result = CliRunner().invoke(
        cli_app(), expand_multi_value_options(args, ("--experts", "--methods", "--tasks"))
    )
    assert result.exit_code == 0, result.output
    assert "4 new" in result.output and "expert:tiny:0" in result.output and "uniform" in result.output
    records = list(read_records(out))
    written = (out.parent / "results.md").read_text()
    assert written.startswith(markdown_table(results_table(records)))  # one expert: no oracle row
    assert markdown_table(truncation_table(records)).rstrip() in written
    with open(out.parent / "results.csv") as handle:
        assert [r["method"] for r in csv.DictReader(handle)] == ["expert:tiny:0", "uniform"]


def test_cli_bad_method_is_one_error_line(tmp_path):
    args = [
        "eval",
        "--experts",
        "tiny:0",
        "--methods",
        "best",
        "--tasks",
        "gsm8k",
        "--out",
        str(tmp_path / "r"),
    ]
    result = CliRunner().invoke(
        cli_app(), expand_multi_value_options(args, ("--experts", "--methods", "--tasks"))
    )
    assert result.exit_code == 1
    assert "error: unknown method 'best'" in result.output


def test_a_gate_retrained_in_place_is_not_mixed_with_its_old_answers(pool, tasks, tmp_path):
    """Records keep a digest of the gate they were made with: a gate rewritten under the same path (and its
    dllg-static rows) must not resume the old file."""
    meta = pool_meta(pool)
    config = GateConfig(variant="mlp", expert_names=meta["experts"], hidden_sizes=meta["hidden_sizes"])
    folder = tmp_path / "gate"
    save_gate(build_gate(config), folder)
    out = tmp_path / "records.jsonl"
    evaluate(pool, [f"dllg-static:{folder}"], tasks, out, CONFIG)
    records = list(read_records(out))
    assert len({r["method_weights"] for r in records}) == 1 and all(r["expert_weights"] for r in records)
    assert (
        evaluate(pool, [f"dllg-static:{folder}"], tasks, out, CONFIG)["generated"] == 0
    )  # unchanged: resumes
    # shipping the gate as a preset adds preset.json, which `dllg:FOLDER` never reads: still the same gate
    (folder / "preset.json").write_text('{"description": "d", "experts": [], "options": {"power": 4}}')
    assert evaluate(pool, [f"dllg-static:{folder}"], tasks, out, CONFIG)["generated"] == 0
    retrained = build_gate(config)
    with torch.no_grad():
        for param in retrained.parameters():
            param.add_(0.1)
    save_gate(retrained, folder)
    before = out.read_text()
    with pytest.raises(DllgError, match=r"method_weights .* \(now .*\): resume with the same .*gates"):
        evaluate(pool, [f"dllg-static:{folder}"], tasks, out, CONFIG)
    assert out.read_text() == before
