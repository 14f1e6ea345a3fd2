"""The results table's oracle row and the truncation table, counted by hand from small record sets."""

from dllg.pipeline.report import ORACLE, markdown_table, results_table, truncation_table


def record(method: str, task: str, i: int, correct: int, finish: str | None = "eos") -> dict:
    found = {"method": method, "task": task, "split": "test", "example_id": f"{task}/{i}", "correct": correct}
    return found | ({"finish": finish} if finish is not None else {})


def results_of(method: str, task: str, correct: list[int]) -> list[dict]:
    return [record(method, task, i, c) for i, c in enumerate(correct)]


def test_oracle_counts_an_example_right_when_any_expert_got_it_right():
    records = results_of("expert:a", "t1", [1, 0, 0, 1]) + results_of("expert:b", "t1", [0, 1, 0, 0])
    records += results_of("expert:a", "t2", [0, 0]) + results_of("expert:b", "t2", [0, 1])
    records += results_of("uniform", "t1", [1, 1, 1, 1]) + results_of("uniform", "t2", [1, 1])
    rows = results_table(records, oracle=True)
    assert [row["method"] for row in rows] == ["expert:a", "expert:b", "uniform", ORACLE]
    assert rows[-1] == {"method": ORACLE, "t1": 75.0, "t2": 50.0, "avg": 62.5}
    assert results_table(records) == rows[:-1]  # off unless asked: existing callers see the same rows
    assert "| oracle | 75.00 | 50.00 | 62.50 |" in markdown_table(rows)


def test_oracle_counts_only_examples_every_expert_answered():
    records = results_of("expert:a", "t1", [0, 0, 1]) + results_of("expert:b", "t1", [1, 0])  # b lacks t1/2
    records += results_of("expert:a", "t2", [1])  # b has no t2 records: no oracle there, nor an average
    [*_, oracle] = results_table(records, oracle=True)
    assert oracle == {"method": ORACLE, "t1": 50.0, "t2": None, "avg": None}


def test_no_oracle_row_with_fewer_than_two_experts():
    records = results_of("expert:a", "t1", [1, 0]) + results_of("router:r", "t1", [1, 1])
    assert [row["method"] for row in results_table(records, oracle=True)] == ["expert:a", "router:r"]


def test_truncation_table_is_the_share_of_answers_cut_at_the_token_limit():
    records = [record("a", "t1", i, 1, f) for i, f in enumerate(["length", "eos", "eos", "length"])]
    records += [record("a", "t2", i, 0, f) for i, f in enumerate(["stop", "length", "eos", "eos", "eos"])]
    records += [record("b", "t1", 0, 1, "eos"), record("b", "t2", 0, 1, None)]  # an old record: no finish
    assert truncation_table(records) == [
        {"method": "a", "t1": 50.0, "t2": 20.0, "avg": 35.0},
        {"method": "b", "t1": 0.0, "t2": None, "avg": None},
    ]
