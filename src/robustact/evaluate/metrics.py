"""Evaluation metrics computed from per-point outcomes.

The runner (:mod:`robustact.evaluate.runner`) records, for every input point, what the
model predicted on the clean input and on each attack's adversarial example; everything
here is a pure function of those records, so each metric can be checked by hand on toy
cases and batches can simply be concatenated.

Conventions (all fractions in [0, 1]):

* a point is *attacked* by an attack when the attack ran on it: the points correct when
  clean (individual mode) or the points still robust after the previous attacks (cascade
  mode, AutoAttack style). Points wrong when clean are never attacked and never robust.
* an attack *fools* an attacked point when the model's prediction at its adversarial
  example differs from the label (one forward pass, on a random model too: its runs are
  repeated and averaged instead).
* *robust accuracy* (worst case) counts a point only if it is correct when clean and no
  attack of the protocol fooled it.
* the *worst-case adversarial example* of a point is the first one that fooled it, or,
  if none did, the last one crafted for it (the clean input if it was never attacked).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from robustact.evaluate.outcomes import (
    AttackOutcome,
    CleanOutcome,
    cat_outcomes,
    majority_correct,
    worst_case_pred,
)
from robustact.evaluate.results import AttackMetrics, EvalResult, StochasticSummary
from robustact.stats import mean_sd, wilson_interval

__all__ = [
    "AttackMetrics",
    "AttackOutcome",
    "CleanOutcome",
    "EvalResult",
    "StochasticSummary",
    "cat_outcomes",
    "majority_correct",
    "summarise",
    "summarise_repeats",
    "worst_case_pred",
]


def _frac(mask: Tensor) -> float:
    return float(mask.float().mean()) if mask.numel() else math.nan


def _ci(mask: Tensor) -> tuple[float, float]:
    n = int(mask.numel())
    if n == 0:
        return (math.nan, math.nan)
    return wilson_interval(int(mask.sum()), n)


def _mean_over(values: Tensor, mask: Tensor) -> float | None:
    """Mean of ``values`` where ``mask``; None when the mask is empty."""
    if not bool(mask.any()):
        return None
    return float(values[mask].double().mean())


def _per_class(correct: Tensor, y: Tensor, num_classes: int) -> dict[int, float]:
    out: dict[int, float] = {}
    for c in range(num_classes):
        sel = y == c
        if bool(sel.any()):
            out[c] = float(correct[sel].float().mean())
    return out


def _row(
    a: AttackOutcome,
    att: Tensor,
    fooled: Tensor,
    individual: Tensor | None,
    ci: tuple[float, float] | None,
    cumulative: float,
) -> AttackMetrics:
    n_att = int(att.sum())
    return AttackMetrics(
        label=a.label,
        accuracy=None if individual is None else _frac(individual),
        accuracy_ci=ci,
        cumulative_accuracy=cumulative,
        success_rate=(int(fooled.sum()) / n_att) if n_att else None,
        n_attacked=n_att,
        n_fooled=int(fooled.sum()),
        mean_max_prob=_mean_over(a.max_prob, att),
        mean_true_prob=_mean_over(a.true_prob, att),
        mean_linf=_mean_over(a.linf, fooled),
        mean_l2=_mean_over(a.l2, fooled),
        seconds=float(a.seconds),
        describe=dict(a.describe),
        in_worst_case=a.counts,
    )


def summarise(
    clean: CleanOutcome,
    attacks: list[AttackOutcome],
    *,
    protocol: str,
    eps: float,
    norm: str,
    num_classes: int,
    cascade: bool,
    fast: bool = False,
    seconds: float = 0.0,
    seed: int | None = None,
    notes: list[str] | None = None,
) -> EvalResult:
    """Compute every metric of an :class:`EvalResult` from per-point outcomes.

    Args:
        clean: clean predictions of the N points.
        attacks: one :class:`AttackOutcome` per protocol attack, in order.
        protocol, eps, norm, cascade, fast, seconds, seed, notes: recorded as given.
        num_classes: model output width (for per-class accuracy).
    """
    y = clean.y
    n = int(y.numel())
    if n == 0:
        raise ValueError("cannot summarise an evaluation of 0 points; pass a non-empty set")
    clean_ok = clean.pred == y
    robust = clean_ok.clone()
    # worst-case example per point: first fooling one, else the last crafted one
    w_pred = clean.pred.clone()
    w_max, w_true = clean.max_prob.clone(), clean.true_prob.clone()
    w_linf, w_l2 = torch.zeros(n), torch.zeros(n)
    settled = ~clean_ok  # points whose worst-case example is fixed
    rows: list[AttackMetrics] = []
    for a in attacks:
        if a.attacked.shape != y.shape:
            raise ValueError(
                f"attack {a.label!r}: outcome for {a.attacked.numel()} points, not {n}"
            )
        att = a.attacked & clean_ok
        fooled = att & (a.pred != y)
        if not a.counts:
            own = clean_ok & ~fooled
            rows.append(_row(a, att, fooled, own, _ci(own), _frac(robust)))
            continue
        robust &= ~fooled
        upd = att & ~settled
        w_pred = torch.where(upd, a.pred, w_pred)
        w_max = torch.where(upd, a.max_prob, w_max)
        w_true = torch.where(upd, a.true_prob, w_true)
        w_linf = torch.where(upd, a.linf, w_linf)
        w_l2 = torch.where(upd, a.l2, w_l2)
        settled |= fooled
        individual = None if cascade else clean_ok & ~fooled
        ci = None if individual is None else _ci(individual)
        rows.append(_row(a, att, fooled, individual, ci, _frac(robust)))
    n_ok = int(clean_ok.sum())
    broken = clean_ok & ~robust
    clean_acc, robust_acc = _frac(clean_ok), _frac(robust)
    return EvalResult(
        protocol=protocol, fast=fast, eps=float(eps), norm=norm, cascade=cascade, n=n,
        num_classes=int(num_classes), clean_accuracy=clean_acc, clean_ci=_ci(clean_ok),
        robust_accuracy=robust_acc, robust_ci=_ci(robust), robustness_gap=clean_acc - robust_acc,
        success_rate=(int(broken.sum()) / n_ok) if n_ok else None,
        mean_max_prob=_mean_over(w_max, clean_ok), mean_true_prob=_mean_over(w_true, clean_ok),
        mean_linf=_mean_over(w_linf, broken), mean_l2=_mean_over(w_l2, broken),
        per_class_clean=_per_class(clean_ok, y, num_classes),
        per_class_robust=_per_class(robust, y, num_classes),
        attacks=rows, seconds=float(seconds), seed=seed, notes=list(notes or []),
    )  # fmt: skip


def summarise_repeats(
    runs: list[tuple[CleanOutcome, list[AttackOutcome]]],
    results: list[EvalResult],
    num_classes: int,
) -> StochasticSummary:
    """Mean ± sd, worst-of-R and majority vote over R repeated runs on the same points."""
    if len(runs) != len(results) or not runs:
        raise ValueError("need one result per run and at least one run")
    y = runs[0][0].y
    series: dict[str, list[float]] = {"clean_acc": [], "robust_acc": []}
    for r in results:
        series["clean_acc"].append(r.clean_accuracy)
        series["robust_acc"].append(r.robust_accuracy)
        for a in r.attacks:
            v = a.accuracy if a.accuracy is not None else a.cumulative_accuracy
            series.setdefault(f"attack/{a.label}/acc", []).append(v)
    clean_preds = torch.stack([c.pred for c, _ in runs])
    worst_preds = torch.stack([worst_case_pred(c, a) for c, a in runs])
    clean_all = (clean_preds == y).all(dim=0)
    # a point is robust in a run iff correct clean and at its worst-case example
    robust_all = ((clean_preds == y) & (worst_preds == y)).all(dim=0)
    return StochasticSummary(
        repeats=len(runs),
        mean_sd={k: mean_sd(v) for k, v in series.items()},
        worst_of_r={"clean_acc": _frac(clean_all), "robust_acc": _frac(robust_all)},
        majority_vote={
            "clean_acc": _frac(majority_correct(clean_preds, y, num_classes)),
            "robust_acc": _frac(majority_correct(worst_preds, y, num_classes)),
        },
        runs=series,
    )
