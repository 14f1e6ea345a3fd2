"""The live page at `/`: served as HTML with the prompt box, and in headless Chromium a prompt round-trips
against the server and its tokens render coloured by expert, with the weights plotted."""

import json
import re

import httpx
import pytest
from serve_helpers import EXPERTS, Served

from dllg.view.browser import find_chromium, missing_browser

CONFIG = re.compile(r'<script type="application/json" id="live-config">(.*?)</script>', re.S)


def test_the_page_is_served_with_its_prompt_box(served: Served):
    response = httpx.get(served.url + "/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert page.count('id="ask-form"') == 1 and page.count("function addToken") == 1
    assert json.loads(CONFIG.search(page).group(1)) == {"model": "dllg", "endpoint": "/v1/chat/completions"}
    assert all(name in page for name in EXPERTS)


@pytest.mark.skipif(missing_browser() is not None, reason=f"browser test: {missing_browser()}")
def test_a_prompt_streams_in_coloured(served: Served, tmp_path):
    from playwright.sync_api import sync_playwright

    prompt = "What is 3 + 4?"
    reply = served.client().chat.completions.create(
        model="dllg",
        messages=[{"role": "user", "content": prompt}],
        max_tokens=20,
        extra_body={"dllg_weights": True},
    )
    expected = reply.choices[0].model_extra["dllg"]["tokens"]
    with sync_playwright() as playwright:
        # --no-sandbox: Chromium refuses its sandbox as root (as dllg.view.browser.open_page does)
        browser = playwright.chromium.launch(executable_path=find_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(served.url + "/")
            page.fill("#prompt-input", prompt)
            page.fill("#max-tokens", "20")
            page.click("#ask")
            page.wait_for_selector("body[data-state=done]", timeout=30_000)
            spans = page.eval_on_selector_all(
                "#answer .token",
                "nodes => nodes.map(n => ({text: n.textContent, expert: Number(n.dataset.expert),"
                " title: n.title, colour: getComputedStyle(n).backgroundColor}))",
            )
            points = page.eval_on_selector_all(
                ".weight-line", "nodes => nodes.map(n => n.points.numberOfItems)"
            )
            shot = tmp_path / "live-page.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
        finally:
            browser.close()
    assert errors == []
    assert [s["text"] for s in spans] == [t["token"] for t in expected]  # the same answer, token by token
    for span, token in zip(spans, expected, strict=True):
        dominant = max(range(len(EXPERTS)), key=lambda k: token["weights"][k])
        assert span["expert"] == dominant
        assert span["colour"] not in ("", "rgba(0, 0, 0, 0)")  # coloured
        assert all(name in span["title"] for name in EXPERTS)  # the weights on hover
    assert points == [len(expected)] * len(EXPERTS)  # one point per token on each expert's line
    assert shot.stat().st_size > 0
