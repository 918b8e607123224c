"""Per-model curves from the store: the security curve (accuracy vs eps) and the attack
convergence (accuracy vs attack steps), one panel per model.

What is drawn is what the store holds; nothing is re-run:

* security curve: each protocol's worst-case accuracy at every eps it was run at (the
  clean accuracy at eps 0), and the masking report's plain-PGD curve (its
  ``large_eps_accuracy`` check runs PGD at eps, 2 eps, 4 eps and a huge eps);
* convergence: the ``pgd_steps`` diagnostic (plain PGD accuracy per number of steps, per
  eps), and the masking report's PGD-k runs (its ``more_steps_help`` check: PGD-10 vs
  PGD-100, 30 in fast mode) with FGSM as the one-step point.

Curves hold fractions; the plots show percent. When the store has nothing for a plot,
:func:`curve_figures` returns a note saying so (and how to get the data) instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from robustact.report.format import protocol_title
from robustact.report.tables import fmt_key, method_label, select

__all__ = ["Curve", "convergence_curves", "curve_figures", "plot_curves", "security_curves"]

_PGD_K = re.compile(r"^PGD-(\d+)$")


@dataclass(frozen=True)
class Curve:
    """One line: ``xs`` (eps or steps), ``ys`` (accuracy fractions, seeds averaged), ``n``
    (test points behind each value, None when unknown), a dashed flag and ``color``: lines
    with the same colour key share a colour in every panel (default: the label)."""

    label: str
    xs: list[float]
    ys: list[float]
    n: int | None = None
    dashed: bool = False
    color: str = ""


Curves = dict[str, list[Curve]]


class _Acc:
    """model -> line -> x -> values (averaged over cells/seeds), with n per line."""

    def __init__(self) -> None:
        self.pts: dict[str, dict[str, dict[float, list[float]]]] = {}
        self.n: dict[tuple[str, str], int] = {}
        self.dashed: set[tuple[str, str]] = set()
        self.color: dict[str, str] = {}

    def add(self, model: str, line: str, x: float, y: float, n: Any = None) -> None:
        self.pts.setdefault(model, {}).setdefault(line, {}).setdefault(float(x), []).append(
            float(y)
        )
        if n is not None:
            self.n[(model, line)] = max(self.n.get((model, line), 0), int(n))

    def curves(self, min_points: int = 2) -> Curves:
        out: Curves = {}
        for model, lines in self.pts.items():
            for line, pts in lines.items():
                if len(pts) < min_points and not line.startswith("FGSM"):
                    continue
                xs = sorted(pts)
                c = Curve(line, xs, [float(np.mean(pts[x])) for x in xs],
                          self.n.get((model, line)), (model, line) in self.dashed,
                          self.color.get(line, line))  # fmt: skip
                out.setdefault(model, []).append(c)
        # a model whose only line is the FGSM marker has no curve
        return {m: cs for m, cs in out.items() if any(not c.label.startswith("FGSM") for c in cs)}


def _model(r: Mapping[str, Any], method_key: Any, group_keys: Sequence[str]) -> str:
    name = method_label(r, method_key)
    groups = [fmt_key(r.get(k)) for k in group_keys if r.get(k) is not None]
    return f"{name} ({', '.join(groups)})" if groups else name


def _by_eps(rep: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    runs = rep.get("by_eps")
    return [b for b in runs if isinstance(b, Mapping)] if isinstance(runs, list) else [rep]


def security_curves(
    records: Sequence[Mapping[str, Any]],
    masking: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    method_key: str | Sequence[str] = "method",
    group_keys: Sequence[str] = (),
) -> Curves:
    """model -> accuracy-vs-eps curves (see the module docstring); lines with fewer than
    two budgets (clean included) are left out."""
    acc = _Acc()
    clean: dict[tuple[str, str], list[float]] = {}
    for r in select(records, {"metric": "accuracy", "kind": "result"}):
        model, proto = _model(r, method_key, group_keys), str(r.get("protocol"))
        line = f"{protocol_title(proto)}, worst case"
        if r.get("attack") == "clean":
            clean.setdefault((model, line), []).append(float(r["value"]))
        elif r.get("attack") == "worst" and r.get("eps") is not None:
            acc.add(model, line, float(r["eps"]), float(r["value"]), r.get("n"))
            acc.dashed.update({(model, line)} if proto != "seed" else set())
    for (model, line), vals in clean.items():
        if line in acc.pts.get(model, {}):
            for v in vals:
                acc.add(model, line, 0.0, v)
    _masking_security(acc, records, masking or {}, method_key, group_keys)
    return acc.curves()


def _cells(
    records: Sequence[Mapping[str, Any]], method_key: Any, group_keys: Sequence[str]
) -> dict[str, str]:
    """cell id -> model name."""
    return {str(r.get("cell_id")): _model(r, method_key, group_keys) for r in records}


def _masking_security(
    acc: _Acc, records: Sequence[Mapping[str, Any]], masking: Mapping[str, Mapping[str, Any]],
    method_key: Any, group_keys: Sequence[str],
) -> None:  # fmt: skip
    for cid, model in _cells(records, method_key, group_keys).items():
        for run in _by_eps(masking.get(cid) or {}):
            curve = run.get("security_curve") or []
            clean = (run.get("accuracies") or {}).get("clean")
            line = "plain PGD (masking report)"
            if curve and clean is not None:
                acc.add(model, line, 0.0, float(clean), run.get("n"))
            for point in curve:
                if isinstance(point, Sequence) and len(point) == 2:
                    acc.add(model, line, float(point[0]), float(point[1]), run.get("n"))


def convergence_curves(
    records: Sequence[Mapping[str, Any]],
    masking: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    method_key: str | Sequence[str] = "method",
    group_keys: Sequence[str] = (),
) -> Curves:
    """model -> accuracy-vs-steps curves (see the module docstring)."""
    acc = _Acc()
    for r in select(records, {"metric": "accuracy", "attack": "pgd_steps"}):
        if r.get("item") is None or r.get("eps") is None:
            continue
        line = f"PGD, ε = {fmt_key(r['eps'])} (pgd_steps diagnostic)"
        acc.color[line] = f"ε = {fmt_key(r['eps'])}"
        acc.add(_model(r, method_key, group_keys), line, float(r["item"]), r["value"], r.get("n"))
    with_diagnostic = set(acc.pts)  # the masking report's two PGD runs only where it is all
    for cid, model in _cells(records, method_key, group_keys).items():
        for run in _by_eps((masking or {}).get(cid) or {}) if model not in with_diagnostic else ():
            accs = run.get("accuracies") or {}
            eps = fmt_key(run.get("eps"))
            line = f"plain PGD, ε = {eps} (masking report)"
            acc.color[line] = acc.color[f"FGSM (1 step), ε = {eps}"] = f"ε = {eps}"
            acc.dashed.add((model, line))
            for label, v in accs.items():
                m = _PGD_K.match(str(label))
                if m and v is not None:
                    acc.add(model, line, float(m.group(1)), float(v), run.get("n"))
            if accs.get("FGSM") is not None and len(acc.pts.get(model, {}).get(line, {})) >= 2:
                acc.add(model, f"FGSM (1 step), ε = {eps}", 1.0, float(accs["FGSM"]), run.get("n"))
    return acc.curves()


def plot_curves(
    curves: Curves, *, xlabel: str, title: str | None = None, logx: bool = False
) -> Figure:
    """One panel per model (at most 3 per row), accuracy in percent against x."""
    if not curves:
        raise ValueError("no curves to draw; check the store holds the rows (see curve_figures)")
    n = len(curves)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.6 * cols, 2.7 * rows + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, sharey=True)).ravel()
    handles: dict[str, Any] = {}
    keys = sorted({c.color or c.label for cs in curves.values() for c in cs}, key=_order)
    colors = {k: f"C{i % 10}" for i, k in enumerate(keys)}
    for ax, (model, lines) in zip(axes, curves.items(), strict=False):
        _panel(ax, lines, handles, colors, logx)
        ax.set_title(model, fontsize=8)
        ax.set_xlabel(xlabel, fontsize=8)
    for ax in axes[::cols]:
        ax.set_ylabel("accuracy (%)", fontsize=8)
    for ax in axes[n:]:
        fig.delaxes(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    # one legend for all panels, under them: the lines are the same in every panel
    fig.legend(list(handles.values()), list(handles), loc="lower center", fontsize=7,
               ncol=min(len(handles), 3), frameon=False)  # fmt: skip
    fig.tight_layout(rect=(0.0, 0.04 + 0.03 * math.ceil(len(handles) / 3) / rows, 1.0, 1.0))
    return fig


def _order(key: str) -> tuple[int, str]:
    """Paper protocol first, then adaptive, then the rest (legend and colour order)."""
    return (0 if key.startswith("paper") else 1 if key.startswith("adaptive") else 2, key)


def _panel(
    ax: Any, lines: Sequence[Curve], handles: dict[str, Any], colors: Mapping[str, str],
    logx: bool,
) -> None:  # fmt: skip
    """One model's lines; their handles are collected by label for the shared legend."""
    for c in lines:
        ys = [100.0 * y for y in c.ys]
        label = c.label + (f", n = {c.n}" if c.n else "")
        color = colors[c.color or c.label]
        if c.label.startswith("FGSM"):
            (h,) = ax.plot(c.xs, ys, "x", color=color, ms=7)
        else:
            (h,) = ax.plot(c.xs, ys, marker="o", ms=3.5, color=color,
                           linestyle="--" if c.dashed else "-")  # fmt: skip
        handles.setdefault(label, h)
    if logx:
        ax.set_xscale("log")
        ticks = sorted({x for c in lines for x in c.xs})
        ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
        ax.minorticks_off()
    ax.set_ylim(-3, 103)
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=7)


