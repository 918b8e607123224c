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
  example differs from the label (one forward pass, also for stochastic models).
* *robust accuracy* (worst case) counts a point only if it is correct when clean and no
  attack of the protocol fooled it.
* the *worst-case adversarial example* of a point is the first one that fooled it, or,
  if none did, the last one crafted for it (the clean input if it was never attacked).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from robustact.stats import MeanSD, mean_sd, wilson_interval

__all__ = [
    "AttackMetrics",
    "AttackOutcome",
    "CleanOutcome",
    "EvalResult",
    "StochasticSummary",
    "cat_outcomes",
    "summarise",
    "summarise_repeats",
]


@dataclass
class CleanOutcome:
    """Per-point clean predictions.

    Attributes:
        y: labels (N,) int64.
        pred: predicted labels (N,) int64.
        max_prob: max softmax probability (N,).
        true_prob: softmax probability of the true class (N,).
    """

    y: Tensor
    pred: Tensor
    max_prob: Tensor
    true_prob: Tensor


@dataclass
class AttackOutcome:
    """Per-point result of one attack of a protocol.

    Attributes:
        label: the attack's label in the protocol.
        attacked: bool (N,), the attack ran on the point.
        pred: predictions (N,) at the adversarial example (clean prediction if not attacked).
        max_prob: max softmax probability (N,) at the adversarial example.
        true_prob: true-class probability (N,) at the adversarial example.
        linf: L-inf norm (N,) of the perturbation (0 where not attacked).
        l2: L2 norm (N,) of the perturbation (0 where not attacked).
        seconds: wall-clock seconds the attack took (summed over batches).
        describe: the attack's hyper-parameters and protocol options (JSON-serialisable).
        counts: the attack is part of the worst case. False for an attack reported as its
            own column under a different threat model (e.g. the seeds' CW-L2 in an L-inf
            protocol): it then always runs on all clean-correct points.
    """

    label: str
    attacked: Tensor
    pred: Tensor
    max_prob: Tensor
    true_prob: Tensor
    linf: Tensor
    l2: Tensor
    seconds: float
    describe: dict[str, Any] = field(default_factory=dict)
    counts: bool = True


def _cat(ts: list[Tensor]) -> Tensor:
    return torch.cat([t.detach().cpu() for t in ts])


def cat_outcomes(
    parts: list[tuple[CleanOutcome, list[AttackOutcome]]],
) -> tuple[CleanOutcome, list[AttackOutcome]]:
    """Concatenate per-batch outcomes (same protocol on every batch) into one record."""
    if not parts:
        raise ValueError("no batches to concatenate; the data was empty")
    cleans = [c for c, _ in parts]
    clean = CleanOutcome(
        y=_cat([c.y for c in cleans]),
        pred=_cat([c.pred for c in cleans]),
        max_prob=_cat([c.max_prob for c in cleans]),
        true_prob=_cat([c.true_prob for c in cleans]),
    )
    attacks: list[AttackOutcome] = []
    for k, first in enumerate(parts[0][1]):
        rows = [p[1][k] for p in parts]
        attacks.append(
            AttackOutcome(
                label=first.label,
                attacked=_cat([r.attacked for r in rows]),
                pred=_cat([r.pred for r in rows]),
                max_prob=_cat([r.max_prob for r in rows]),
                true_prob=_cat([r.true_prob for r in rows]),
                linf=_cat([r.linf for r in rows]),
                l2=_cat([r.l2 for r in rows]),
                seconds=float(sum(r.seconds for r in rows)),
                describe=first.describe,
                counts=first.counts,
            )
        )
    return clean, attacks


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


@dataclass
class AttackMetrics:
    """Metrics of one attack of a protocol.

    Attributes:
        label: protocol label of the attack.
        accuracy: accuracy under this attack alone (individual mode); None in cascade
            mode, where the attack only saw the points earlier attacks had not broken.
        accuracy_ci: 95 % Wilson interval of ``accuracy`` (None with it).
        cumulative_accuracy: accuracy against this attack and all before it.
        success_rate: fooled / attacked among the points it ran on.
        n_attacked, n_fooled: counts.
        mean_max_prob, mean_true_prob: confidence at its adversarial examples, over the
            attacked points (None if it attacked none).
        mean_linf, mean_l2: mean perturbation norms of its successful examples (None if none).
        seconds: wall-clock time of the attack.
        describe: hyper-parameters and protocol options.
        in_worst_case: counted in the worst case (False: its own threat model, reported only).
    """

    label: str
    accuracy: float | None
    accuracy_ci: tuple[float, float] | None
    cumulative_accuracy: float
    success_rate: float | None
    n_attacked: int
    n_fooled: int
    mean_max_prob: float | None
    mean_true_prob: float | None
    mean_linf: float | None
    mean_l2: float | None
    seconds: float
    describe: dict[str, Any] = field(default_factory=dict)
    in_worst_case: bool = True


