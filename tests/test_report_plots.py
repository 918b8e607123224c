"""Report figures: built from plain data, right number of axes/lines, PNG helpers."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from robustact.report import (
    figure_to_data_uri,
    figure_to_png_bytes,
    pivot,
    plot_accuracy_vs_eps,
    plot_accuracy_vs_lambda,
    plot_cap_trajectories,
    plot_cd_diagram,
    plot_layer_growth,
    plot_zero_gradient_distance,
    rank_table,
    series_from_records,
)


def test_accuracy_vs_lambda_log_scale_and_series_forms() -> None:
    fig = plot_accuracy_vs_lambda(
        {
            "clean": ([1e-4, 1e-2, 1.0], [98.0, 97.0, 90.0]),  # tuple (xs, ys)
            "PGD": [(1.0, 60.0), (1e-4, 5.0), (1e-2, 50.0)],  # pairs, unsorted
            "FGSM": {1e-4: 30.0, 1e-2: 55.0, 1.0: 70.0},  # dict
        }
    )
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert [ln.get_label() for ln in ax.lines] == ["clean", "PGD", "FGSM"]
    assert ax.get_xscale() == "log"
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), [1e-4, 1e-2, 1.0])  # sorted by x
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [5.0, 50.0, 60.0])
    with_zero = plot_accuracy_vs_lambda({"PGD": ([0.0, 1e-3, 1.0], [5.0, 20.0, 40.0])})
    assert with_zero.axes[0].get_xscale() == "symlog"  # lambda = 0 kept on the axis
    narrow = plot_accuracy_vs_lambda({"PGD": ([0.1, 0.5], [5.0, 20.0])})
    assert narrow.axes[0].get_xscale() == "linear"
    with pytest.raises(ValueError, match="series 'x'"):
        plot_accuracy_vs_lambda({"x": [1, 2, 3]})


def test_accuracy_vs_eps_panels_and_dashed() -> None:
    seed = {"ReLU": {0.05: 9.5, 0.1: 6.6}, "S-ReLU": {0.05: 89.6, 0.1: 62.7}}
    adaptive = {"ReLU": {0.05: 8.0, 0.1: 5.6}, "S-ReLU": {0.05: 16.0, 0.1: 11.2}}
    fig = plot_accuracy_vs_eps(seed, adaptive)
    assert len(fig.axes) == 2 and [len(a.lines) for a in fig.axes] == [2, 2]
    assert [a.get_title() for a in fig.axes] == ["seed protocol", "adaptive protocol"]
    # Same colour for a method in both panels.
    assert fig.axes[0].lines[1].get_color() == fig.axes[1].lines[1].get_color()
    dashed = plot_accuracy_vs_eps(seed, adaptive, layout="dashed")
    lines = dashed.axes[0].lines
    assert len(dashed.axes) == 1 and len(lines) == 4
    assert [ln.get_linestyle() for ln in lines] == ["-", "-", "--", "--"]
    assert lines[0].get_color() == lines[2].get_color()
    assert len(plot_accuracy_vs_eps(seed).axes) == 1


def test_layer_growth_zero_gradient_caps() -> None:
    growth = {
        "ReLU": {"linf": [0.5, 1.2, 2.9], "l2": [3.0, 7.5, 15.0]},
        "S-ReLU": {"linf": [0.5, 0.2, 0.1], "l2": [3.0, 1.0, 0.4]},
    }
    bars = plot_layer_growth(growth)
    assert len(bars.axes) == 2 and [len(a.patches) for a in bars.axes] == [6, 6]
    heights = sorted(p.get_height() for p in bars.axes[0].patches if isinstance(p, Rectangle))
    assert heights == sorted([0.5, 1.2, 2.9, 0.5, 0.2, 0.1])
    assert [t.get_text() for t in bars.axes[0].get_xticklabels()] == ["h1", "h2", "h3"]
    lines = plot_layer_growth(growth, kind="line")
    assert [len(a.lines) for a in lines.axes] == [2, 2]

    box = plot_zero_gradient_distance({"ReLU": [2.0, 3.0, 4.0], "S-ReLU": [0.1, 0.3]})
    assert len(box.axes) == 1
    assert [t.get_text() for t in box.axes[0].get_yticklabels()] == ["ReLU", "S-ReLU"]
    hist = plot_zero_gradient_distance({"a": [1.0, 2.0], "b": [1.5]}, kind="hist")
    assert len(hist.axes[0].patches) == 2 * 29  # 30 bin edges -> 29 bars per model
    with pytest.raises(ValueError, match="at least one distance"):
        plot_zero_gradient_distance({"a": []})

    caps = {
        "fc1": {"min": [100.0, 10.0, 1.0], "mean": [100.0, 20.0, 3.0], "max": [100.0, 50.0, 9.0]},
        "fc2": [{"min": 1.0, "mean": 2.0, "max": 3.0}] * 4,
    }
    fig = plot_cap_trajectories(caps)
    assert len(fig.axes) == 2 and [len(a.lines) for a in fig.axes] == [3, 3]
    assert fig.axes[0].get_yscale() == "log" and fig.axes[1].get_yscale() == "linear"
    np.testing.assert_array_equal(fig.axes[0].lines[1].get_ydata(), [100.0, 20.0, 3.0])
    assert len(plot_cap_trajectories({f"l{i}": caps["fc1"] for i in range(4)}).axes) == 4
    with pytest.raises(ValueError, match="needs 'min', 'mean' and 'max'"):
        plot_cap_trajectories({"fc": {"mean": [1.0]}})


def test_cd_diagram_and_series_from_records() -> None:
    recs = [
        {
            "attack": a,
            "value": v,
            "metric": "accuracy",
            "cfg.method": m,
            "cfg.objective.lam": lam,
            "eps": 0.1,
        }
        for m, base in (("A", 90.0), ("B", 60.0), ("C", 30.0))
        for a, off in (("PGD", 0.0), ("FGSM", 5.0))
        for lam, v in ((0.0, base + off), (0.01, base + off + 1))
    ]
    t = rank_table(pivot(recs, row_keys=("attack", "cfg.objective.lam")))
    fig = plot_cd_diagram(t)
    assert len(fig.axes) == 1 and any(ln.get_gid() == "cd-bar" for ln in fig.axes[0].lines)
    ser = series_from_records(recs, x_key="cfg.objective.lam", group_key="attack")
    assert ser["PGD"] == ([0.0, 0.01], [60.0, 61.0])  # mean over the three methods
    with pytest.raises(ValueError, match="2 complete conditions"):
        plot_cd_diagram(rank_table(pivot(recs[:1] + recs[4:5] + recs[8:9], row_keys=("attack",))))


def test_png_helpers() -> None:
    fig = plot_accuracy_vs_lambda({"PGD": ([0.1, 0.5], [5.0, 20.0])})
    png = figure_to_png_bytes(fig, dpi=50)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png == figure_to_png_bytes(fig, dpi=50)
    width = int.from_bytes(png[16:20], "big")  # IHDR width
    assert 200 < width < 400  # 6 in at 50 dpi, tight bbox
    uri = figure_to_data_uri(fig, dpi=50)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == png
