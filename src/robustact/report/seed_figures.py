"""The seeds' figures, drawn from our cells' typed rows and named by the seed's id.

:data:`FIGURES` maps a seed figure id (``fig4_1``) to the function that draws it from the
cells of the recipe that reproduces it; each returns a `Figure`, or a one-line reason when
this store holds nothing it can draw (e.g. a quick run without the seed's equal network).
Accuracies are drawn in percent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from robustact.experiments.paper import PaperNumbers
from robustact.report.cells import CellView, adaptive_protocol, mean, paper_protocols
from robustact.report.plots import (
    plot_accuracy_vs_eps,
    plot_layer_growth,
    plot_method_bars,
    plot_panels,
    plot_sensitivity_maps,
)

__all__ = ["FIGURES", "draw_figure"]

Builder = Callable[[Sequence[CellView], PaperNumbers], "Figure | str"]
Points = dict[float, float]


def seed_value(paper: PaperNumbers, cell: CellView, path: str) -> Any:
    """The cell's config value at ``path`` as the seed names it (quick stand-ins applied)."""
    v = cell.get(path)
    return paper.quick_stand_ins.get(path, {}).get(v, v)


def _paper_protocol(cells: Sequence[CellView]) -> str | None:
    found = paper_protocols(cells)
    return found[0] if found else None


def _by_label(cells: Sequence[CellView]) -> dict[str, list[CellView]]:
    out: dict[str, list[CellView]] = {}
    for c in cells:
        out.setdefault(c.label, []).append(c)
    return out


def _first_linf(cells: Sequence[CellView], protocol: str | None) -> float | None:
    eps = [e for c in cells for e, n in c.threats(protocol) if n.lower() == "linf"]
    return min(eps) if eps else None


def _acc(
    c: CellView, protocol: str | None, attack: str, eps: float | None, metric: str = "accuracy"
) -> float | None:
    vals = [
        r.value
        for r in c.rows
        if r.kind == "result"
        and r.protocol == protocol
        and r.attack == attack
        and r.metric == metric
        and (eps is None or (r.eps is not None and abs(float(r.eps) - eps) < 1e-12))
    ]
    return mean(vals)


def _add(series: dict[str, Points], name: str, x: Any, y: float | None) -> None:
    if x is not None and y is not None:
        series.setdefault(name, {})[float(x)] = 100.0 * y


# --------------------------------------------------------------------------- Ch. 3, Fig 3.1/3.2


def _growth(norm: str) -> Builder:
    def build(cells: Sequence[CellView], paper: PaperNumbers) -> Figure | str:
        data: dict[str, dict[str, list[float]]] = {}
        for label, group in _by_label(cells).items():
            for attack, suffix in (("layer_growth", ""), ("layer_growth_adaptive", " (adaptive)")):
                rows = [
                    r
                    for c in group
                    for r in c.select(kind="diagnostic", attack=attack, metric=norm)
                ]
                layers = list(dict.fromkeys(r.item for r in rows))
                if layers:
                    vals = [mean(r.value for r in rows if r.item == la) for la in layers]
                    data[label + suffix] = {norm: [v or 0.0 for v in vals]}
        if not data:
            return "no layer_growth diagnostic rows in this store"
        return plot_layer_growth(data, title=f"{norm} distance, clean vs PGD, per hidden layer")

    return build


# --------------------------------------------------------------------------- Ch. 4 placement


def _evaluated_cap(c: CellView) -> Any:
    """The cap a placement cell was evaluated at: its swap's, else the trained one."""
    if c.get("swap.name") == "cap" and c.get("swap.max_value") is not None:
        return c.get("swap.max_value")
    return c.get("activation.max_value")


def _placement(c: CellView) -> str:
    where = c.get("activation.where")
    where = "both" if isinstance(where, list) else where or "all"
    return f"{where}, m0={c.get('activation.max_value')}"


def _placement_fig(model: str) -> Builder:
    def build(cells: Sequence[CellView], paper: PaperNumbers) -> Figure | str:
        sub = [c for c in cells if c.get("model.name") == model]
        if not sub:
            return f"no cells with model.name = {model} in this store"
        proto, adaptive = _paper_protocol(sub), adaptive_protocol(sub)
        eps = _first_linf(sub, proto)
        std: dict[str, Points] = {}
        rob: dict[str, Points] = {}
        rate: dict[str, Points] = {}
        ada: dict[str, Points] = {}
        for c in sub:
            x, name = _evaluated_cap(c), _placement(c)
            _add(std, name, x, c.clean())
            _add(rob, name, x, _acc(c, proto, "worst", eps))
            _add(rate, name, x, _acc(c, proto, "worst", eps, "success_rate"))
            _add(ada, name, x, _acc(c, adaptive, "worst", eps))
        robust = f"robust accuracy ({proto} protocol, ε={eps:g})" if eps else "robust accuracy"
        return plot_panels(
            {"standard accuracy": std, robust: rob, "success rate": rate},
            dashed={robust: ada},
            xlabel="max value (evaluated cap)",
            ylabel="%",
            title=f"{model}: S-ReLU placement (dashed: adaptive protocol)",
        )

    return build


