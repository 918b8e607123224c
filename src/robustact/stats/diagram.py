"""Demšar-style critical-difference diagram (matplotlib, no pyplot state)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from robustact.stats._checks import check_names, to_numpy
from robustact.stats.posthoc import nonsignificant_groups

#: Artist gids, so callers and tests can find the parts of the diagram.
GID_AXIS = "cd-axis"
GID_CD_BAR = "cd-bar"
GID_GROUP = "cd-group"
GID_METHOD = "cd-method"

# Vertical layout in data units (y grows downwards, axis line at y = 0).
_GROUP_Y0, _GROUP_DY = 0.25, 0.18
_LABEL_DY = 0.35


def cd_diagram(
    avg_ranks: Any,
    method_names: Sequence[str],
    cd: float,
    *,
    title: str | None = None,
    reverse: bool = False,
    width: float = 6.0,
) -> Figure:
    """Draws a critical-difference diagram (Demšar 2006, Fig. 1 style).

    An axis of ranks 1..k; each method hangs from its average rank with a line to its
    label (better half on the left, worse half on the right, or mirrored with `reverse`);
    a "CD" bar of length `cd` above the axis; and thick bars joining each maximal group of
    methods whose average ranks are within `cd` (not significantly different).

    Uses `matplotlib.figure.Figure` directly (no pyplot), so it is safe with the Agg backend
    and in threads; save with ``fig.savefig(path)``.

    Args:
        avg_ranks: (k,) average ranks, k >= 2.
        method_names: k names, one per rank.
        cd: Nemenyi critical difference (see `critical_difference`), > 0.
        title: optional title.
        reverse: put rank 1 on the right instead of the left.
        width: figure width in inches (widened automatically for very long names).

    Returns:
        The figure; its single axes holds the artists, tagged with the gids
        `GID_AXIS`, `GID_CD_BAR`, `GID_GROUP` (one line per group) and `GID_METHOD`.
    """
    r = to_numpy(avg_ranks).astype(np.float64).ravel()
    k = r.size
    names = check_names(method_names, k)
    _check_ranks(r, k, cd)
    groups = nonsignificant_groups(r, cd)
    n_left = math.ceil(k / 2)
    label_y0 = _GROUP_Y0 + _GROUP_DY * len(groups) + 0.2
    bottom = label_y0 + _LABEL_DY * (max(n_left, k - n_left) - 1) + 0.3

    # Leave room on each side for the longest label: its width in inches (about 0.08 in a
    # character at 9 pt) as a fraction of the figure, converted to rank units.
    label_in = 0.08 * (max(len(n) for n in names) + 8) + 0.2
    width = max(width, label_in / 0.4)  # widen rather than clip very long names
    frac = max(label_in / width, 0.12)
    margin = (k - 1) * frac / (1.0 - 2.0 * frac)
    fig = Figure(figsize=(width, 0.9 + 0.55 * bottom))
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.9 if title else 0.96))
    ax.set_axis_off()
    lo, hi = 1.0 - margin, float(k) + margin
    ax.set_xlim((hi, lo) if reverse else (lo, hi))
    ax.set_ylim(bottom, -1.2)
    if title:
        fig.suptitle(title)
    _draw_axis(ax, k)
    _draw_cd_bar(ax, cd)
    for g, members in enumerate(groups):
        y = _GROUP_Y0 + _GROUP_DY * g
        span = [r[members[0]] - 0.04, r[members[-1]] + 0.04]
        ax.plot(span, [y, y], color="black", lw=3.5, solid_capstyle="round", gid=GID_GROUP)
    _draw_labels(ax, r, names, label_y0, margin, reverse)
    return fig


def _check_ranks(r: np.ndarray, k: int, cd: float) -> None:
    if k < 2 or not np.all(np.isfinite(r)):
        raise ValueError(f"need finite average ranks of at least 2 methods, got {r.tolist()}")
    if np.any(r < 1.0) or np.any(r > k):
        raise ValueError(f"average ranks must lie in [1, k={k}], got {r.tolist()}")
    if not cd > 0:
        raise ValueError(f"cd must be positive, got {cd}; compute it with critical_difference()")


def _draw_axis(ax: Any, k: int) -> None:
    """The rank axis 1..k with a tick per rank and a half tick between ranks."""
    ax.plot([1, k], [0, 0], color="black", lw=1.2, gid=GID_AXIS)
    for t in range(1, k + 1):
        ax.plot([t, t], [0, -0.12], color="black", lw=1.2, gid=GID_AXIS)
        ax.text(t, -0.18, str(t), ha="center", va="bottom", fontsize=9)
    for half in np.arange(1.5, k, 1.0):
        ax.plot([half, half], [0, -0.06], color="black", lw=0.8, gid=GID_AXIS)


def _draw_cd_bar(ax: Any, cd: float) -> None:
    """The CD bar; it starts at rank 1 so it reads against the axis scale."""
    ax.plot([1, 1 + cd], [-0.8, -0.8], color="black", lw=1.2, gid=GID_CD_BAR)
    for end in (1, 1 + cd):
        ax.plot([end, end], [-0.86, -0.74], color="black", lw=1.2, gid=GID_CD_BAR)
    ax.text(1 + cd / 2, -0.88, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)


def _draw_labels(
    ax: Any, r: np.ndarray, names: Sequence[str], label_y0: float, margin: float, reverse: bool
) -> None:
    """Each method's line from its rank to its label, at the outer edge of the rank axis
    on the side of its half (better half left unless ``reverse``)."""
    k = r.size
    n_left = math.ceil(k / 2)
    left_x, right_x = 1.0 - 0.15 * margin, float(k) + 0.15 * margin
    for pos, idx in enumerate(np.argsort(r, kind="stable")):
        on_left = pos < n_left
        row = pos if on_left else k - 1 - pos
        y = label_y0 + _LABEL_DY * row
        x_end = left_x if on_left else right_x
        ax.plot([r[idx], r[idx], x_end], [0, y, y], color="black", lw=0.9, gid=GID_METHOD)
        # With reverse the x axis is mirrored, so "outer" alignment flips too.
        ha = ("left" if reverse else "right") if on_left else ("right" if reverse else "left")
        ax.text(x_end, y, f" {names[idx]} ({r[idx]:.2f}) ", ha=ha, va="center", fontsize=9)
