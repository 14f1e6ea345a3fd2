"""Figures of the per-token expert weights in `dllg eval` records: the weights over one answer's decoding
steps, the mean weight by relative position in the answer (correct vs incorrect), and dynamic vs static
accuracy per task. matplotlib is imported only here and only when a figure is drawn; figures are built
without pyplot on an Agg canvas, so no window or display is ever involved."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dllg.analysis.dynamics import (
    DYNAMIC_PREFIX,
    StaticComparison,
    load_records,
    position_profile,
    static_comparisons,
    task_labels,
    weight_matrix,
    weighted_records,
)
from dllg.errors import DllgError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

POSITION_BINS = 10
FORMATS = ("png", "svg")
# SVG text stays text (small files) and its ids are seeded, so a redraw of the same records is identical
SVG_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "dllg"}


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise DllgError(
            "drawing figures needs matplotlib, which is not installed: pip install matplotlib"
        ) from None


def new_figure(width: float = 7.0, height: float = 3.6) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def outcome(record: dict) -> str:
    return "correct" if record["correct"] else "incorrect"


def set_title(ax, text: str, width: int = 80) -> None:
    """A title wrapped to the figure's width: a gate's path in a method name would run off the edge."""
    ax.set_title(textwrap.fill(text, width), fontsize=10)


def trajectory_figure(record: dict) -> Figure:
    """One response's weights over its decoding steps, one line per expert."""
    weights = weight_matrix(record)
    figure = new_figure()
    ax = figure.add_subplot()
    steps = np.arange(1, len(weights) + 1)
    for e, expert in enumerate(record["experts"]):
        ax.plot(steps, weights[:, e], marker="." if len(weights) <= 60 else None, label=expert)
    set_title(ax, f"{record['method']} · {record['example_id']} · {outcome(record)}")
    ax.set_xlabel("decoding step (token)")
    ax.set_ylabel("expert weight")
    ax.set_ylim(0, max(1.0, float(weights.max(initial=0))) * 1.04)
    ax.legend(fontsize=8)
    return figure


def position_figure(records: Sequence[dict], method: str, task: str, bins: int = POSITION_BINS) -> Figure:
    """Mean weight by relative position in the answer, one line per expert and outcome (solid: correct,
    dashed: incorrect); an outcome without responses draws no line."""
    experts = records[0]["experts"]
    figure = new_figure()
    ax = figure.add_subplot()
    centres = (np.arange(bins) + 0.5) / bins
    colours = [f"C{e}" for e in range(len(experts))]
    counts = []
    for correct, style in ((True, "-"), (False, "--")):
        group = [weight_matrix(r) for r in records if bool(r["correct"]) == correct]
        counts.append(len(group))
        if not group:
            continue
        profile = position_profile(group, bins)
        for e, expert in enumerate(experts):
            label = f"{expert} ({'correct' if correct else 'incorrect'})"
            ax.plot(centres, profile[:, e], style, color=colours[e], marker=".", label=label)
    set_title(ax, f"{method} on {task}: mean weight by position ({counts[0]} correct, {counts[1]} incorrect)")
    ax.set_xlabel("relative position in the answer")
    ax.set_ylabel("mean expert weight")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, max(1e-3, float(np.nanmax(ax.dataLim.y1))) * 1.35)  # headroom for the legend
    ax.legend(fontsize=8, ncols=2, loc="upper center")
    return figure


