"""One self-contained HTML page showing which expert wrote each token of a fused answer.

The page's template, CSS and JS are package data (`dllg/view/static/`), inlined here so the file works
offline and alone. The answer travels as JSON that the page's JS replays through `addToken(text, weights)`,
the same call a live page makes as tokens arrive: the colours and the plot are computed in one place, the JS.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path

from dllg.errors import DllgError

# Hues (degrees) of the first experts: blue, orange, green, purple, red, teal.
BASE_HUES = (212, 28, 140, 275, 355, 180)


def expert_hues(count: int) -> list[int]:
    """One distinct hue per expert, fixed by its position; past the base hues, each goes in the middle of
    the widest gap left on the colour circle."""
    hues = list(BASE_HUES[:count])
    while len(hues) < count:
        ordered = sorted(hues)
        gaps = [((b - a) % 360, a) for a, b in zip(ordered, [*ordered[1:], ordered[0]], strict=True)]
        width, start = max(gaps)
        hues.append(round(start + width / 2) % 360)
    return hues


def static_text(name: str) -> str:
    return files("dllg.view").joinpath("static", name).read_text(encoding="utf-8")


def script_json(value: object) -> str:
    """JSON safe inside a <script> element: no `</script>` or `<!--` can end or bend it."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def checked_weights(
    tokens: Sequence[str], weights: Sequence[Sequence[float]], experts: int
) -> list[list[float]]:
    if experts < 1:
        raise DllgError("no expert names given: the page needs one name per weight column")
    if len(tokens) != len(weights):
        raise DllgError(
            f"{len(tokens)} tokens but {len(weights)} rows of weights: give one row of weights per token"
        )
    rows = []
    for index, row in enumerate(weights):
        values = [float(w) for w in row]
        if len(values) != experts:
            raise DllgError(
                f"token {index} has {len(values)} weights for {experts} experts: give one weight per expert"
            )
        if not all(math.isfinite(w) for w in values):
            raise DllgError(f"token {index} has a weight that is not a finite number: {values}")
        rows.append(values)
    return rows


def render_answer_html(
    tokens: Sequence[str],
    weights: Sequence[Sequence[float]],
    expert_names: Sequence[str],
    title: str = "dllg answer",
    prompt: str | None = None,
    meta: Mapping[str, object] | None = None,
) -> str:
    """The page as one string: `tokens[i]` is the text of token i, `weights[i]` its expert weights in the
    order of `expert_names`; `meta` (e.g. method, task, example, verdict) is shown as one line."""
    rows = checked_weights(tokens, weights, len(expert_names))
    data = {
        "title": title,
        "prompt": prompt,
        "meta": [[str(key), str(value)] for key, value in (meta or {}).items()],
        "experts": [
            {"name": name, "hue": hue}
            for name, hue in zip(expert_names, expert_hues(len(expert_names)), strict=True)
        ],
        "tokens": [[str(text), row] for text, row in zip(tokens, rows, strict=True)],
    }
    # The markers stand in this order in the template; each is looked for only after the previous one, so
    # text inserted for one (a token reading "/*DLLG:JS*/") cannot be taken for a later one.
    parts, rest = [], static_text("answer.html")
    for marker, content in (
        ("/*DLLG:TITLE*/", html.escape(title)),
        ("/*DLLG:CSS*/", static_text("answer.css")),
        ("/*DLLG:DATA*/", script_json(data)),
        ("/*DLLG:JS*/", static_text("answer.js")),
    ):
        before, found, rest = rest.partition(marker)
        if not found:
            raise DllgError(f"the page template lacks {marker} (in this order): reinstall dllg")
        parts += [before, content]
    page = "".join([*parts, rest])
    return page


def write_answer_html(
    path: str | Path,
    tokens: Sequence[str],
    weights: Sequence[Sequence[float]],
    expert_names: Sequence[str],
    title: str = "dllg answer",
    prompt: str | None = None,
    meta: Mapping[str, object] | None = None,
) -> Path:
    """Write the page (see `render_answer_html`) to `path`, creating its folder; the path written."""
    page = render_answer_html(tokens, weights, expert_names, title, prompt, meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