SECURITY = "Security curve: accuracy vs ε, per model"
CONVERGENCE = "Attack convergence: accuracy vs attack steps, per model"


def curve_figures(
    records: Sequence[Mapping[str, Any]],
    masking: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    method_key: str | Sequence[str] = "method",
    group_keys: Sequence[str] = (),
) -> tuple[dict[str, Figure], list[str]]:
    """The two figures (caption -> Figure) and, for each that has no data, a note."""
    figs: dict[str, Figure] = {}
    notes: list[str] = []
    varying = [k for k in group_keys if len({r.get(k) for r in records}) > 1]
    kw: dict[str, Any] = {"method_key": method_key, "group_keys": varying}
    sec = security_curves(records, masking, **kw)
    if sec:
        figs[SECURITY] = plot_curves(sec, xlabel="ε")
    else:
        notes.append(f"{SECURITY}: no data (needs protocols run at one or more ε with a clean "
                     "accuracy, or the masking report).")  # fmt: skip
    conv = convergence_curves(records, masking, **kw)
    if conv:
        steps = [x for cs in conv.values() for c in cs for x in c.xs]
        figs[CONVERGENCE] = plot_curves(
            conv, xlabel="attack steps", logx=max(steps) / max(min(steps), 1.0) >= 10
        )
    else:
        notes.append(f"{CONVERGENCE}: no data (add the pgd_steps diagnostic to the spec's "
                     "evaluation.diagnostics, or run the masking report).")  # fmt: skip
    return figs, notes
