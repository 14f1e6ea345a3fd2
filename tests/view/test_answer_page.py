"""The answer page's HTML without a browser: what goes in, escaped so that nothing can break out of it."""

import html
import json
import re

import pytest

from dllg.errors import DllgError
from dllg.view import expert_hues, render_answer_html, write_answer_html

DATA = re.compile(r'<script type="application/json" id="answer-data">(.*?)</script>', re.S)


def page_data(page: str) -> dict:
    blocks = DATA.findall(page)
    assert len(blocks) == 1
    return json.loads(blocks[0])


def test_expert_hues_are_distinct_and_positional():
    for count in (1, 2, 6, 7, 12):
        hues = expert_hues(count)
        assert len(hues) == count
        assert len(set(hues)) == count
        assert all(0 <= h < 360 for h in hues)
    assert expert_hues(12)[:2] == expert_hues(2)  # adding experts does not recolour the first ones


def test_expert_hues_keep_apart():
    hues = expert_hues(12)
    gaps = [min(abs(a - b), 360 - abs(a - b)) for i, a in enumerate(hues) for b in hues[i + 1 :]]
    assert min(gaps) >= 10


def test_markup_in_tokens_prompt_and_title_stays_text():
    evil = "</script><script>alert(1)</script><!--"
    tokens = ["x = '", evil, "'\n", "/*DLLG:JS*/", " &amp; <b>"]
    weights = [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [1.0, 0.0], [0.3, 0.7]]
    page = render_answer_html(
        tokens, weights, ["a<i>", "b"], title="T </title><h1>", prompt=evil, meta={"verdict": evil}
    )
    assert "<script>alert" not in page
    assert "</title><h1>" not in page
    assert f"<title>{html.escape('T </title><h1>')}</title>" in page
    assert page.count("function addToken") == 1  # a token reading like a template marker is not one
    data = page_data(page)
    assert [text for text, _ in data["tokens"]] == tokens
    assert [row for _, row in data["tokens"]] == weights
    assert data["prompt"] == evil
    assert data["meta"] == [["verdict", evil]]
    assert [e["name"] for e in data["experts"]] == ["a<i>", "b"]


def test_page_is_self_contained():
    page = render_answer_html(["a", "b"], [[0.1, 0.9], [0.9, 0.1]], ["x", "y"], prompt=None, meta={})
    for fetch in ("src=", "href=", "@import", "url(", "<link"):
        assert fetch not in page, fetch  # nothing is loaded from elsewhere: the file works offline
    assert "vector-effect" in page and "function addToken" in page  # CSS and JS are inlined
    assert page_data(page)["prompt"] is None


def test_whitespace_reaches_the_page_unchanged():
    tokens = ["def f():\n", "    return 1\n", "\t", "  "]
    page = render_answer_html(tokens, [[1.0, 0.0]] * 4, ["x", "y"])
    assert [text for text, _ in page_data(page)["tokens"]] == tokens


@pytest.mark.parametrize(
    ("tokens", "weights", "names", "problem"),
    [
        (["a", "b"], [[0.5, 0.5]], ["x", "y"], "2 tokens but 1 rows"),
        (["a"], [[0.5, 0.5, 0.1]], ["x", "y"], "token 0 has 3 weights for 2 experts"),
        (["a"], [[float("nan"), 0.5]], ["x", "y"], "not a finite number"),
        (["a"], [[]], [], "no expert names"),
    ],
)
def test_bad_input_is_refused(tokens, weights, names, problem):
    with pytest.raises(DllgError, match=problem):
        render_answer_html(tokens, weights, names)


def test_write_creates_the_folder(tmp_path):
    path = write_answer_html(tmp_path / "deep" / "page.html", ["a"], [[0.4, 0.6]], ["x", "y"], title="t")
    assert path.is_file()
    assert page_data(path.read_text())["title"] == "t"
