"""The answer page as a person sees it: opened in headless Chromium (Debian's, driven by Playwright)."""

import colorsys
import re

import pytest

from dllg.view import expert_hues, write_answer_html
from dllg.view.browser import missing_browser, open_page

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=f"browser test: {missing_browser()}")

EXPERTS = ["world:arith", "world:code"]
# A code answer: indentation, newlines and markup must come through as written.
TOKENS = ["def", " f", "(x):\n", "    return", " x", " <b>&amp;</b>", "\n", "<|im_end|>"]
WEIGHTS = [[0.9, 0.1], [0.6, 0.4], [0.2, 0.7], [0.05, 0.95], [0.5, 0.5], [0.0, 1.0], [0.3, 0.2], [0.8, 0.79]]

SPANS = """nodes => nodes.map(n => ({
  text: n.textContent, expert: Number(n.dataset.expert), title: n.title,
  colour: getComputedStyle(n).backgroundColor }))"""
LINES = """nodes => nodes.map(n => ({
  expert: Number(n.dataset.expert), points: n.points.numberOfItems, stroke: getComputedStyle(n).stroke,
  ys: Array.from({length: n.points.numberOfItems}, (_, i) => -n.points.getItem(i).y) }))"""


def hls(css_colour: str) -> tuple[float, float, float]:
    """(hue in degrees, lightness, saturation) of a computed `rgb(r, g, b)` colour."""
    red, green, blue = (int(v) / 255 for v in re.findall(r"\d+", css_colour)[:3])
    hue, lightness, saturation = colorsys.rgb_to_hls(red, green, blue)
    return hue * 360, lightness, saturation


def hue_distance(a: float, b: float) -> float:
    return min(abs(a - b), 360 - abs(a - b))


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("answer-page")
    meta = {
        "method": "dllg:world:gate",
        "task": "world-code",
        "example": "world-code/test-0",
        "verdict": "pass",
    }
    prompt = "Write f(x) <returning> x & 1."
    return write_answer_html(folder / "answer.html", TOKENS, WEIGHTS, EXPERTS, "a title", prompt, meta)


@pytest.fixture(scope="module")
def shown(page_file):
    """What the page shows, read once from one browser session; its screenshot beside the page."""
    with open_page(page_file) as page:
        spans = page.eval_on_selector_all("#answer .token", SPANS)
        seen = {
            "spans": spans,
            "answer_text": page.inner_text("#answer"),
            "bold_in_answer": page.locator("#answer b").count(),
            "lines": page.eval_on_selector_all("#plot polyline", LINES),
            "legend": page.eval_on_selector_all("#legend li", "ns => ns.map(n => n.textContent)"),
            "meta": page.inner_text("#meta"),
            "prompt": page.inner_text("#prompt"),
        }
        page.hover("#answer .token >> nth=3")
        seen["cursor"] = page.eval_on_selector(
            "#plot .cursor", "n => [n.getAttribute('visibility'), Number(n.getAttribute('x1'))]"
        )
        screenshot = page_file.parent / "answer-screenshot.png"
        page.screenshot(path=str(screenshot), full_page=True)
    print(f"\nanswer page and its screenshot: {page_file.parent}")
    seen["screenshot"] = screenshot
    return seen


def test_one_span_per_token_with_its_text(shown):
    assert [s["text"] for s in shown["spans"]] == TOKENS
    assert shown["bold_in_answer"] == 0  # markup in a token is shown, not obeyed
    # rendered text keeps the indentation and line breaks of the code
    assert shown["answer_text"].startswith("def f(x):\n    return x <b>&amp;</b>\n<|im_end|>")


def test_each_token_has_the_colour_of_the_expert_with_the_larger_weight(shown):
    hues = expert_hues(len(EXPERTS))
    for span, weights in zip(shown["spans"], WEIGHTS, strict=True):
        winner = max(range(len(weights)), key=lambda k: weights[k])
        assert span["expert"] == winner
        hue, _, saturation = hls(span["colour"])
        if saturation > 0.2:  # a near-white tie has too little colour to measure its hue
            assert hue_distance(hue, hues[winner]) < 6, span


def test_a_more_dominant_expert_gives_a_stronger_colour(shown):
    lightness = [hls(s["colour"])[1] for s in shown["spans"]]
    assert lightness[3] < lightness[2]  # 0.95 vs 0.05 is more decided than 0.7 vs 0.2
    assert lightness[0] < lightness[1]  # 0.9 vs 0.1 is more decided than 0.6 vs 0.4
    assert lightness[5] == min(lightness)  # one expert holds all the weight
    assert lightness[4] == max(lightness)  # a tie


def test_hovering_a_token_names_every_experts_weight(shown):
    for span, weights in zip(shown["spans"], WEIGHTS, strict=True):
        assert span["title"].splitlines() == [f"{n}: {w:.3f}" for n, w in zip(EXPERTS, weights, strict=True)]


def test_hovering_a_token_marks_it_in_the_plot(shown):
    assert shown["cursor"] == ["visible", 3.5]  # token 3 sits at x = 3.5 on the plot's token axis


def test_the_plot_has_one_line_per_expert_through_every_weight(shown):
    lines = shown["lines"]
    assert sorted(line["expert"] for line in lines) == [0, 1]
    hues = expert_hues(len(EXPERTS))
    for line in lines:
        assert line["points"] == len(TOKENS)
        assert line["ys"] == pytest.approx([w[line["expert"]] for w in WEIGHTS], abs=1e-6)
        assert hue_distance(hls(line["stroke"])[0], hues[line["expert"]]) < 6


def test_legend_meta_and_prompt(shown):
    assert [name for name in EXPERTS if any(name in item for item in shown["legend"])] == EXPERTS
    arith_wins = sum(w[0] >= w[1] for w in WEIGHTS)  # a tie goes to the first expert
    assert f"writes {arith_wins} of {len(TOKENS)} tokens" in shown["legend"][0]
    for part in ("dllg:world:gate", "world-code/test-0", "pass"):
        assert part in shown["meta"]
    assert shown["prompt"] == "Write f(x) <returning> x & 1."
    assert shown["screenshot"].stat().st_size > 5000


def test_tokens_can_arrive_one_by_one(tmp_path):
    """The live page: a page written with no tokens grows through addToken()."""
    path = write_answer_html(tmp_path / "live.html", [], [], EXPERTS, "live")
    with open_page(path) as page:
        assert page.locator("#answer .token").count() == 0
        page.evaluate("() => { addToken('print(', [0.1, 0.9]); addToken('1)\\n', [0.8, 0.2]); }")
        spans = page.eval_on_selector_all("#answer .token", SPANS)
        lines = page.eval_on_selector_all("#plot polyline", LINES)
        assert page.inner_text("#token-count") == "(2 tokens)"
    assert [(s["text"], s["expert"]) for s in spans] == [("print(", 1), ("1)\n", 0)]
    assert [line["points"] for line in lines] == [2, 2]
