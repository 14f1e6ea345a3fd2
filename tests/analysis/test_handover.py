"""`dllg.analysis.handover`: the departure point, the target among correct solutions, the segments, each kind
of failure on hand-made cases, and one run of `dllg analyze-handover` on three real world records."""

import csv
import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer
from typer.testing import CliRunner

from dllg.analysis.answer_target import (
    CODE,
    DERIVATION,
    OWN_DERIVATION_TARGET,
    REFERENCE_TARGET,
    Departure,
    Segments,
    answer_segments,
    find_departure,
    nearest_correct,
    trailing_note,
)
from dllg.analysis.handover import (
    BOTH_WRONG,
    FUSED_DISAGREES,
    KINDS,
    NEVER,
    NOT_REPRODUCED,
    OWN_EXPERT_WRONG,
    TIED,
    TOO_EARLY,
    TOO_LATE,
    classify,
)
from dllg.cli.main import app
from dllg.errors import DllgError
from dllg.sources import resolve_path
from dllg.world.assets import assets_fingerprint

EOS = 0
REFERENCE = "7 * 2 = 14\n14 - 8 = 6\nk = 6\n```python\ndef f(x):\n    return x * x + 6\n```"
REFERENCE_CODE = "```python\ndef f(x):\n    return x * x + 6\n```"
RECORDS = Path(__file__).parents[2] / "results" / "world" / assets_fingerprint() / "records.jsonl"


# --- departure ---------------------------------------------------------------------------------------


def test_the_departure_is_the_first_differing_token():
    assert find_departure([5, 6, 7, EOS], [5, 6, 9, 7, EOS]) == Departure(2, 7, 9)
    assert find_departure([5, 6, 7, EOS], [4, 6, 7, EOS]) == Departure(0, 5, 4)


def test_trailing_departures_name_the_end_of_sequence_or_no_token():
    stopped_early = find_departure([5, 6, 7, EOS], [5, 6, EOS])
    assert stopped_early == Departure(2, 7, EOS)
    went_on = find_departure([5, 6, EOS], [5, 6, 7, 8, EOS])
    assert went_on == Departure(2, EOS, 7)
    out_of_tokens = find_departure([5, 6, 7, EOS], [5, 6])  # cut by the token limit: no end-of-sequence
    assert out_of_tokens == Departure(2, 7, None)
    assert find_departure([5, 6, EOS], [5, 6, EOS]) is None


def test_trailing_notes_say_when_only_the_end_differs():
    assert trailing_note("a\nb", "a\nb\n") == "the target but for trailing whitespace"
    assert trailing_note("a\nb", "a\nb\nmore") == "the target, then more text"
    assert trailing_note("a\nb", "a\n") == "the target cut short"
    assert trailing_note("a\nb", "a\nc") == ""


# --- the target among the correct solutions ----------------------------------------------------------


def test_a_derivation_that_reaches_the_reference_k_by_other_steps_keeps_its_own_lines():
    other_steps = "7 * 2 = 14\n14 - 8 = 9\nk = 6\n```python\ndef f(x):\n    return x * 6\n```"
    target, kind = nearest_correct(REFERENCE, other_steps)
    assert kind == OWN_DERIVATION_TARGET
    assert target == "7 * 2 = 14\n14 - 8 = 9\nk = 6\n" + REFERENCE_CODE


def test_otherwise_the_reference_is_the_target():
    wrong_k = "7 * 2 = 14\n14 - 7 = 7\nk = 7\n```python\ndef f(x):\n    return x * x + 7\n```"
    no_code = "7 * 2 = 14\nk = 14"
    same_derivation = REFERENCE.replace("x * x + 6", "x + 6")
    for response in (wrong_k, no_code, same_derivation):
        assert nearest_correct(REFERENCE, response) == (REFERENCE, REFERENCE_TARGET)
    with pytest.raises(DllgError, match="no fenced code block"):
        nearest_correct("7 * 2 = 14\nThe answer is \\boxed{14}", wrong_k)


# --- segments ----------------------------------------------------------------------------------------


def test_segments_cut_at_the_last_line_and_the_fence():
    segments = Segments(last_line=3, code=5, end=9)
    parts = [segments.part(i) for i in range(10)]
    assert parts == ["steps"] * 3 + ["last line"] * 2 + ["hand-over (fence)"] + ["code"] * 3 + [
        "end of answer"
    ]
    assert [segments.segment(i) for i in (4, 5)] == [DERIVATION, CODE]


