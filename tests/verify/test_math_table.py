"""The final-answer verifiers end to end: (gold, response, truncated) -> verdict, through the registry.

Covers the usual GSM8K/MATH answer forms and the fixed bugs: textual answers in \\text{} wrappers, responses
cut off by max_new_tokens, markdown headings taken for GSM8K's `####`, and "2 pi" / "1 million" read as
units. About half of the cases must not pass.
"""

from __future__ import annotations

import pytest

from dllg.tasks.base import Example, user
from dllg.tasks.scoring import verify_responses
from dllg.verify import Reference, get_verifier

T = True  # the response was cut off by max_new_tokens
F = False

# (gold, response, truncated, expected status)
MATH_CASES = [
    # GSM8K and MATH forms that must pass
    ("18", "Janet sells 16 - 3 - 4 = 9 eggs at $2: 9 * 2 = 18.\n#### 18", F, "pass"),
    ("72", "So the answer is $\\boxed{72}$.", F, "pass"),
    ("1000", "The total is \\boxed{1,000}.", F, "pass"),
    ("1000000", "\\boxed{1 000 000}", F, "pass"),
    ("1250", "She pays 1,000 + 250 dollars.\n#### \\$1,250", F, "pass"),
    ("5", "Each pen costs $5.00, so the answer is $5.00.", F, "pass"),
    ("0.5", "\\boxed{\\frac{1}{2}}", F, "pass"),
    ("\\frac{3}{4}", "\\boxed{0.75}", F, "pass"),
    ("\\dfrac{2}{3}", "\\boxed{\\frac{2}{3}}", F, "pass"),
    ("\\frac{\\sqrt{3}}{2}", "\\boxed{\\dfrac{\\sqrt3}{2}}", F, "pass"),
    ("-7", "The temperature ends at \\boxed{-7} degrees.", F, "pass"),
    ("-3", "\\boxed{\u22123}", F, "pass"),
    ("25", "The discount is \\boxed{25\\%}.", F, "pass"),
    ("[1,2)", "The solution set is \\boxed{[1, 2)}.", F, "pass"),
    ("\\{1,2\\}", "\\boxed{\\{2, 1\\}}", F, "pass"),
    ("42", "Adding them up: 40 + 2 = 42", F, "pass"),  # complete response: the last number counts
    ("18", "\\boxed{18 \\text{ eggs}}", F, "pass"),
    ("10", "The area is \\boxed{10\\text{ cm}^2}.", F, "pass"),
    # (a) textual answers
    ("\\text{(C)}", "The answer is (C).", F, "pass"),
    ("\\text{(C)}", "\\boxed{\\text{(C)}}", F, "pass"),
    ("\\text{odd}", "So $f$ is \\boxed{\\text{odd}}.", F, "pass"),
    ("odd", "The answer is \\text{odd}.", F, "pass"),
    ("\\text{Evelyn}", "\\boxed{Evelyn}", F, "pass"),
    ("Evelyn", "\\boxed{\\textbf{evelyn}}", F, "pass"),
    # (b) truncated responses that stated their answer before the cut
    ("18", "So she makes \\boxed{18} dollars. Let me double-check: 9 * 2 =", T, "pass"),
    ("18", "9 * 2 = 18\n#### 18\nTo verify, 16 - 3", T, "pass"),
    ("18", "The answer is 18. To check, we compute 9 * 2 = 18 and 16 - 3 -", T, "pass"),
    # (c) a markdown heading is not GSM8K's `####`
    ("18", "#### Final Answer\nThe answer is 18.", F, "pass"),
    ("18", "#### Final Answer\n\\[\\boxed{18}\\]", F, "pass"),
    ("18", "#### Final Answer: 18", F, "pass"),
    ("18", "#### 1. Count the eggs\n16 - 3 - 4 = 9\n#### 2. Sell them\nThe answer is 18.", F, "pass"),
    # (d) constants and magnitudes are part of the value
    ("2\\pi", "\\boxed{2 pi}", F, "pass"),
    ("2\\pi", "The circumference is \\boxed{2\\pi}.", F, "pass"),
    ("1 million", "\\boxed{1000000}", F, "pass"),
    ("1000000", "The answer is 1 million.", F, "pass"),
    ("2500000000", "\\boxed{2.5 billion}", F, "pass"),
    ("60", "She bought \\boxed{5 dozen} eggs.", F, "pass"),
    # wrong answers
    ("18", "\\boxed{19}", F, "fail"),
    ("1000", "\\boxed{1,001}", F, "fail"),
    ("1250", "#### \\$1,205", F, "fail"),
    ("-5", "\\boxed{5}", F, "fail"),
    ("0.5", "\\boxed{5}", F, "fail"),
    ("\\frac{1}{3}", "\\boxed{0.33}", F, "fail"),
    ("[1,2)", "\\boxed{(1, 2)}", F, "fail"),
    ("\\{1,2\\}", "\\boxed{\\{1, 3\\}}", F, "fail"),
    ("18", "I think \\boxed{18}, no wait, \\boxed{20}", F, "fail"),
    ("100", "\\boxed{10\\text{ cm}^2}", F, "fail"),  # the unit's square is not the number's
    ("18", "I am not sure.", F, "error"),
    # (a) a different text, or a text where math is asked
    ("\\text{odd}", "\\boxed{\\text{even}}", F, "fail"),
    ("odd", "The answer is even.", F, "fail"),
    ("odd", "The answer is dod.", F, "fail"),  # o*d*d == d*o*d as symbols, not as words
    ("\\text{Evelyn}", "\\boxed{Evan}", F, "fail"),
    ("\\text{(C)}", "The answer is (D).", F, "fail"),
    # (b) truncated responses whose last number happens to be the gold
    ("18", "So 9 * 2 = 18 and then she also", T, "error"),
    ("7", "#### Step 7\nWe add 3 and 4 to get 7, and then", T, "error"),
    ("18", "Let me think.", T, "error"),
    # (c) a heading followed by a wrong answer
    ("18", "#### Final Answer\n\\boxed{20}", F, "fail"),
    ("18", "#### Final Answer\nThe answer is 20.", F, "fail"),
    # (d) the bare number of a constant or a magnitude
    ("2\\pi", "\\boxed{2}", F, "fail"),
    ("2", "\\boxed{2\\pi}", F, "fail"),
    ("2", "\\boxed{2 pi}", F, "fail"),
    ("1 million", "\\boxed{1}", F, "fail"),
    ("1", "\\boxed{1 million}", F, "fail"),
    ("2500000000", "\\boxed{2.5}", F, "fail"),
]


