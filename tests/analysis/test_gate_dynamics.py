"""The statistics of `dllg analyze` on hand-written records whose switches, leaders and pairs are known."""

import csv
import math

import numpy as np
import pytest
from hand_records import DYNAMIC, make_record

from dllg.analysis.dynamics import (
    StaticComparison,
    analyze,
    leaders,
    permutation_p,
    position_profile,
    response_metrics,
    static_comparisons,
    summaries,
    switch_tokens,
    thirds,
    weighted_records,
)
from dllg.analysis.dynamics_report import write_analysis
from dllg.errors import DllgError


def summary_of(records, method="dllg:g", task="t"):
    weighted, _ = weighted_records(records, "test")
    return next(s for s in summaries(weighted) if (s.method, s.task) == (method, task))


def test_leaders_mark_ties_and_switches_skip_them():
    lead = leaders(np.array([[0.5, 0.5], [0.2, 0.8], [0.5, 0.5], [0.9, 0.1], [0.9, 0.1]]))
    assert lead.tolist() == [-1, 1, -1, 0, 0]
    assert switch_tokens(lead) == [3]  # b -> (tie) -> a: one change of leader, where a takes over
    assert switch_tokens(np.array([0, 1, 0, 0, 1])) == [1, 2, 4]
    assert switch_tokens(np.array([-1, -1, 1, 1])) == []  # the first leader is no switch
    assert thirds(6).tolist() == [0, 0, 1, 1, 2, 2]
    assert thirds(4).tolist() == [0, 0, 1, 2]


def test_one_response_switch_counts_thirds_and_lead_shares():
    values = response_metrics(make_record("dllg:g", "t/0", 1, DYNAMIC["t/0"][1]))
    assert values["switches"] == 2 and values["switch_rate"] == pytest.approx(2 / 5)
    assert [values[f"switches_{t}"] for t in ("first", "middle", "last")] == [0, 1, 1]
    assert values["lead[a]"] == pytest.approx(4 / 6) and values["lead[b]"] == pytest.approx(2 / 6)
    assert values["lead[tie]"] == 0
    assert values["lead_first[a]"] == 1 and values["lead_middle[b]"] == 1 and values["lead_last[a]"] == 1

    tied = response_metrics(make_record("dllg:g", "t/1", 0, DYNAMIC["t/1"][1]))
    assert tied["lead[tie]"] == 0.5 and tied["lead_first[b]"] == 0.5 and tied["lead_middle[tie]"] == 1
    assert tied["switches"] == 1 and tied["switches_last"] == 1

    short = response_metrics(make_record("dllg:g", "t/2", 0, DYNAMIC["t/2"][1]))
    assert math.isnan(short["switches"]) and math.isnan(short["switches_first"])
    assert short["lead[b]"] == 1 and math.isnan(short["lead_last[b]"])  # no token in the last third


def test_groups_split_correct_from_incorrect(records):
    summary = summary_of(records)
    assert summary.sizes == {"all": 4, "correct": 2, "incorrect": 2} and summary.short == 1
    means = summary.means
    assert means["correct"]["switches"] == 2 and means["incorrect"]["switches"] == 1  # t/2 has none
    assert means["all"]["switches"] == pytest.approx(5 / 3)
    assert means["correct"]["switches_first"] == 0 and means["incorrect"]["switches_last"] == 1
    assert means["correct"]["lead[a]"] == pytest.approx((4 / 6 + 1 / 3) / 2)
    assert means["incorrect"]["lead[tie]"] == pytest.approx(0.25)
    assert means["incorrect"]["lead_middle[tie]"] == 1  # t/2 has no middle third
    expected_mean_a = np.mean([np.mean(np.array(DYNAMIC[i][1])[:, 0]) for i in ("t/0", "t/3")])
    assert means["correct"]["weight_mean[a]"] == pytest.approx(expected_mean_a, abs=1e-6)
    assert set(summary.p_values) == set(means["all"]) and all(0 < p <= 1 for p in summary.p_values.values())
    only_correct = summary_of(records, task="u")
    assert only_correct.sizes["incorrect"] == 0 and set(only_correct.p_values.values()) == {None}


def test_a_task_with_two_splits_is_two_groups(records):
    records = [*records, make_record("dllg:g", "t/0", 0, [[0.1, 0.9], [0.2, 0.8]]) | {"split": "dev"}]
    weighted, _ = weighted_records(records, "test")
    found = {(s.method, s.task): s.sizes["all"] for s in summaries(weighted)}
    assert found[("dllg:g", "t:test")] == 4 and found[("dllg:g", "t:dev")] == 1