def test_world_answers_segment_on_their_tokens():
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_path("world:arith")))
    segments = answer_segments(tokenizer, REFERENCE)
    ids = tokenizer(REFERENCE, add_special_tokens=False)["input_ids"]
    assert segments.end == len(ids)
    assert tokenizer.decode(ids[segments.last_line : segments.code]) == "k = 6\n"
    assert tokenizer.decode(ids[segments.code :]) == REFERENCE_CODE
    with pytest.raises(DllgError, match="no fenced code block"):
        answer_segments(tokenizer, "k = 6\n")


# --- kinds -------------------------------------------------------------------------------------------

# (segment, weights (derivation, code), top-1 is the target (derivation, code), fused right, code led before)
CASES = {
    TOO_EARLY: (DERIVATION, (0.1, 0.7), (True, False), False, False),
    TOO_LATE: (CODE, (0.4, 0.1), (False, True), False, True),
    NEVER: (CODE, (0.4, 0.1), (False, True), False, False),
    OWN_EXPERT_WRONG: (DERIVATION, (0.6, 0.1), (False, True), False, True),
    BOTH_WRONG: (DERIVATION, (0.1, 0.7), (False, False), False, True),
    FUSED_DISAGREES: (DERIVATION, (0.3, 0.2), (True, False), False, True),
    TIED: (CODE, (0.2, 0.2), (False, True), False, True),
    NOT_REPRODUCED: (DERIVATION, (0.1, 0.7), (True, False), True, True),
}


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_recognised(kind):
    assert classify(*CASES[kind]) == kind


def test_the_kinds_hinge_on_segment_leader_and_who_is_right():
    # the same weights and experts, the other segment: the code expert leading in code is its own error
    assert classify(CODE, (0.1, 0.7), (True, False), False, True) == OWN_EXPERT_WRONG
    # the code expert right and leading in the derivation: the leader is right, the sum is not
    assert classify(DERIVATION, (0.1, 0.7), (False, True), False, False) == FUSED_DISAGREES
    # both right at the top but the fused sum picks another: still the leader's call
    assert classify(CODE, (0.4, 0.1), (True, True), False, False) == FUSED_DISAGREES


# --- end to end --------------------------------------------------------------------------------------


def real_records(tmp_path: Path) -> Path:
    """Two failed world-mixed records of the shipped gate (one off in the arithmetic, one in the code) and
    one that passed, from the records of this build's demo."""
    if not RECORDS.is_file():
        pytest.skip(f"{RECORDS} is missing: run `dllg demo --out results/world/records.jsonl` for this build")
    wanted = {"world-mixed/test-0", "world-mixed/test-1", "world-mixed/test-33"}
    chosen = [
        line
        for line in RECORDS.read_text().splitlines()
        if '"dllg:world:gate"' in line and json.loads(line)["example_id"] in wanted
    ]
    assert len(chosen) == len(wanted)
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(chosen) + "\n")
    return path


def test_analyze_handover_on_real_world_records(tmp_path):
    records = real_records(tmp_path)
    args = ["analyze-handover", records, "--method", "dllg:world:gate", "--task", "world-mixed"]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--out", tmp_path / "out"]], terminal_width=200)
    assert result.exit_code == 0, result.output
    rows = {r["example_id"]: r for r in csv.DictReader((tmp_path / "out" / "handover.csv").open())}
    assert sorted(rows) == ["world-mixed/test-1", "world-mixed/test-33"]  # the passed one is no failure
    arithmetic, code = rows["world-mixed/test-1"], rows["world-mixed/test-33"]
    # "7 * 2 = 14\n14 - [7]" against the reference's "14 - [8]"; "return x * [29]" against "x * [x]"
    assert (arithmetic["segment"], arithmetic["target_token"], arithmetic["chosen_token"]) == (
        DERIVATION,
        " 8",
        " 7",
    )
    assert (code["segment"], code["target_token"], code["chosen_token"]) == (CODE, " x", " 29")
    for row in rows.values():
        assert row["kind"] in KINDS and row["fused_top1"] == row["chosen_token"]
        assert row["reproduced"] == "1"
    text = (tmp_path / "out" / "handover.md").read_text()
    assert "gives 3 of 3 responses again" in text and text.strip() in result.output.replace("\r", "")


def test_analyze_handover_errors_are_one_line(tmp_path):
    records = real_records(tmp_path)
    static = json.loads(records.read_text().splitlines()[0]) | {"method": "dllg-static:world:gate"}
    with records.open("a") as handle:
        handle.write(json.dumps(static) + "\n")
    for method, message in (
        ("dllg:nope", "no records of dllg:nope on world-mixed"),
        ("dllg-static:world:gate", "does not fuse by one rule"),
    ):
        args = ["analyze-handover", str(records), "--method", method, "--task", "world-mixed"]
        result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")], terminal_width=200)
        assert result.exit_code == 1 and message in result.output, result.output
        assert "Traceback" not in result.output and not (tmp_path / "out").exists()