@dataclass
class StochasticSummary:
    """Repeated evaluation of a stochastic model (R full protocol runs).

    Attributes:
        repeats: R.
        mean_sd: metric name -> mean ± sd over the R runs (clean_acc, robust_acc, acc/<label>).
        worst_of_r: clean_acc / robust_acc counting a point only if it is correct in all R runs.
        majority_vote: clean_acc / robust_acc of the majority vote of the R predictions
            (clean input; each run's worst-case adversarial example); ties count as wrong.
    """

    repeats: int
    mean_sd: dict[str, MeanSD]
    worst_of_r: dict[str, float]
    majority_vote: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "repeats": self.repeats,
            "mean_sd": {
                k: {"mean": v.mean, "sd": _json_num(v.sd), "n": v.n}
                for k, v in self.mean_sd.items()
            },
            "worst_of_r": dict(self.worst_of_r),
            "majority_vote": dict(self.majority_vote),
        }


def _json_num(v: float | None) -> float | None:
    """NaN and inf become None so the dict is strict JSON."""
    if v is None or not math.isfinite(v):
        return None
    return float(v)


@dataclass
class EvalResult:
    """Everything one evaluation measured. ``to_dict()`` is JSON-serialisable,
    ``metrics()`` is a flat ``{name: float}`` (one row per metric in a results store),
    ``to_table()`` a rich table.

    Attributes:
        protocol: protocol name; ``fast`` marks a cut-down protocol.
        eps, norm: threat model.
        cascade: attacks ran AutoAttack style, each only on points still robust.
        n: number of points; num_classes: model output width.
        clean_accuracy, clean_ci: clean accuracy and its 95 % Wilson interval.
        robust_accuracy, robust_ci: worst case over the protocol and its interval.
        robustness_gap: clean − robust accuracy.
        success_rate: fraction of clean-correct points broken by some attack (None if none
            was correct).
        mean_max_prob, mean_true_prob: confidence at the worst-case adversarial examples of
            the clean-correct points.
        mean_linf, mean_l2: mean perturbation norms of the worst-case successful examples.
        per_class_clean, per_class_robust: class -> accuracy.
        attacks: per-attack metrics in protocol order.
        stochastic: repeated-run summary for stochastic models (None otherwise).
        seconds: total wall-clock seconds; seed: the seed used (None if none).
        notes: free-form lines printed under the table (e.g. protocol options).
    """

    protocol: str
    fast: bool
    eps: float
    norm: str
    cascade: bool
    n: int
    num_classes: int
    clean_accuracy: float
    clean_ci: tuple[float, float]
    robust_accuracy: float
    robust_ci: tuple[float, float]
    robustness_gap: float
    success_rate: float | None
    mean_max_prob: float | None
    mean_true_prob: float | None
    mean_linf: float | None
    mean_l2: float | None
    per_class_clean: dict[int, float]
    per_class_robust: dict[int, float]
    attacks: list[AttackMetrics]
    stochastic: StochasticSummary | None = None
    seconds: float = 0.0
    seed: int | None = None
    notes: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON dict (NaN/inf become None; class keys become strings)."""
        d = asdict(self)
        d["per_class_clean"] = {str(k): v for k, v in self.per_class_clean.items()}
        d["per_class_robust"] = {str(k): v for k, v in self.per_class_robust.items()}
        d["stochastic"] = self.stochastic.to_dict() if self.stochastic else None
        return _clean_json(d)

    def metrics(self) -> dict[str, float]:
        """Flat ``{metric name: value}``; absent values (None/NaN) are left out."""
        m: dict[str, float | None] = {
            "clean_acc": self.clean_accuracy,
            "clean_acc_ci_low": self.clean_ci[0],
            "clean_acc_ci_high": self.clean_ci[1],
            "robust_acc": self.robust_accuracy,
            "robust_acc_ci_low": self.robust_ci[0],
            "robust_acc_ci_high": self.robust_ci[1],
            "robustness_gap": self.robustness_gap,
            "success_rate": self.success_rate,
            "adv_mean_max_prob": self.mean_max_prob,
            "adv_mean_true_prob": self.mean_true_prob,
            "adv_mean_linf": self.mean_linf,
            "adv_mean_l2": self.mean_l2,
            "seconds": self.seconds,
        }
        for c, v in self.per_class_clean.items():
            m[f"clean_acc/class_{c}"] = v
        for c, v in self.per_class_robust.items():
            m[f"robust_acc/class_{c}"] = v
        for a in self.attacks:
            p = f"attack/{a.label}/"
            m[p + "acc"] = a.accuracy
            if a.accuracy_ci is not None:
                m[p + "acc_ci_low"], m[p + "acc_ci_high"] = a.accuracy_ci
            m[p + "cumulative_acc"] = a.cumulative_accuracy
            m[p + "success_rate"] = a.success_rate
            m[p + "mean_max_prob"] = a.mean_max_prob
            m[p + "mean_true_prob"] = a.mean_true_prob
            m[p + "mean_linf"] = a.mean_linf
            m[p + "mean_l2"] = a.mean_l2
            m[p + "seconds"] = a.seconds
        if self.stochastic is not None:
            s = self.stochastic
            m["repeats"] = float(s.repeats)
            for k, msd in s.mean_sd.items():
                m[f"{k}_mean"] = msd.mean
                m[f"{k}_sd"] = msd.sd
            for k, v in s.worst_of_r.items():
                m[f"{k}_worst_of_r"] = v
            for k, v in s.majority_vote.items():
                m[f"{k}_majority"] = v
        return {k: float(v) for k, v in m.items() if v is not None and math.isfinite(v)}

    # ------------------------------------------------------------------ rendering
    def title(self) -> str:
        fast = " (fast: reduced steps/queries)" if self.fast else ""
        mode = "cascade" if self.cascade else "individual"
        return f"protocol '{self.protocol}'{fast}: {self.norm} eps={self.eps:g}, n={self.n}, {mode}"

    def to_table(self) -> Any:
        """A ``rich.table.Table`` with one row per attack plus clean and worst-case rows."""
        from robustact.evaluate.render import eval_table

        return eval_table(self)

    def render(self, width: int = 140) -> str:
        """The table as plain text."""
        from robustact.evaluate.render import to_text

        return to_text(self.to_table(), width=width)


def _clean_json(obj: Any) -> Any:
    if isinstance(obj, float):
        return _json_num(obj)
    if isinstance(obj, dict):
        return {str(k): _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean_json(v) for v in obj]
    return obj


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
        protocol=protocol,
        fast=fast,
        eps=float(eps),
        norm=norm,
        cascade=cascade,
        n=n,
        num_classes=int(num_classes),
        clean_accuracy=clean_acc,
        clean_ci=_ci(clean_ok),
        robust_accuracy=robust_acc,
        robust_ci=_ci(robust),
        robustness_gap=clean_acc - robust_acc,
        success_rate=(int(broken.sum()) / n_ok) if n_ok else None,
        mean_max_prob=_mean_over(w_max, clean_ok),
        mean_true_prob=_mean_over(w_true, clean_ok),
        mean_linf=_mean_over(w_linf, broken),
        mean_l2=_mean_over(w_l2, broken),
        per_class_clean=_per_class(clean_ok, y, num_classes),
        per_class_robust=_per_class(robust, y, num_classes),
        attacks=rows,
        seconds=float(seconds),
        seed=seed,
        notes=list(notes or []),
    )


def worst_case_pred(clean: CleanOutcome, attacks: list[AttackOutcome]) -> Tensor:
    """Prediction (N,) at each point's worst-case adversarial example (see module doc)."""
    y = clean.y
    clean_ok = clean.pred == y
    pred = clean.pred.clone()
    settled = ~clean_ok
    for a in attacks:
        if not a.counts:
            continue
        att = a.attacked & clean_ok
        pred = torch.where(att & ~settled, a.pred, pred)
        settled |= att & (a.pred != y)
    return pred


def _majority_correct(preds: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """bool (N,): votes for y strictly exceed votes for every other class. preds (R, N)."""
    votes = torch.nn.functional.one_hot(preds, num_classes).sum(dim=0)  # (N, K)
    for_y = votes.gather(1, y[:, None]).squeeze(1)
    other = votes.scatter(1, y[:, None], -1).amax(dim=1)
    return for_y > other


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
            series.setdefault(f"acc/{a.label}", []).append(v)
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
            "clean_acc": _frac(_majority_correct(clean_preds, y, num_classes)),
            "robust_acc": _frac(_majority_correct(worst_preds, y, num_classes)),
        },
    )