def static_figure(comparisons: Sequence[StaticComparison]) -> Figure:
    """Dynamic vs static accuracy per task, with the paired counts over each bar pair."""
    figure = new_figure(width=max(5.0, 1.6 * len(comparisons) + 2))
    ax = figure.add_subplot()
    x = np.arange(len(comparisons))
    several_gates = len({c.gate for c in comparisons}) > 1
    dynamic = ax.bar(x - 0.19, [c.dynamic for c in comparisons], 0.36, label="dllg (dynamic)")
    ax.bar(x + 0.19, [c.static for c in comparisons], 0.36, label="dllg-static (mean weights)")
    for bar, c in zip(dynamic, comparisons, strict=True):
        top = max(c.dynamic, c.static)
        ax.annotate(
            f"+{c.dynamic_only} / -{c.static_only}", (bar.get_x() + 0.37, top + 2), ha="center", fontsize=8
        )
    ax.set_xticks(x, [f"{c.gate}\n{c.task}" if several_gates else c.task for c in comparisons])
    ax.set_ylabel("% correct")
    ax.set_ylim(0, 125)
    ax.set_title("Dynamic vs static weights (+ dynamic right & static wrong / - the reverse)", fontsize=10)
    ax.legend(fontsize=8, ncols=2, loc="upper center")
    return figure


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def natural_key(text: str) -> list:
    """test-2 before test-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def save(figure: Figure, out_dir: Path, stem: str) -> list[Path]:
    from matplotlib import rc_context

    paths = []
    with rc_context(SVG_STYLE):
        for fmt in FORMATS:
            path = out_dir / f"{stem}.{fmt}"
            figure.savefig(path, dpi=100, metadata={"Date": None} if fmt == "svg" else None)
            paths.append(path)
    return paths


def choose_method(records: Sequence[dict], method: str | None) -> str:
    """`method` if it has weighted records, else the first dllg:GATE method, else the first weighted one."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    if method is None:
        return next((m for m in methods if m.startswith(DYNAMIC_PREFIX)), methods[0])
    if method not in methods:
        raise DllgError(
            f"--method {method}: no records with per-token weights; choose one of {', '.join(methods)}"
        )
    return method


def pick_responses(records: Sequence[dict], per_outcome: int) -> list[dict]:
    """Per task, the first `per_outcome` correct and first `per_outcome` incorrect responses by example id."""
    labels = task_labels(records)
    ordered = sorted(records, key=lambda r: natural_key(r["example_id"]))
    chosen = []
    for task in dict.fromkeys(labels.values()):
        in_task = [r for r in ordered if labels[(r["task"], r.get("split"))] == task]
        for correct in (True, False):
            chosen += [r for r in in_task if bool(r["correct"]) == correct][:per_outcome]
    return chosen


def responses_by_id(records: Sequence[dict], ids: Sequence[str]) -> list[dict]:
    missing = [i for i in ids if not any(r["example_id"] == i for r in records)]
    if missing:
        sample = ", ".join(r["example_id"] for r in records[:3])
        raise DllgError(
            f"--ids {', '.join(missing)}: no such example for this method (ids look like {sample})"
        )
    return [r for r in records if r["example_id"] in ids]


def draw_figures(
    path: str | Path,
    out_dir: str | Path,
    method: str | None = None,
    ids: Sequence[str] = (),
    max_examples: int = 1,
) -> list[Path]:
    """Every figure of `method`'s records in `path` (and the dynamic-vs-static bars when the file has a
    dllg / dllg-static pair), PNG and SVG, into `out_dir`; returns the files written."""
    require_matplotlib()
    if max_examples < 0:
        raise DllgError(f"--max-examples {max_examples}: give 0 or more responses per outcome and task")
    records = load_records(path)
    weighted, _ = weighted_records(records, path)
    method = choose_method(weighted, method)
    own = [r for r in weighted if r["method"] == method]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    written: list[Path] = []
    stems: set[str] = set()
    labels = task_labels(own)
    for record in responses_by_id(own, ids) if ids else pick_responses(own, max_examples):
        stem = slug(f"weights-{method}-{record['example_id']}")
        if stem in stems:  # the same id in another task or split
            stem = slug(f"{stem}-{labels[(record['task'], record.get('split'))]}")
        stems.add(stem)
        written += save(trajectory_figure(record), out_dir, stem)
    by_task: dict[str, list[dict]] = {}
    for r in own:
        by_task.setdefault(labels[(r["task"], r.get("split"))], []).append(r)
    for task, group in by_task.items():
        written += save(position_figure(group, method, task), out_dir, slug(f"position-{method}-{task}"))
    comparisons = static_comparisons(records)
    if comparisons:
        written += save(static_figure(comparisons), out_dir, "dynamic-vs-static")
    return written
