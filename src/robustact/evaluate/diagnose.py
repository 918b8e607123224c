"""Named diagnostics: the seeds' measurements as a registry run by the evaluation suite.

Each diagnostic is a function ``(ctx, options) -> (rows, extra)`` registered with its
default options in :data:`DIAGNOSTICS`; :func:`run_diagnostics` runs a list of
``{"name": ..., **options}`` configs. Rows are typed (kind ``"diagnostic"``, protocol
``"diagnostics"``, attack = the diagnostic's name; see :mod:`robustact.evaluate.rows`);
``extra`` holds the full results (JSON) for plots. Attacks run through the protocol
runner (:func:`robustact.evaluate.runner.run_entry`).

==================== =========================================== ===========================
diagnostic           rows (attack, item, metric)                 source
==================== =========================================== ===========================
layer_growth         layer_growth[_adaptive], <layer>, linf | l2 dissertation Fig 3.1/3.2
zero_gradient        zero_gradient, -, mean_distance |           dissertation §4.4
                     found_fraction
sensitivity_map      sensitivity_map[+bpda], -, score_mean        eq. 4.3, Fig 4.12
negative_unit_ratio  negative_unit_ratio, <layer>, pre | post     BReLU paper Table 6
cap_trajectory       cap_trajectory, <layer>, min | mean | max    the caps after training
input_gradient_norm  input_gradient_norm, -, mean                 gradient-penalty defences
pgd_steps            pgd_steps, <steps>, accuracy (per eps)       accuracy vs PGD steps
logit_variability    logit_variability, -, logit_std | true_prob_ BReLU paper App. B
                     min | true_prob_max | prediction_changes |
                     correct_every_run
==================== =========================================== ===========================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustact._registry import Registry
from robustact.evaluate import diagnostics as D
from robustact.evaluate.protocol import ProtocolEntry
from robustact.evaluate.rows import MetricRow
from robustact.evaluate.runner import run_entry

__all__ = ["DIAGNOSTICS", "Diagnostic", "DiagnosticContext", "diagnostic", "run_diagnostics"]

Rows = list[MetricRow]
Output = tuple[Rows, Any]


@dataclass(frozen=True)
class DiagnosticContext:
    """What every diagnostic may read.

    Attributes:
        model: the evaluated model (eval mode); x, y: test points (N, ...), (N,) on its
            device (each diagnostic takes its first ``n``).
        eps, norm: the evaluation's threat models (for the attack-based diagnostics).
        seed: seeds every attack; history: the training records (``cap_trajectory``).
    """

    model: nn.Module
    x: Tensor
    y: Tensor
    eps: Sequence[float]
    norm: str
    seed: int = 0
    history: Sequence[Mapping[str, Any]] = field(default_factory=list)

    def row(self, attack: str, metric: str, value: float, item: str | None = None,
            eps: float | None = None, n: int | None = None) -> MetricRow:  # fmt: skip
        """A diagnostic row (with the norm when ``eps`` is given)."""
        norm = self.norm if eps is not None else None
        return MetricRow("diagnostics", attack, metric, float(value), eps, norm,
                         kind="diagnostic", item=item, n=n)  # fmt: skip


@dataclass(frozen=True)
class Diagnostic:
    """A registered diagnostic: its function and default options."""

    name: str
    fn: Callable[[DiagnosticContext, Mapping[str, Any]], Output]
    defaults: Mapping[str, Any]


#: name -> :class:`Diagnostic` (``robustact.experiments`` validates the options).
DIAGNOSTICS: Registry[Diagnostic] = Registry("diagnostic")


def diagnostic(name: str, **defaults: Any) -> Callable[[Any], Any]:
    """Decorator: register ``fn(ctx, options) -> (rows, extra)`` with its default options."""

    def deco(fn: Callable[[DiagnosticContext, Mapping[str, Any]], Output]) -> Any:
        DIAGNOSTICS.add(name, Diagnostic(name, fn, dict(defaults)))
        return fn

    return deco


def run_diagnostics(
    ctx: DiagnosticContext, configs: Sequence[Mapping[str, Any] | str]
) -> tuple[Rows, dict[str, Any]]:
    """Run each diagnostic config (a name or ``{"name": ..., **options}``) on ``ctx``.

    Returns:
        ``(rows, extra)``: all rows, and diagnostic name -> its full result (JSON).
    """
    rows: Rows = []
    extra: dict[str, Any] = {}
    for cfg in configs:
        cfg = {"name": cfg} if isinstance(cfg, str) else cfg
        d = DIAGNOSTICS.get(str(cfg["name"]))
        unknown = set(cfg) - set(d.defaults) - {"name"}
        if unknown:
            raise ValueError(f"diagnostic {d.name!r}: unknown options {sorted(unknown)}; "
                             f"known: {sorted(d.defaults)}")  # fmt: skip
        r, extra[d.name] = d.fn(ctx, {**d.defaults, **cfg})
        rows += r
    return rows, extra


def _first(ctx: DiagnosticContext, o: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
    n = int(o.get("n") or len(ctx.y))
    return ctx.x[:n], ctx.y[:n]


def _pgd(steps: int, step_size: float, seed: int, label: str = "PGD", **kw: Any) -> ProtocolEntry:
    opts = {k: kw.pop(k) for k in ("bpda", "eot") if k in kw}
    return ProtocolEntry(label, "pgd", {"steps": steps, "step_size": step_size, "seed": seed,
                                        **kw}, **opts)  # fmt: skip


@diagnostic("layer_growth", n=200, eps=None, steps=20, step_size=None, where="activations",
            adaptive=True)  # fmt: skip
def layer_growth(ctx: DiagnosticContext, o: Mapping[str, Any]) -> Output:
    """Layer-output distance clean vs PGD (and vs adaptive PGD: margin, BPDA, EOT)."""
    xs, ys = _first(ctx, o)
    rows: Rows = []
    extra: dict[str, Any] = {}
    for eps in [o["eps"]] if o["eps"] is not None else ctx.eps:
        step = o["step_size"] or eps / 10
        runs = [_pgd(o["steps"], step, ctx.seed, "layer_growth")]
        if o["adaptive"]:
            runs.append(_pgd(o["steps"], step, ctx.seed, "layer_growth_adaptive", loss="margin",
                             bpda=True, eot="auto"))  # fmt: skip
        for entry in runs:
            x_adv, _ = run_entry(ctx.model, xs, ys, entry, eps, ctx.norm)
            dists = D.layer_distances(ctx.model, xs, x_adv, where=o["where"])
            extra[f"{entry.label}@{eps:g}"] = [vars(d) for d in dists]
            for d in dists:
                rows.append(ctx.row(entry.label, "linf", d.linf, d.name, eps, len(ys)))
                rows.append(ctx.row(entry.label, "l2", d.l2, d.name, eps, len(ys)))
    return rows, extra


@diagnostic("zero_gradient", n=200, eps=math.inf, steps=100, step_size=0.01, norm="linf")
def zero_gradient(ctx: DiagnosticContext, o: Mapping[str, Any]) -> Output:
    """Distance PGD travels before the input gradient vanishes (§4.4)."""
    xs, ys = _first(ctx, o)
    zn = "L2" if str(o["norm"]).lower() == "l2" else "Linf"
    z = D.zero_gradient_distance(ctx.model, xs, ys, eps=o["eps"], steps=o["steps"],
                                 step_size=o["step_size"], norm=zn)  # fmt: skip
    found = z.distances[~torch.isnan(z.distances)].tolist()
    rows = [ctx.row("zero_gradient", "found_fraction", z.found_fraction, n=len(ys))]
    if not math.isnan(z.mean_distance):
        rows.append(ctx.row("zero_gradient", "mean_distance", z.mean_distance, n=len(found)))
    mean = None if math.isnan(z.mean_distance) else z.mean_distance
    return rows, {"mean_distance": mean, "found_fraction": z.found_fraction, "distances": found,
                  "steps": o["steps"], "step_size": o["step_size"]}  # fmt: skip


@diagnostic("sensitivity_map", n=200, bpda=True)
def sensitivity_map(ctx: DiagnosticContext, o: Mapping[str, Any]) -> Output:
    """Eq. 4.3 summed over pixels, mean over points; one example map (a 5, as Fig 4.12)."""
    xs, ys = _first(ctx, o)
    rows: Rows = []
    extra: dict[str, Any] = {}
    for bpda in (False, True) if o["bpda"] else (False,):
        smap, scores = D.sensitivity_map(ctx.model, xs, ys, bpda=bpda)
        label = "sensitivity_map" + ("+bpda" if bpda else "")
        rows.append(ctx.row(label, "score_mean", float(scores.mean()), n=len(ys)))
        i = int((ys == 5).nonzero()[0]) if bool((ys == 5).any()) else 0
        extra[label] = {
            "score_mean": float(scores.mean()), "example_index": i,
            "example_label": int(ys[i]), "example_score": float(scores[i]),
            "example_map": smap[i].sum(0).cpu().round(decimals=8).tolist(),
        }  # fmt: skip
    return rows, extra


@diagnostic("negative_unit_ratio", n=500)
def negative_unit_ratio(ctx: DiagnosticContext, o: Mapping[str, Any]) -> Output:
    """Fraction of negative values before and after each activation (BReLU Table 6)."""
    xs, _ = _first(ctx, o)
    ratios = D.negative_unit_ratio(ctx.model, xs)
    rows = [ctx.row("negative_unit_ratio", k, getattr(r, k), r.name, n=len(xs))
            for r in ratios for k in ("pre", "post")]  # fmt: skip
    return rows, [vars(r) for r in ratios]


@diagnostic("cap_trajectory")
def cap_trajectory(ctx: DiagnosticContext, o: Mapping[str, Any]) -> Output:
    """The caps over training (rows: their last epoch's min / mean / max per layer)."""
    hist = [{"epoch": h["epoch"], "caps": h["caps"]} for h in ctx.history if h.get("caps")]
    if not hist:
        return [], {"skipped": "the model has no S-ReLU/D-ReLU caps"}
    traj = D.cap_trajectories(hist)
    rows = [ctx.row("cap_trajectory", k, t[k][-1], layer)
            for layer, t in traj.items() for k in ("min", "mean", "max")]  # fmt: skip
    return rows, traj


@diagnostic("input_gradient_norm", n=200, norm="l2")
def input_gradient_norm(ctx: DiagnosticContext, o: Mapping[str, Any]) -> Output:
    """Mean norm of the input gradient of the loss (what gradient penalties shrink)."""
    from robustact.defenses import input_gradient_norm as grad_norm

    xs, ys = _first(ctx, o)
    v = float(grad_norm(ctx.model, xs, ys, norm=o["norm"]).mean())
    return [ctx.row("input_gradient_norm", "mean", v, n=len(ys))], v


@diagnostic("pgd_steps", n=200, steps=[1, 2, 5, 10, 20, 50], step_size=None, eot=1)
def pgd_steps(ctx: DiagnosticContext, o: Mapping[str, Any]) -> Output:
    """Plain PGD accuracy against its number of steps, at each eps."""
    xs, ys = _first(ctx, o)
    rows: Rows = []
    curve: dict[str, float] = {}
    for e in ctx.eps:
        for k in o["steps"]:
            entry = _pgd(k, o["step_size"] or 2.5 * e / k, ctx.seed, eot=o["eot"])
            x_adv, _ = run_entry(ctx.model, xs, ys, entry, e, ctx.norm)
            with torch.no_grad():
                acc = float((ctx.model(x_adv).argmax(1) == ys).float().mean())
            curve[f"{k}@{e:g}"] = acc
            rows.append(ctx.row("pgd_steps", "accuracy", acc, str(k), e, len(ys)))
    return rows, curve


@diagnostic("logit_variability", n=100, runs=5)
def logit_variability(ctx: DiagnosticContext, o: Mapping[str, Any]) -> Output:
    """BReLU paper App. B: how much logits and softmax move over repeated forward passes of
    the same inputs (a stochastic model differs per pass; a deterministic one gives 0).

    Rows (item None): ``logit_std`` (std over the runs, mean over points and classes),
    ``true_prob_min`` / ``true_prob_max`` (the lowest / highest softmax of the true class
    over the runs, mean over points: App. B's "lowest and highest confidence"),
    ``prediction_changes`` (share of points whose predicted class differs between runs)
    and ``correct_every_run`` (share correct in every run).
    """
    xs, ys = _first(ctx, o)
    runs = int(o["runs"])
    if runs < 2:
        raise ValueError(f"logit_variability needs runs >= 2, got {runs}")
    gen = torch.random.fork_rng(devices=[xs.device] if xs.device.type == "cuda" else [])
    with gen, torch.no_grad():
        torch.manual_seed(ctx.seed)
        logits = torch.stack([ctx.model(xs).float() for _ in range(runs)])  # (R, N, K)
    prob = logits.softmax(-1).gather(2, ys.view(1, -1, 1).expand(runs, -1, 1)).squeeze(2)
    pred = logits.argmax(-1)  # (R, N)
    vals = {
        "logit_std": float(logits.std(0).mean()),
        "true_prob_min": float(prob.min(0).values.mean()),
        "true_prob_max": float(prob.max(0).values.mean()),
        "prediction_changes": float((pred != pred[0]).any(0).float().mean()),
        "correct_every_run": float((pred == ys).all(0).float().mean()),
    }
    rows = [ctx.row("logit_variability", k, v, n=len(ys)) for k, v in vals.items()]
    return rows, {**vals, "runs": runs}