def _zero_grad_fig(model: str) -> Builder:
    def build(cells: Sequence[CellView], paper: PaperNumbers) -> Figure | str:
        sub = [c for c in cells if c.get("model.name") == model]
        dist: dict[str, Points] = {}
        found: dict[str, Points] = {}
        for c in sub:
            x, name = _evaluated_cap(c), _placement(c)
            d = c.value(kind="diagnostic", attack="zero_gradient", metric="mean_distance")
            if x is not None and d is not None:
                dist.setdefault(name, {})[float(x)] = d
            _add(
                found,
                name,
                x,
                c.value(kind="diagnostic", attack="zero_gradient", metric="found_fraction"),
            )
        if not dist:
            return f"no zero_gradient diagnostic rows for model.name = {model} in this store"
        return plot_panels(
            {"mean distance to a zero gradient": dist, "points reaching one (%)": found},
            xlabel="max value (evaluated cap)",
            ylabel="",
            title=f"{model}: zero-gradient walk",
        )

    return build


def _sensitivity(cells: Sequence[CellView], paper: PaperNumbers) -> Figure | str:
    maps: dict[str, tuple[Any, float]] = {}
    for label, group in _by_label(cells).items():
        diag = group[0].extra.get("diagnostics", {}) if isinstance(group[0].extra, dict) else {}
        ex = diag.get("sensitivity_map", {}).get("sensitivity_map") if diag else None
        if isinstance(ex, Mapping) and ex.get("example_map") is not None:
            maps[label] = (ex["example_map"], float(ex.get("example_score", 0.0)))
    if maps:
        return plot_sensitivity_maps(maps, title="sensitivity map (eq. 4.3) of one digit")
    bars: dict[str, dict[str, float]] = {}
    for label, group in _by_label(cells).items():
        rows = [
            c.value(kind="diagnostic", attack="sensitivity_map", metric="score_mean") for c in group
        ]
        s = mean(rows)
        if s is not None:
            bars[label] = {"score (mean)": s}
    if not bars:
        return "no sensitivity_map diagnostic rows in this store"
    return plot_method_bars(bars, ylabel="summed sensitivity (mean over points)")


# --------------------------------------------------------------------------- Ch. 5


def _dataset(cells: Sequence[CellView], paper: PaperNumbers, name: str | None) -> list[CellView]:
    if name is None:
        return list(cells)
    return [c for c in cells if seed_value(paper, c, "dataset.name") == name]


def _lambda_fig(dataset: str | None, square: bool) -> Builder:
    def build(cells: Sequence[CellView], paper: PaperNumbers) -> Figure | str:
        sub = [c for c in _dataset(cells, paper, dataset) if c.get("objective.lam") is not None]
        if not sub:
            return f"no D-ReLU λ cells{f' on {dataset}' if dataset else ''} in this store"
        proto, adaptive = _paper_protocol(sub), adaptive_protocol(sub)
        eps = _first_linf(sub, proto)
        panels: dict[str, dict[str, Points]] = {}
        for c in sub:
            lines = panels.setdefault(str(c.get("model.name")), {})
            lam = c.get("objective.lam")
            _add(lines, "clean", lam, c.clean())
            attacks = dict.fromkeys(
                r.attack
                for r in c.rows
                if r.kind == "result"
                and r.protocol == proto
                and r.metric == "accuracy"
                and r.attack not in ("clean", "worst")
            )
            for a in attacks:
                if ("square" in a.lower()) == square:
                    own = next(
                        (
                            r.eps
                            for r in c.select(kind="result", protocol=proto, attack=a)
                            if r.norm and r.norm.lower() != "linf"
                        ),
                        None,
                    )
                    _add(lines, a, lam, _acc(c, proto, a, eps if own is None else own))
            _add(lines, "adaptive (worst)", lam, _acc(c, adaptive, "worst", eps))
        where = f" on {dataset}" if dataset else ""
        kind = "Square (black box)" if square else "white-box attacks"
        return plot_panels(
            panels, xlabel="λ (D-ReLU balancer)", title=f"accuracy vs λ{where}: {kind}"
        )

    return build


def _eps_fig(dataset: str) -> Builder:
    def build(cells: Sequence[CellView], paper: PaperNumbers) -> Figure | str:
        sub = _dataset(cells, paper, dataset)
        if not sub:
            return f"no cells on {dataset} in this store"
        proto, adaptive = _paper_protocol(sub), adaptive_protocol(sub)
        seed: dict[str, Points] = {}
        ada: dict[str, Points] = {}
        for c in sub:
            for eps, _ in c.threats(proto):
                _add(seed, c.label, eps, _acc(c, proto, "worst", eps))
                _add(ada, c.label, eps, _acc(c, adaptive, "worst", eps))
            _add(seed, c.label, 0.0, c.clean())
            _add(ada, c.label, 0.0, c.clean())
        return plot_accuracy_vs_eps(
            seed,
            ada or None,
            ylabel="Accuracy (%)",
            title=f"{dataset}: accuracy vs ε ({proto} | {adaptive})",
        )

    return build


