"""The figures of `dllg plot`: what each draws (lines per expert and outcome), that it is not blank, and which
responses the command picks."""

import numpy as np
import pytest
from hand_records import DYNAMIC, EXPERTS, make_record

from dllg.analysis.figures import draw_figures, pick_responses, position_figure, save, trajectory_figure
from dllg.errors import DllgError

mpimg = pytest.importorskip("matplotlib.image")


def test_a_trajectory_has_one_line_per_expert_and_is_not_blank(tmp_path):
    correct, weights = DYNAMIC["t/0"]
    figure = trajectory_figure(make_record("dllg:g", "t/0", correct, weights))
    ax = figure.axes[0]
    assert len(ax.get_lines()) == len(EXPERTS)
    assert ax.get_lines()[1].get_ydata().tolist() == pytest.approx([row[1] for row in weights])
    assert ax.get_title() == "dllg:g · t/0 · correct"
    png, svg = save(figure, tmp_path, "one")
    pixels = mpimg.imread(png).reshape(-1, 4)
    assert len(np.unique(pixels, axis=0)) > 1 and svg.stat().st_size > 0


def test_position_curves_solid_for_correct_and_dashed_for_incorrect(records):
    dynamic = [r for r in records if r["method"] == "dllg:g" and r["task"] == "t"]
    lines = position_figure(dynamic, "dllg:g", "t").axes[0].get_lines()
    assert [line.get_linestyle() for line in lines] == ["-", "-", "--", "--"]
    only_correct = [r for r in dynamic if r["correct"]]
    assert len(position_figure(only_correct, "dllg:g", "t").axes[0].get_lines()) == len(EXPERTS)


def test_the_first_responses_of_each_outcome_are_picked_per_task(records):
    dynamic = [r for r in records if r["method"] == "dllg:g"]
    assert [r["example_id"] for r in pick_responses(dynamic, 1)] == ["t/0", "t/1", "u/0"]
    assert [r["example_id"] for r in pick_responses(dynamic, 2)] == ["t/0", "t/3", "t/1", "t/2", "u/0"]


def test_plot_writes_png_and_svg_of_every_figure(records_file, tmp_path):
    out = tmp_path / "figures"
    written = draw_figures(records_file, out, max_examples=1)
    stems = sorted({p.stem for p in written})
    assert stems == sorted(
        [
            "weights-dllg-g-t-0",
            "weights-dllg-g-t-1",
            "weights-dllg-g-u-0",
            "position-dllg-g-t",
            "position-dllg-g-u",
            "dynamic-vs-static",
        ]
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    assert {p.suffix for p in written} == {".png", ".svg"}
    chosen = draw_figures(records_file, tmp_path / "chosen", method="dllg-static:g", ids=["t/9"])
    assert {p.stem for p in chosen if p.stem.startswith("weights")} == {"weights-dllg-static-g-t-9"}


def test_plot_refuses_an_unknown_method_or_id(records_file, tmp_path):
    with pytest.raises(DllgError, match="--method expert:a: no records with per-token weights"):
        draw_figures(records_file, tmp_path, method="expert:a")
    with pytest.raises(DllgError, match="--ids t/77: no such example"):
        draw_figures(records_file, tmp_path, ids=["t/77"])
