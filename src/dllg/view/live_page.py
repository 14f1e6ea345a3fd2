"""The live page `dllg serve` shows at `/`: the answer page with no tokens yet, plus a prompt box whose
answer streams in from the server and is drawn token by token by the answer page's own `addToken`."""

from __future__ import annotations

from collections.abc import Sequence

from dllg.errors import DllgError
from dllg.view.answer_page import render_answer_html, script_json, static_text


def insert_once(page: str, marker: str, text: str, before: bool) -> str:
    """`text` put before (or after) the one `marker` in the page (the template's, never a token's: the
    page has no tokens yet)."""
    if page.count(marker) != 1:
        raise DllgError(
            f"the answer page template has {page.count(marker)} {marker!r}, not one: reinstall dllg"
        )
    return page.replace(marker, text + marker if before else marker + text)


def render_live_page(
    expert_names: Sequence[str], model: str, title: str = "dllg serve", endpoint: str = "/v1/chat/completions"
) -> str:
    """The page as one string; `model` is the id it asks `endpoint` for."""
    page = render_answer_html([], [], expert_names, title=title, meta={"model": model})
    page = insert_once(page, '<section id="prompt-section"', static_text("live_form.html"), before=True)
    config = script_json({"model": model, "endpoint": endpoint})
    script = (
        f'<script type="application/json" id="live-config">{config}</script>\n'
        f"<script>\n{static_text('live.js')}</script>\n"
    )
    return insert_once(page, "</body>", script, before=True)
