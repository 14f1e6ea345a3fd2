"""Pulling the program out of a response, and completing it with the prompt's stub."""

from __future__ import annotations

import pytest

from dllg.errors import DllgError
from dllg.verify import Reference
from dllg.verify.code import assemble_program, extract_program
from dllg.verify.sandbox import Sandbox


def test_picks_the_block_that_defines_the_function():
    response = (
        "First a helper:\n```python\ndef helper(x):\n    return x\n```\n"
        "Now the answer:\n```py\ndef solve(x):\n    return helper(x) + 1\n```\n"
        "Example run:\n```python\nprint(solve(1))\n```\n"
    )
    assert extract_program(response, "solve").startswith("def solve")
    assert extract_program(response).startswith("print(solve(1))")


def test_ignores_other_languages_and_reads_unclosed_fences():
    response = "```bash\npip install x\n```\n```python\ndef f():\n    return 1\n"
    assert extract_program(response, "f") == "def f():\n    return 1\n"


def test_bare_code_is_taken_whole_even_with_fences_in_a_docstring():
    code = 'def f():\n    """Example:\n    ```\n    f()\n    ```\n    """\n    return 1\n'
    assert extract_program(code, "f") == code


def test_prose_without_code_has_no_program():
    assert extract_program("I am not able to solve this, sorry.", "f") is None


def test_body_only_answers_are_completed_by_the_stub():
    stub = 'from typing import List\n\ndef total(xs: List[int]) -> int:\n    """Sum."""\n'
    ref = Reference(tests="assert total([1, 2]) == 3", entry_point="total", prompt_code=stub)
    assert assemble_program("    return sum(xs)\n", ref) == stub + "    return sum(xs)\n"
    # A full rewrite that forgot the stub's imports gets them back.
    full = "```python\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n```"
    assert assemble_program(full, ref).startswith("from typing import List\n")


def test_missing_bubblewrap_names_the_fix(monkeypatch):
    monkeypatch.setattr("dllg.verify.sandbox.shutil.which", lambda name: None)
    with pytest.raises(DllgError, match="apt-get install -y bubblewrap"):
        Sandbox()