@pytest.mark.parametrize(("gold", "response", "truncated", "expected"), MATH_CASES)
def test_math_verifier_table(gold, response, truncated, expected):
    verdict = get_verifier("math").verify(response, Reference(answer=gold), truncated=truncated)
    assert verdict.status == expected, verdict.reason


def test_the_table_is_balanced():
    statuses = [case[3] for case in MATH_CASES]
    passing = statuses.count("pass")
    assert len(MATH_CASES) >= 40 and passing >= 15 and len(statuses) - passing >= 15


@pytest.mark.parametrize(
    ("gold", "response", "truncated", "expected"),
    [
        ("(B)", "So the answer is (B).", F, "pass"),
        ("(B)", "So the answer is B.", F, "pass"),
        ("(B)", "#### Final Answer\nThe answer is (B).", F, "pass"),
        ("Valid", "The answer is \\textbf{valid}.", F, "pass"),
        ("Valid", "The answer is $\\mathrm{Valid}$.", F, "pass"),
        ("False", "The answer is True.", F, "fail"),
        ("Valid", "The answer is \\textbf{invalid}.", F, "fail"),
        ("(B)", "#### Final Answer\nThe answer is (C).", F, "fail"),
        ("12", "We count 5 + 7 = 12 apples.", F, "pass"),
        ("12", "We count 5 + 7 = 12 apples and then", T, "error"),
        ("12", "The answer is 12. Checking: 5 + 7", T, "pass"),
    ],
)
def test_exact_verifier_table(gold, response, truncated, expected):
    verdict = get_verifier("exact").verify(response, Reference(answer=gold), truncated=truncated)
    assert verdict.status == expected, verdict.reason


def test_truncated_reason_says_so():
    verdict = get_verifier("math").verify("9 * 2 = 18", Reference(answer="18"), truncated=True)
    assert verdict.status == "error" and "truncated (max_new_tokens) before a final answer" in verdict.reason
    assert get_verifier("math").verify("9 * 2 = 18", Reference(answer="18")).status == "pass"


def test_verify_many_takes_one_flag_per_item():
    verifier = get_verifier("math")
    items = [("9 * 2 = 18", Reference(answer="18"))] * 2
    assert [v.status for v in verifier.verify_many(items, truncated=[False, True])] == ["pass", "error"]
    with pytest.raises(ValueError, match="truncation flags"):
        verifier.verify_many(items, truncated=[True])


def _example(id_: str, verifier: str, reference: Reference) -> Example:
    return Example(id=id_, messages=user("q"), reference=reference, verifier=verifier)


def test_verify_responses_reads_finish_reasons():
    examples = [
        _example("m1", "math", Reference(answer="18")),
        _example("m2", "math", Reference(answer="18")),
        _example("m3", "math", Reference(answer="18")),
        # The code verifier does not take the flag: it must still be called, and judge as before.
        _example("c1", "code", Reference(tests="assert f() == 1", entry_point="f")),
    ]
    responses = ["9 * 2 = 18"] * 3 + ["no code here"]
    finishes = ["length", "eos", None, "length"]
    verdicts = verify_responses(examples, responses, max_workers=1, finishes=finishes)
    assert [v.status for v in verdicts] == ["error", "pass", "pass", "error"]
    assert "truncated" in verdicts[0].reason and "no Python code" in verdicts[3].reason
    assert [v.status for v in verify_responses(examples, responses, 1)] == ["pass", "pass", "pass", "error"]
    with pytest.raises(ValueError, match="finish reasons"):
        verify_responses(examples, responses, 1, finishes=["eos"])