def test_permutation_p_matches_the_exact_value():
    # 3 vs 3 completely separated: 2 of the 20 splits are as extreme, p = 0.1
    assert permutation_p(np.zeros(3), np.ones(3)) == pytest.approx(0.1, abs=0.015)
    assert permutation_p(np.ones(4), np.ones(3)) == 1.0
    assert permutation_p(np.array([1.0, np.nan]), np.array([np.nan])) is None
    far = permutation_p(np.arange(20.0), np.arange(20.0) + 30)
    assert far == pytest.approx(1 / 10000)


def test_dynamic_vs_static_pairs_count_the_same_examples(records):
    comparisons = static_comparisons(records)
    assert [(c.gate, c.task) for c in comparisons] == [("g", "t"), ("g", "u")]
    on_t = comparisons[0]
    assert on_t.examples == 4  # t/9 has no dynamic record
    assert (on_t.dynamic_correct, on_t.static_correct) == (2, 2)
    assert (on_t.dynamic_only, on_t.static_only) == (1, 1) and on_t.difference == 0
    assert comparisons[1].examples == 1 and comparisons[1].dynamic == comparisons[1].static == 100.0


def test_mcnemar_p_is_the_exact_binomial_tail():
    def p(dynamic_only, static_only):
        return StaticComparison("g", "t", 50, 0, 0, dynamic_only, static_only).mcnemar_p

    assert p(3, 0) == pytest.approx(2 / 8)
    assert p(1, 1) == 1.0 and p(0, 0) == 1.0
    assert p(25, 2) == pytest.approx(2 * (1 + 27 + math.comb(27, 2)) / 2**27)


def test_position_profile_averages_each_response_per_bin():
    short = np.array([[1.0, 0.0], [0.0, 1.0]])  # one token per half
    longer = np.array([[0.5, 0.5], [0.7, 0.3], [0.1, 0.9], [0.3, 0.7]])  # two tokens per half
    profile = position_profile([short, longer], bins=2)
    assert profile[:, 0].tolist() == pytest.approx([(1.0 + 0.6) / 2, (0.0 + 0.2) / 2])
    sparse = position_profile([short], bins=4)  # 2 tokens, 4 bins: two bins without a token
    assert np.isnan(sparse[:, 0]).tolist() == [True, False, True, False]


def test_the_csv_and_markdown_hold_every_group(records_file):
    analysis = analyze(records_file)
    assert analysis.skipped == ["expert:a"]
    md_path, csv_path, markdown = write_analysis(analysis, records_file.parent / "out")
    assert md_path.read_text() == markdown
    assert "Skipped (no per-token weights): expert:a." in markdown
    assert "| g | t | 4 | 50.00 | 50.00 | +0.00 | 1 | 1 | 1.0000 |" in markdown
    assert "### dllg:g on t; 1 with fewer than 2 tokens (no switches)" in markdown
    rows = list(csv.DictReader(csv_path.open()))
    keys = [(r["method"], r["task"], r["group"]) for r in rows]
    methods, tasks, groups = ["dllg:g", "dllg-static:g"], ["t", "u"], ["all", "correct", "incorrect"]
    assert sorted(keys) == sorted((m, t, g) for m in methods for t in tasks for g in groups)
    by_key = dict(zip(keys, rows, strict=True))
    assert float(by_key[("dllg:g", "t", "correct")]["switches"]) == 2
    assert by_key[("dllg:g", "t", "all")]["p:switches"] != ""
    assert by_key[("dllg:g", "t", "correct")]["p:switches"] == ""  # p-values sit on the `all` row only
    assert float(by_key[("dllg:g", "t", "all")]["accuracy"]) == 50


def test_bad_records_are_one_line_errors(tmp_path, records):
    with pytest.raises(DllgError, match="no such records file"):
        analyze(tmp_path / "nope.jsonl")
    unweighted = tmp_path / "plain.jsonl"
    unweighted.write_text('{"method": "expert:a", "task": "t", "example_id": "t/0", "correct": 1}\n')
    with pytest.raises(DllgError, match="no record carries per-token `weights`"):
        analyze(unweighted)
    ragged = make_record("dllg:g", "t/0", 1, [[0.5, 0.5]]) | {"weights": [[0.5, 0.5], [0.5]]}
    with pytest.raises(DllgError, match=r"dllg:g t/0: `weights` is not a \(tokens, 2\) list"):
        response_metrics(ragged)