# --------------------------------------------------------------------------- BReLU, seed 001


def _brelu_fig4(cells: Sequence[CellView], paper: PaperNumbers) -> Figure | str:
    steps: dict[str, Points] = {}
    replaced: dict[str, Points] = {}
    proto, adaptive = _paper_protocol(cells), adaptive_protocol(cells)
    for c in cells:
        for r in c.select(kind="diagnostic", attack="pgd_steps", metric="accuracy"):
            if c.get("swap") is None and r.item is not None:
                _add(steps, c.label, float(r.item), r.value)
        eps = _first_linf([c], proto)
        count = c.get("swap.count") or 0
        base = f"{c.get('activation.name')} -> {c.get('swap.name') or 'none'}"
        _add(replaced, f"{base}: clean", count, c.clean())
        _add(replaced, f"{base}: {proto}", count, _acc(c, proto, "worst", eps))
        _add(replaced, f"{base}: adaptive", count, _acc(c, adaptive, "worst", eps))
    panels = {"accuracy vs activations replaced": replaced}
    if steps:
        panels = {"robust accuracy vs PGD steps": steps, **panels}
    if not any(panels.values()):
        return "no cells in this store"
    return plot_panels(panels, xlabel="PGD steps | activations replaced", logx=False)


def _bars(attack_word: str, metric: str, ylabel: str) -> Builder:
    def build(cells: Sequence[CellView], paper: PaperNumbers) -> Figure | str:
        proto, adaptive = _paper_protocol(cells), adaptive_protocol(cells)
        groups: dict[str, dict[str, float]] = {}
        for label, group in _by_label(cells).items():
            g: dict[str, float] = {}
            if metric == "accuracy" and (v := mean(c.clean() for c in group)) is not None:
                g["clean"] = 100.0 * v
            for c in group:
                for r in c.rows:
                    if (
                        r.kind == "result"
                        and r.protocol == proto
                        and r.metric == metric
                        and attack_word in r.attack.upper()
                    ):
                        g[r.attack] = 100.0 * r.value
            eps = _first_linf(group, adaptive)
            if (
                metric == "accuracy"
                and (v := mean(_acc(c, adaptive, "worst", eps) for c in group)) is not None
            ):
                g["adaptive (worst)"] = 100.0 * v
            if g:
                groups[label] = g
        if not groups:
            return f"no {attack_word} rows in this store"
        return plot_method_bars(groups, ylabel=ylabel)

    return build


#: seed figure id -> the function drawing it from the recipe's cells.
FIGURES: dict[str, Builder] = {
    "fig3_1": _growth("linf"),
    "fig3_2": _growth("l2"),
    "fig4_1": _placement_fig("mlp_general"),
    "fig4_2": _placement_fig("mlp_reversed"),
    "fig4_3": _placement_fig("mlp_equal"),
    "fig4_5": _zero_grad_fig("mlp_general"),
    "fig4_6": _zero_grad_fig("mlp_reversed"),
    "fig4_7": _zero_grad_fig("mlp_equal"),
    "fig4_12": _sensitivity,
    "fig5_5": _lambda_fig(None, square=False),
    "fig5_6": _lambda_fig("cifar10", square=False),
    "fig5_8": _lambda_fig("cifar100", square=False),
    "fig5_9": _lambda_fig("tinyimagenet", square=False),
    "fig5_10": _lambda_fig("cifar10", square=True),
    "fig5_11": _lambda_fig("cifar100", square=True),
    "fig5_12": _lambda_fig("tinyimagenet", square=True),
    # the EDM figures are Figs 5.6/5.8/5.9 and 5.10-5.12 again, trained with generated data
    "fig5_13": _lambda_fig("cifar10", square=False),
    "fig5_14": _lambda_fig("cifar100", square=False),
    "fig5_15": _lambda_fig("tinyimagenet", square=False),
    "fig5_16": _lambda_fig("cifar10", square=True),
    "fig5_17": _lambda_fig("cifar100", square=True),
    "fig5_18": _lambda_fig("tinyimagenet", square=True),
    # several CNNs with a convolutional D-ReLU after the input: accuracy per model and attack
    "fig5_7": _bars("", "accuracy", "Accuracy (%)"),
    "fig5_19": _eps_fig("cifar10"),
    "fig5_20": _eps_fig("cifar100"),
    "fig5_21": _eps_fig("tinyimagenet"),
    "brelu_fig4": _brelu_fig4,
    "seed001_fig1": _bars("PGD", "mean_true_prob", "confidence in the true class (%)"),
    "seed001_fig2": _bars("PGD", "accuracy", "Accuracy (%)"),
}


def draw_figure(figure_id: str, cells: Sequence[CellView], paper: PaperNumbers) -> Figure | str:
    """The seed figure ``figure_id`` drawn from ``cells``, or why it cannot be drawn."""
    build = FIGURES.get(figure_id)
    if build is None:
        return f"robustact has no drawing for {figure_id} yet"
    return build(cells, paper)
