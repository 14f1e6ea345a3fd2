"""The hub-sourced tasks, read from small local JSONL files in their published row formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dllg.errors import DllgError
from dllg.tasks import get_task
from dllg.tasks.scoring import verify_responses
from dllg.tasks.sources import DATA_DIR_ENV


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_math_answer_comes_from_the_last_box(tmp_path):
    rows = [
        {
            "problem": "What is $1+1$?",
            "solution": "Clearly $\\boxed{1}$ is wrong; it is $\\boxed{2}$.",
            "level": "1",
        },
        {"problem": "Half of one?", "solution": "...", "answer": "\\frac{1}{2}"},
    ]
    examples = get_task("math").load(
        "train", training=True, data_path=write_jsonl(tmp_path / "m.jsonl", rows)
    )
    assert [e.reference.answer for e in examples] == ["2", "\\frac{1}{2}"]
    assert "\\boxed{}" in examples[0].prompt and examples[0].metadata["level"] == "1"
    verdicts = verify_responses(examples, ["so \\boxed{2}", "it is 0.5"])
    assert [v.status for v in verdicts] == ["pass", "pass"]


def test_minerva_math(tmp_path):
    rows = [{"question": "Speed of light in m/s, 1 significant figure?", "answer": "3e8"}]
    examples = get_task("minerva_math").load("test", data_path=write_jsonl(tmp_path / "mm.jsonl", rows))
    assert examples[0].reference.answer == "3e8" and examples[0].verifier == "math"


def test_bbh_from_the_data_dir(tmp_path, monkeypatch):
    (tmp_path / "bbh").mkdir()
    write_jsonl(
        tmp_path / "bbh" / "test.jsonl", [{"input": "not ( True ) and ( True ) is", "target": "False"}]
    )
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    [example] = get_task("bbh").load("test")
    assert example.verifier == "exact" and example.reference.answer == "False"
    verdicts = verify_responses([example] * 2, ["So the answer is False.", "The answer is True."])
    assert [v.status for v in verdicts] == ["pass", "fail"]


def test_mbpp_reference_code_passes_its_asserts(tmp_path):
    rows = [
        {
            "task_id": 11,
            "text": "Write a function to remove the first and last occurrence of a character from a string.",
            "code": "def remove_Occ(s, ch):\n    s = s.replace(ch, '', 1)\n    i = s.rfind(ch)\n"
            "    return s if i < 0 else s[:i] + s[i + 1:]",
            "test_list": [
                'assert remove_Occ("hello","l") == "heo"',
                'assert remove_Occ("abcda","a") == "bcd"',
            ],
            "test_setup_code": "",
        }
    ]
    [example] = get_task("mbpp").load(
        "train", training=True, data_path=write_jsonl(tmp_path / "mb.jsonl", rows)
    )
    assert example.id == "mbpp/11" and example.reference.entry_point == "remove_Occ"
    assert 'remove_Occ("hello","l")' in example.prompt
    wrong = "```python\ndef remove_Occ(s, ch):\n    return s.replace(ch, '', 1)\n```"
    verdicts = verify_responses([example] * 2, [f"```python\n{example.metadata['solution']}\n```", wrong])
    assert [v.status for v in verdicts] == ["pass", "fail"]


def test_code_r1_functional_and_stdio_rows(tmp_path):
    functional = {"functional": "assert twice(2) == 4\nassert twice(-1) == -2"}
    stdio = {"inputs": ["3\n", "10\n"], "outputs": ["6\n", "20\n"]}
    rows = [
        {
            "data_source": "leetcode",
            "prompt": [{"role": "user", "content": "Write twice(x)."}],
            "reward_model": {"style": "rule", "ground_truth": json.dumps(functional)},
            "extra_info": {"index": 7},
        },
        {
            "data_source": "taco",
            "prompt": "Read n and print 2n.",
            "reward_model": {"style": "rule", "ground_truth": json.dumps(stdio)},
        },
    ]
    examples = get_task("code_r1").load(
        "train", training=True, data_path=write_jsonl(tmp_path / "c.jsonl", rows)
    )
    assert [e.reference.test_kind for e in examples] == ["script", "stdio"]
    assert examples[0].id == "code_r1/7" and examples[1].messages[0]["content"] == "Read n and print 2n."
    responses = ["```python\ndef twice(x):\n    return 2 * x\n```", "```python\nprint(2 * int(input()))\n```"]
    assert [v.status for v in verify_responses(examples, responses)] == ["pass", "pass"]
    assert verify_responses(examples[1:], ["```python\nprint(int(input()))\n```"])[0].status == "fail"


def test_bigcodebench_unittest_rows(tmp_path):
    row = {
        "task_id": "BigCodeBench/0",
        "instruct_prompt": "Return the sum of squares of a list.",
        "code_prompt": "import math\ndef task_func(values):\n",
        "canonical_solution": "    return sum(v * v for v in values)\n",
        "test": "import unittest\nclass TestCases(unittest.TestCase):\n"
        "    def test_basic(self):\n        self.assertEqual(task_func([1, 2]), 5)\n"
        "    def test_empty(self):\n        self.assertEqual(task_func([]), 0)\n",
        "entry_point": "task_func",
        "libs": "['math']",
    }
    [example] = get_task("bigcodebench").load("test", data_path=write_jsonl(tmp_path / "b.jsonl", [row]))
    assert example.reference.test_kind == "unittest"
    wrong = "```python\ndef task_func(values):\n    return sum(values)\n```"
    verdicts = verify_responses([example] * 2, [example.metadata["solution"], wrong])
    assert [v.status for v in verdicts] == ["pass", "fail"]


def test_without_datasets_or_a_file_the_error_says_what_to_do(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DllgError, match="pip install datasets"):
        get_task("minerva_math").load("test")
