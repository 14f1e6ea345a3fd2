"""Paired statistics of two methods: McNemar's exact test, the bootstrap interval, the macro average."""

import math
import random

import numpy as np
import pytest

from dllg.errors import DllgError
from dllg.pipeline.paired import AVERAGE, bootstrap_differences, mcnemar_p, paired_stats


def records_of(method: str, task: str, correct: list[int]) -> list[dict]:
    return [
        {"method": method, "task": task, "split": "test", "example_id": f"{task}/{i:03d}", "correct": c}
        for i, c in enumerate(correct)
    ]


def coin_flips(n: int, p: float, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [int(rng.random() < p) for _ in range(n)]


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (0, 5, 0.0625),  # 2 / 2^5
        (5, 0, 0.0625),
        (1, 9, 0.021484375),  # 2 (1 + 10) / 2^10
        (4, 4, 1.0),
        (7, 7, 1.0),
        (0, 0, 1.0),  # no discordant pair: no evidence either way
    ],
)
def test_mcnemar_exact_p_values(b, c, p):
    assert mcnemar_p(b, c) == pytest.approx(p, rel=1e-12)


def test_mcnemar_stays_exact_where_the_tail_is_tiny():
    # 2 / 2^1000: the tail summed in integers and divided once keeps even this p exact
    assert mcnemar_p(0, 1000) == pytest.approx(2.0**-999, rel=1e-12)


def test_identical_methods_differ_by_nothing():
    correct = coin_flips(60, 0.5, seed=1)
    records = records_of("a", "t", correct) + records_of("b", "t", correct)
    [task, average] = paired_stats(records, "a", "b", resamples=2000)
    for row in (task, average):
        assert (row.difference, row.low, row.high, row.p_value) == (0.0, 0.0, 0.0, 1.0)
        assert not row.excludes_zero and row.winner is None
    assert task.accuracy_a == task.accuracy_b == pytest.approx(100 * sum(correct) / 60, abs=0.01)


def test_a_clearly_better_method_wins_and_the_reverse_loses():
    b_correct = coin_flips(80, 0.4, seed=2)
    a_correct = [1 if i % 10 else c for i, c in enumerate(b_correct)]  # B's right answers and more
    records = records_of("a", "t", a_correct) + records_of("b", "t", b_correct)
    [task, _] = paired_stats(records, "a", "b", resamples=4000)
    assert task.a_wrong_b_right == 0 and task.a_right_b_wrong == sum(a_correct) - sum(b_correct) > 20
    assert task.low > 0 and task.excludes_zero and task.winner == "a"
    assert task.p_value == pytest.approx(mcnemar_p(task.a_right_b_wrong, 0), rel=1e-3)
    [reverse, _] = paired_stats(records, "b", "a", resamples=4000)
    assert reverse.winner == "b" and reverse.difference == -task.difference and reverse.high < 0


def test_a_small_difference_claims_no_win_and_the_interval_holds_the_observed_difference():
    b_correct = coin_flips(50, 0.5, seed=3)
    a_correct = list(b_correct)
    a_correct[b_correct.index(0)] = 1  # one more right answer out of 50
    records = records_of("a", "t", a_correct) + records_of("b", "t", b_correct)
    [task, average] = paired_stats(records, "a", "b", resamples=4000)
    assert task.difference == 2.0 and task.low <= task.difference <= task.high
    assert task.low <= 0 <= task.high and task.winner is None and task.p_value == 1.0
    assert average.difference == task.difference


def test_the_interval_has_the_width_of_the_paired_standard_error():
    a_correct, b_correct = coin_flips(400, 0.6, seed=4), coin_flips(400, 0.5, seed=5)
    records = records_of("a", "t", a_correct) + records_of("b", "t", b_correct)
    [task, _] = paired_stats(records, "a", "b", resamples=10_000)
    differences = 100.0 * (np.array(a_correct) - np.array(b_correct))
    standard_error = differences.std() / math.sqrt(len(differences))
    assert task.low <= task.difference <= task.high
    assert task.high - task.low == pytest.approx(2 * 1.96 * standard_error, rel=0.08)


def test_the_average_is_the_macro_average_of_the_tasks():
    # a small task where A leads and a large one where the two tie: pooled, the lead would be diluted
    records = records_of("a", "small", [1] * 10) + records_of("b", "small", [0] * 10)
    tie = coin_flips(90, 0.5, seed=6)
    records += records_of("a", "large", tie) + records_of("b", "large", tie)
    rows = paired_stats(records, "a", "b", resamples=2000)
    assert [r.task for r in rows] == ["small", "large", AVERAGE]
    small, large, average = rows
    assert (small.difference, large.difference, average.difference) == (100.0, 0.0, 50.0)
    assert average.accuracy_a == pytest.approx((100 + large.accuracy_a) / 2, abs=0.01)
    assert average.n == 100 and (average.a_right_b_wrong, average.a_wrong_b_right) == (10, 0)
    assert average.p_value == pytest.approx(mcnemar_p(10, 0), rel=1e-3)
    # every resample keeps the small task's 100 points and the large task's 0: the average is exactly 50
    assert (average.low, average.high) == (50.0, 50.0) and average.winner == "a"


def test_seeded_and_independent_of_the_file_order():
    a_correct, b_correct = coin_flips(70, 0.6, seed=7), coin_flips(70, 0.5, seed=8)
    records = records_of("a", "t", a_correct) + records_of("b", "t", b_correct)
    records += records_of("a", "u", b_correct[:30]) + records_of("b", "u", a_correct[:30])
    first = paired_stats(records, "a", "b", resamples=3000, seed=11)
    shuffled = list(records)
    random.Random(0).shuffle(shuffled)
    assert paired_stats(shuffled, "a", "b", resamples=3000, seed=11) == first
    differences = [100.0 * (np.array(a_correct) - np.array(b_correct))]
    assert not np.array_equal(
        bootstrap_differences(differences, 50, 0), bootstrap_differences(differences, 50, 1)
    )


def test_only_examples_both_methods_answered_are_paired():
    records = records_of("a", "t", [1, 1, 1, 0]) + records_of("b", "t", [0, 1])  # b answered t/000, t/001
    records += records_of("c", "t", [1] * 4)
    [task, _] = paired_stats(records, "a", "b", resamples=100)
    assert (task.n, task.accuracy_a, task.accuracy_b, task.a_right_b_wrong) == (2, 100.0, 50.0, 1)


def test_methods_not_in_the_records_are_named_with_the_ones_present():
    records = records_of("expert:x", "t", [1]) + records_of("uniform", "t", [0])
    with pytest.raises(
        DllgError, match=r"no records of method 'dllg:g': the records hold expert:x, uniform$"
    ):
        paired_stats(records, "dllg:g", "uniform")
    disjoint = records_of("expert:x", "t", [1]) + records_of("uniform", "u", [0])
    with pytest.raises(DllgError, match="no example in common"):
        paired_stats(disjoint, "expert:x", "uniform")
