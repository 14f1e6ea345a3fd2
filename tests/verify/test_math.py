"""The math verifier: answer extraction and equivalence on the cases that trip naive string matching."""

from __future__ import annotations

import pytest

from dllg.verify import Reference, get_verifier
from dllg.verify.math import answers_match, extract_answer, last_boxed, normalize_answer


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("so the total is \\boxed{42}.", "42"),
        ("First \\boxed{3}, but wait, that is wrong: \\boxed{5}", "5"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\left\\{1, 2\\right\\}} done", "\\left\\{1, 2\\right\\}"),
        ("\\boxed{x^{2}+\\sqrt{y_{1}}}", "x^{2}+\\sqrt{y_{1}}"),
        ("an unclosed \\boxed{3 and then nothing, after \\boxed{7}", "7"),
        ("She pays 5 + 13 = 18 dollars.\n#### 18", "18"),
        ("#### 1,000\nsome trailing chatter 7", "1,000"),
        ("Adding up, the answer is $\\$1,250$.", "\\$1,250"),
        ("The final answer is: **12**.", "12"),
        ("He had 3 apples and bought 1,234 more, 1,237 in all.", "1,237"),
        ("The result is -4.5 degrees", "-4.5"),
        ("It is 3/4 of the cake", "3/4"),
        ("no number at all", None),
        ("#### Final Answer\nThe answer is 18.", "18"),
        ("#### Step 2: add them\n3 + 4 = 7", "7"),
        ("The answer is 7. Then we check that 3 + 4 = 7 too.", "7"),
    ],
)
def test_extract_answer(response, expected):
    assert extract_answer(response) == expected


def test_a_truncated_response_has_only_a_stated_answer():
    assert extract_answer("3 + 4 = 7 and", truncated=True) is None
    assert extract_answer("\\boxed{7} and then 3 + 4 =", truncated=True) == "7"
    assert extract_answer("#### 7\n3 + 4", truncated=True) == "7"
    assert extract_answer("The answer is 7. Now 3 + 4", truncated=True) == "7"


@pytest.mark.parametrize(
    ("answer", "normalized"),
    [
        ("\\text{(C)}", "(C)"),
        ("\\textbf{\\text{Evelyn}}", "Evelyn"),
        ("18 \\text{ eggs}", "18"),
        ("10\\text{ cm}^2", "10"),
        ("2 pi", "2 \\pi"),
        ("1 million", "1000000"),
        ("1.5 million dollars", "1500000"),
        ("1/2 million", "500000"),
    ],
)
def test_normalize_answer(answer, normalized):
    assert normalize_answer(answer) == normalized


def test_last_boxed_handles_fbox_and_spaces():
    assert last_boxed("\\fbox{9}") == "9"
    assert last_boxed("\\boxed {10}") == "10"
    assert last_boxed("nothing boxed") is None


@pytest.mark.parametrize(
    ("gold", "predicted"),
    [
        ("1000", "1,000"),
        ("1000", "1 000"),
        ("1000000", "1,000,000"),
        ("18", "\\$18"),
        ("18", "$18.00"),
        ("18", "18 dollars"),
        ("18", "18 \\text{ eggs}"),
        ("5", "5 hours"),
        ("1250", "\\$1,250"),
        ("0.5", "\\frac{1}{2}"),
        ("0.5", "1/2"),
        ("\\frac{3}{4}", "0.75"),
        ("\\dfrac{2}{3}", "\\frac{2}{3}"),
        ("-5", "-5"),
        ("-5", "\u22125"),
        ("10", "10\\%"),
        ("10", "10%"),
        ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}"),
        ("x^2+1", "1+x^2"),
        ("3", "3.0"),
    ],
)
def test_equivalent_answers_match(gold, predicted):
    assert answers_match(gold, predicted)


@pytest.mark.parametrize(
    ("gold", "predicted"),
    [
        ("1000", "1001"),
        ("1000", "1,001"),
        ("18", "18.5"),
        ("-5", "5"),
        ("5", "-5"),
        ("\\frac{1}{3}", "0.33"),
        ("12", "21"),
        ("0.5", "5"),
        ("2", "2x"),
        ("100", "10"),
    ],
)
def test_close_but_wrong_answers_do_not_match(gold, predicted):
    assert not answers_match(gold, predicted)


def test_math_verifier_verdicts():
    verifier = get_verifier("math")
    ref = Reference(answer="18")
    assert verifier.verify("Janet makes 9 * 2 = 18 dollars.\n#### 18", ref).status == "pass"
    assert verifier.verify("I think \\boxed{18} no wait \\boxed{20}", ref).status == "fail"
    assert verifier.verify("The answer is \\$18.00.", ref).status == "pass"
    assert verifier.verify("I don't know.", ref).status == "error"


def test_verify_many_runs_in_threads():
    # math-verify's own timeouts use signals, which threads refuse: ours must not depend on them.
    from concurrent.futures import ThreadPoolExecutor

    verifier = get_verifier("math")
    with ThreadPoolExecutor(2) as pool:
        verdicts = list(pool.map(lambda r: verifier.verify(r, Reference(answer="7")), ["\\boxed{7}", "6"]))
    assert [v.status for v in verdicts] == ["pass", "fail"]


def test_exact_match_verifier():
    verifier = get_verifier("exact")
    assert verifier.verify("So the answer is (B).", Reference(answer="(B)")).status == "pass"
    assert verifier.verify("So the answer is B.", Reference(answer="(B)")).status == "pass"
    assert verifier.verify("The answer is True", Reference(answer="False")).status == "fail"
    assert verifier.verify("the answer is valid", Reference(answer="Valid")).status == "pass"
