"""Report figures from plain data (dicts/lists/store records), never from live models.

Every function returns a `matplotlib.figure.Figure` built without pyplot (no global state,
safe under Agg and in threads); `figure_to_png_bytes` / `figure_to_data_uri` serialise it.
Series arguments map a line name to its points, given as a tuple ``(xs, ys)``, as a
list of ``(x, y)`` pairs, or as a ``{x: y}`` dict.
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from robustact.report.tables import RankTable, comparison, select

Series = Mapping[str, Any]


def figure_to_png_bytes(fig: Figure, *, dpi: int = 100) -> bytes:
    """PNG bytes of `fig` (no timestamp metadata, so equal figures give equal bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def figure_to_data_uri(fig: Figure, *, dpi: int = 100) -> str:
    """``data:image/png;base64,...`` URI of `fig`, for self-contained HTML."""
    return "data:image/png;base64," + base64.b64encode(figure_to_png_bytes(fig, dpi=dpi)).decode()


def _xy(points: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Normalises (xs, ys), [(x, y), ...] or {x: y} to two float arrays sorted by x.

    A *tuple* of two sequences is (xs, ys); a *list* is read as (x, y) pairs.
    """
    if isinstance(points, Mapping):
        xs, ys = list(points.keys()), list(points.values())
    elif (
        isinstance(points, tuple)
        and len(points) == 2
        and all(isinstance(p, (Sequence, np.ndarray)) and not isinstance(p, str) for p in points)
    ):
        xs, ys = list(points[0]), list(points[1])
    else:
        pairs = list(points)
        if not all(isinstance(p, (Sequence, np.ndarray)) and len(p) == 2 for p in pairs):
            raise ValueError(f"series {name!r}: pass (xs, ys), [(x, y), ...] or {{x: y}}")
        xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"series {name!r} needs as many x as y values (>= 1), got {x.shape}")
    order = np.argsort(x, kind="stable")
    return x[order], y[order]


def series_from_records(
    records: Iterable[Mapping[str, Any]],
    *,
    x_key: str,
    group_key: str | Sequence[str],
    where: Mapping[str, Any] | None = None,
    value_key: str = "value",
) -> dict[str, tuple[list[float], list[float]]]:
    """Groups records into plot series: one line per `group_key` value, x from `x_key`.

    Duplicates (e.g. seeds) at one x are averaged; records without an x are skipped.
    """
    keys = [group_key] if isinstance(group_key, str) else list(group_key)
    acc: dict[str, dict[float, list[float]]] = {}
    for r in select(records, where):
        if r.get(x_key) is None:
            continue
        name = " / ".join(str(r.get(k)) for k in keys)
        acc.setdefault(name, {}).setdefault(float(r[x_key]), []).append(float(r[value_key]))
    return {
        n: (sorted(pts), [float(np.mean(pts[x])) for x in sorted(pts)]) for n, pts in acc.items()
    }


def _set_xscale(ax: Axes, xs: np.ndarray, logx: bool | str) -> None:
    """Log x when asked, or ("auto") when the positive xs span more than two decades."""
    pos = xs[xs > 0]
    spans = pos.size >= 2 and pos.max() / pos.min() >= 100
    if logx is True or (logx == "auto" and spans):
        if np.any(xs <= 0):
            # lambda = 0 (no penalty) is a real point: keep it with a linear patch near 0.
            ax.set_xscale("symlog", linthresh=float(pos.min()) if pos.size else 1.0)
        else:
            ax.set_xscale("log")


def _lines(
    ax: Axes, series: Series, *, linestyle: str = "-", colors: Mapping[str, str] | None = None
) -> np.ndarray:
    all_x = []
    for i, (name, pts) in enumerate(series.items()):
        x, y = _xy(pts, name)
        color = (colors or {}).get(name, f"C{i % 10}")
        ax.plot(x, y, marker="o", ms=4, linestyle=linestyle, color=color, label=str(name))
        all_x.append(x)
    return np.concatenate(all_x) if all_x else np.zeros(0)


def plot_accuracy_vs_lambda(
    series: Series,
    *,
    title: str | None = None,
    xlabel: str = "λ (D-ReLU penalty)",
    ylabel: str = "Accuracy (%)",
    logx: bool | str = "auto",
) -> Figure:
    """Accuracy against the penalty weight, one line per attack (dissertation Fig 5.5).

    Args:
        series: attack name ("clean", "FGSM", "PGD", ...) -> points (lambda, accuracy).
        logx: True, False or "auto" (log when lambda spans decades; symlog keeps 0).
    """
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    xs = _lines(ax, series)
    _set_xscale(ax, xs, logx)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_eps(
    seed: Series,
    adaptive: Series | None = None,
    *,
    layout: str = "panels",
    title: str | None = None,
    xlabel: str = "ε",
    ylabel: str = "Robust accuracy (%)",
    logx: bool | str = False,
) -> Figure:
    """Accuracy against the perturbation budget, one line per method (Fig 5.19 style).

    Args:
        seed: method -> points (eps, accuracy) under the seeds' protocol.
        adaptive: the same under the adaptive protocol (optional).
        layout: "panels" (seed and adaptive side by side, shared y) or "dashed" (one
            panel, adaptive dashed in the method's colour).
    """
    if layout not in ("panels", "dashed"):
        raise ValueError(f"layout must be 'panels' or 'dashed', got {layout!r}")
    names = list(dict.fromkeys([*seed, *(adaptive or {})]))
    colors = {n: f"C{i % 10}" for i, n in enumerate(names)}
    if adaptive is None or layout == "dashed":
        fig = Figure(figsize=(6.0, 4.0))
        axes = [fig.add_subplot()]
        xs = _lines(axes[0], seed, colors=colors)
        if adaptive is not None:
            ad = {f"{n} (adaptive)": p for n, p in adaptive.items()}
            ad_colors = {f"{n} (adaptive)": colors[n] for n in adaptive}
            xs = np.concatenate([xs, _lines(axes[0], ad, linestyle="--", colors=ad_colors)])
        _set_xscale(axes[0], xs, logx)
    else:
        fig = Figure(figsize=(10.0, 4.0))
        axes = list(fig.subplots(1, 2, sharey=True))
        for ax, data, name in zip(
            axes, (seed, adaptive), ("seed protocol", "adaptive protocol"), strict=True
        ):
            _set_xscale(ax, _lines(ax, data, colors=colors), logx)
            ax.set_title(name)
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


_NORM_TITLES = {"linf": "L∞ distance", "l2": "L2 distance"}


def plot_layer_growth(
    distances: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    kind: str = "bar",
    layer_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Distance between clean and adversarial hidden outputs per layer (Fig 3.1 / 3.2).

    Args:
        distances: model -> norm ("linf", "l2", ...) -> one mean distance per hidden layer.
        kind: "bar" (grouped bars per layer) or "line" (one line per model).
        layer_names: x tick labels (default "h1", "h2", ...).

    Returns:
        One axes per norm, one bar group / line per model.
    """
    if kind not in ("bar", "line"):
        raise ValueError(f"kind must be 'bar' or 'line', got {kind!r}")
    if not distances:
        raise ValueError("distances is empty; pass {model: {'linf': [...], 'l2': [...]}}")
    norms = list(dict.fromkeys(n for per in distances.values() for n in per))
    fig = Figure(figsize=(5.0 * len(norms), 4.0))
    axes = np.atleast_1d(fig.subplots(1, len(norms)))
    models = list(distances)
    width = 0.8 / len(models)
    for ax, norm in zip(axes, norms, strict=True):
        n_layers = 0
        for i, model in enumerate(models):
            d = np.asarray(distances[model].get(norm, []), dtype=np.float64)
            if d.size == 0:
                continue
            n_layers = max(n_layers, d.size)
            x = np.arange(d.size, dtype=np.float64)
            if kind == "bar":
                ax.bar(
                    x + (i - (len(models) - 1) / 2) * width,
                    d,
                    width,
                    label=model,
                    color=f"C{i % 10}",
                )
            else:
                ax.plot(x, d, marker="o", label=model, color=f"C{i % 10}")
        ticks = list(layer_names or [f"h{j + 1}" for j in range(n_layers)])[:n_layers]
        ax.set_xticks(np.arange(len(ticks)), ticks)
        ax.set_xlabel("hidden layer")
        ax.set_ylabel(_NORM_TITLES.get(norm.lower(), f"{norm} distance"))
        ax.set_title(_NORM_TITLES.get(norm.lower(), norm) + ": clean vs adversarial")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_zero_gradient_distance(
    distances: Mapping[str, Sequence[float]],
    *,
    kind: str = "box",
    title: str | None = None,
    xlabel: str = "L2 distance to the first zero gradient",
) -> Figure:
    """Distribution of the distance PGD travels before the gradient vanishes (Fig 4.5-4.7).

    Args:
        distances: model -> per-sample distances (samples where a zero gradient was found).
        kind: "box" (one box per model) or "hist" (overlaid histograms).
    """
    if kind not in ("box", "hist"):
        raise ValueError(f"kind must be 'box' or 'hist', got {kind!r}")
    data = {m: np.asarray(v, dtype=np.float64).ravel() for m, v in distances.items()}
    if not data or any(v.size == 0 for v in data.values()):
        raise ValueError("every model needs at least one distance; drop models with none")
    fig = Figure(figsize=(6.0, 0.5 + 0.45 * max(len(data), 4)))
    ax = fig.add_subplot()
    if kind == "box":
        # matplotlib renamed these (3.9: tick_labels, 3.10: orientation); support both.
        mpl = tuple(int(p) for p in re.findall(r"\d+", matplotlib.__version__)[:2])
        kw: dict[str, Any] = {"orientation": "horizontal"} if mpl >= (3, 10) else {"vert": False}
        kw["tick_labels" if mpl >= (3, 9) else "labels"] = list(data)
        ax.boxplot(list(data.values()), showmeans=True, **kw)
        ax.set_xlabel(xlabel)
    else:
        lo = min(float(v.min()) for v in data.values())
        hi = max(float(v.max()) for v in data.values())
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 30).tolist()
        for i, (m, v) in enumerate(data.items()):
            ax.hist(v, bins=bins, alpha=0.5, label=m, color=f"C{i % 10}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("samples")
        ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_cd_diagram(table: RankTable, *, alpha: float = 0.05, title: str | None = None) -> Figure:
    """Nemenyi critical-difference diagram of a rank table (drawn by `robustact.stats`)."""
    cmp = comparison(table, alpha)
    if cmp is None:
        raise ValueError("a CD diagram needs at least 2 complete conditions and 2 methods")
    return cmp.cd_diagram(title=title)


def _cap_stats(per_layer: Any, layer: str) -> dict[str, np.ndarray]:
    """{"min": [...], "mean": [...], "max": [...]} or a list of per-epoch dicts -> arrays."""
    if isinstance(per_layer, Mapping):
        stats = {
            k: np.asarray(per_layer[k], dtype=np.float64)
            for k in ("min", "mean", "max")
            if k in per_layer
        }
    else:
        epochs = list(per_layer)
        stats = {
            k: np.asarray([e[k] for e in epochs], dtype=np.float64)
            for k in ("min", "mean", "max")
            if epochs and k in epochs[0]
        }
    if set(stats) != {"min", "mean", "max"}:
        raise ValueError(f"cap trajectory of {layer!r} needs 'min', 'mean' and 'max' per epoch")
    return stats


def plot_cap_trajectories(
    caps: Mapping[str, Any], *, title: str | None = None, logy: bool | str = "auto"
) -> Figure:
    """Min / mean / max cap of each D-ReLU layer per epoch, one panel per layer.

    Args:
        caps: layer name -> {"min": [...], "mean": [...], "max": [...]} (one value per
            epoch) or a list of per-epoch {"min", "mean", "max"} dicts.
        logy: log y-axis when True, or ("auto") when positive caps span two decades.
    """
    if not caps:
        raise ValueError("caps is empty; pass {layer: {'min': [...], 'mean': [...], 'max': [...]}}")
    n = len(caps)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.0 * cols, 3.2 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (layer, per_layer) in zip(axes, caps.items(), strict=False):
        st = _cap_stats(per_layer, layer)
        epochs = np.arange(1, st["mean"].size + 1)
        ax.fill_between(epochs, st["min"], st["max"], color="C0", alpha=0.15)
        for key, style in (("min", ":"), ("mean", "-"), ("max", "--")):
            ax.plot(epochs, st[key], style, color="C0", label=key)
        allv = np.concatenate(list(st.values()))
        if logy is True or (logy == "auto" and allv.min() > 0 and allv.max() / allv.min() >= 100):
            ax.set_yscale("log")
        ax.set_title(str(layer), fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("cap m")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[n:]:
        fig.delaxes(ax)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _array(v: Any) -> np.ndarray:
    """A float array of a tensor (any device), an array or nested lists."""
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    return np.asarray(v, dtype=np.float64)


def plot_sensitivity_map(smap: Any, score: float | None = None, *, image: Any = None) -> Figure:
    """Heat map of one sensitivity map (dissertation Fig 4.12), its sum in the title.

    Args:
        smap: one map (C, H, W) or (H, W) (tensor, array or nested lists); channels summed.
        score: the summed score (computed from ``smap`` when None).
        image: optional input (C, H, W) or (H, W) in [0, 1] shown beside the map.
    """
    m = _array(smap)
    if m.ndim == 3:
        m = m.sum(0)
    if m.ndim != 2:
        raise ValueError(f"smap must be (C, H, W) or (H, W), got shape {m.shape}")
    s = float(m.sum()) if score is None else float(score)
    ncol = 2 if image is not None else 1
    fig = Figure(figsize=(3 * ncol, 3))
    if image is not None:
        ax0 = fig.add_subplot(1, ncol, 1)
        img = _array(image)
        ax0.imshow(img.mean(0) if img.ndim == 3 else img, cmap="gray", vmin=0, vmax=1)
        ax0.set_axis_off()
    ax = fig.add_subplot(1, ncol, ncol)
    im = ax.imshow(m, cmap="Reds", vmin=0.0)
    ax.set_title(f"sum = {s:.4g}")
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def plot_panels(
    panels: Mapping[str, Series],
    *,
    dashed: Mapping[str, Series] | None = None,
    xlabel: str = "",
    ylabel: str = "Accuracy (%)",
    logx: bool | str = "auto",
    title: str | None = None,
) -> Figure:
    """Side-by-side line panels (one per title), each a set of series (Figs 4.1, 5.5, ...).

    Args:
        panels: panel title -> series (line name -> points).
        dashed: panel title -> series drawn dashed in the same colour as the solid line of
            that name (e.g. the adaptive protocol beside the paper protocol).
        logx: True, False or "auto" (log when x spans decades; symlog keeps 0).
    """
    if not panels:
        raise ValueError("panels is empty; pass {panel title: {line: points}}")
    names = list(dict.fromkeys(n for s in panels.values() for n in s))
    colors = {n: f"C{i % 10}" for i, n in enumerate(names)}
    fig = Figure(figsize=(4.6 * len(panels), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)).ravel()
    for ax, (name, series) in zip(axes, panels.items(), strict=True):
        xs = _lines(ax, series, colors=colors)
        extra = (dashed or {}).get(name) or {}
        if extra:
            ad = {f"{n} (adaptive)": p for n, p in extra.items()}
            ad_colors = {f"{n} (adaptive)": colors.get(n, "k") for n in extra}
            xs = np.concatenate([xs, _lines(ax, ad, linestyle="--", colors=ad_colors)])
        _set_xscale(ax, xs, logx)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_method_bars(
    groups: Mapping[str, Mapping[str, float]],
    *,
    ylabel: str = "Accuracy (%)",
    title: str | None = None,
) -> Figure:
    """Grouped bars: one group per method, one bar per measure ("clean", "PGD-20", ...).

    Args:
        groups: method -> measure -> value (already in the unit of ``ylabel``).
    """
    if not groups:
        raise ValueError("groups is empty; pass {method: {measure: value}}")
    measures = list(dict.fromkeys(m for g in groups.values() for m in g))
    methods = list(groups)
    width = 0.8 / max(len(measures), 1)
    fig = Figure(figsize=(max(5.0, 1.1 * len(methods) + 2.0), 4.0))
    ax = fig.add_subplot()
    x = np.arange(len(methods), dtype=np.float64)
    for i, m in enumerate(measures):
        vals = [groups[k].get(m, np.nan) for k in methods]
        ax.bar(x + (i - (len(measures) - 1) / 2) * width, vals, width, label=m, color=f"C{i % 10}")
    ax.set_xticks(x, methods, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_sensitivity_maps(
    maps: Mapping[str, tuple[Any, float]], *, title: str | None = None
) -> Figure:
    """One sensitivity-map panel per method (Fig 4.12), each titled with its summed score.

    Args:
        maps: method -> (map (H, W) or (C, H, W), summed score).
    """
    if not maps:
        raise ValueError("maps is empty; pass {method: (map, score)}")
    fig = Figure(figsize=(2.8 * len(maps), 3.2))
    axes = np.atleast_1d(fig.subplots(1, len(maps), squeeze=False)).ravel()
    for ax, (name, (smap, score)) in zip(axes, maps.items(), strict=True):
        m = _array(smap)
        m = m.sum(0) if m.ndim == 3 else m
        if m.ndim != 2:
            raise ValueError(f"map of {name!r} must be (H, W) or (C, H, W), got {m.shape}")
        im = ax.imshow(m, cmap="Reds", vmin=0.0)
        ax.set_title(f"{name}\nsum = {float(score):.4g}", fontsize=8)
        ax.set_axis_off()
        fig.colorbar(im, ax=ax, fraction=0.046)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
