"""Result containers: :class:`EvalResult` (JSON, flat metrics, rich table) and parts."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from robustact.evaluate._notebook import NotebookMixin, display_protocol, html_table, pct
from robustact.evaluate.rows import MetricRow, finite
from robustact.stats import MeanSD

__all__ = ["AttackMetrics", "EvalResult", "StochasticSummary"]


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

    def __repr__(self) -> str:
        acc = self.accuracy if self.accuracy is not None else self.cumulative_accuracy
        kind = "accuracy" if self.accuracy is not None else "cumulative accuracy"
        return (
            f"<AttackMetrics {self.label}: {kind} {pct(acc)} %, fooled "
            f"{self.n_fooled}/{self.n_attacked}, {self.seconds:.1f} s>"
        )

    def values(self, sd: StochasticSummary | None = None) -> dict[str, float | None]:
        """Metric name -> value (the repeated-run statistics of ``sd`` included)."""
        ci = self.accuracy_ci or (None, None)
        return {
            "accuracy": self.accuracy, "accuracy_ci_low": ci[0], "accuracy_ci_high": ci[1],
            "cumulative_accuracy": self.cumulative_accuracy, "success_rate": self.success_rate,
            "mean_max_prob": self.mean_max_prob, "mean_true_prob": self.mean_true_prob,
            "mean_linf": self.mean_linf, "mean_l2": self.mean_l2, "seconds": self.seconds,
            **_repeat_stats(sd, f"attack/{self.label}/acc", cumulative=self.accuracy is None),
        }  # fmt: skip

    def threat(self) -> tuple[float | None, str | None]:
        """The attack's own (eps, norm) from its arguments; eps None when unbounded."""
        args = self.describe.get("attack_args") or {}
        e = args.get("eps", self.describe.get("eps"))
        eps = float(e) if finite(e) and float(e) > 0 else None
        norm = args.get("norm", self.describe.get("norm"))
        return eps, None if norm is None else str(norm)


@dataclass
class StochasticSummary:
    """Repeated evaluation of a stochastic model (R full protocol runs).

    Attributes:
        repeats: R.
        mean_sd: metric name -> mean ± sd over the R runs (``clean_acc``, ``robust_acc``,
            ``attack/<label>/acc``).
        worst_of_r: clean_acc / robust_acc counting a point only if it is correct in all R runs.
        majority_vote: clean_acc / robust_acc of the majority vote of the R predictions
            (clean input; each run's worst-case adversarial example); ties count as wrong.
        runs: metric name (as in ``mean_sd``) -> its value in each of the R runs.
    """

    repeats: int
    mean_sd: dict[str, MeanSD]
    worst_of_r: dict[str, float]
    majority_vote: dict[str, float]
    runs: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "repeats": self.repeats,
            "mean_sd": {
                k: {"mean": v.mean, "sd": _json_num(v.sd), "n": v.n}
                for k, v in self.mean_sd.items()
            },
            "worst_of_r": dict(self.worst_of_r),
            "majority_vote": dict(self.majority_vote),
            "runs": {k: list(v) for k, v in self.runs.items()},
        }


def _json_num(v: float | None) -> float | None:
    """NaN and inf become None so the dict is strict JSON."""
    if v is None or not math.isfinite(v):
        return None
    return float(v)


@dataclass
class EvalResult(NotebookMixin):
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

    def rows(self, *, with_clean: bool = True) -> list[MetricRow]:
        """Typed rows of the evaluation (kind "result"; see :mod:`robustact.evaluate.rows`).

        Absent values (None, NaN) give no row. For a stochastic model (R repeated runs)
        the ``accuracy`` rows hold the mean over the R runs (``accuracy_sd`` its sd), and
        each run's accuracy is kept as an ``accuracy_run`` row (item: the run, "1".."R").

        Args:
            with_clean: include the clean rows (eps-independent: an evaluation at several
                budgets stores them once).
        """
        sd = self.stochastic
        clean: dict[str, float | None] = {
            "accuracy": self.clean_accuracy, "accuracy_ci_low": self.clean_ci[0],
            "accuracy_ci_high": self.clean_ci[1], **_repeat_stats(sd, "clean_acc"),
        }  # fmt: skip
        worst: dict[str, float | None] = {
            "accuracy": self.robust_accuracy, "accuracy_ci_low": self.robust_ci[0],
            "accuracy_ci_high": self.robust_ci[1], "robustness_gap": self.robustness_gap,
            "success_rate": self.success_rate, "mean_max_prob": self.mean_max_prob,
            "mean_true_prob": self.mean_true_prob, "mean_linf": self.mean_linf,
            "mean_l2": self.mean_l2, "seconds": self.seconds,
            **({"repeats": float(sd.repeats)} if sd else {}), **_repeat_stats(sd, "robust_acc"),
        }  # fmt: skip
        threat = (self.eps, self.norm)
        out: list[MetricRow] = []
        if with_clean:
            out += self._rows("clean", clean, (None, None), self.per_class_clean)
        out += self._rows("worst", worst, threat, self.per_class_robust)
        for a in self.attacks:
            out += self._rows(a.label, a.values(sd), threat if a.in_worst_case else a.threat())
        return out + self._run_rows(with_clean)

    def _run_rows(self, with_clean: bool) -> list[MetricRow]:
        """One ``accuracy_run`` row per repeated run (stochastic models; else none)."""
        if self.stochastic is None:
            return []
        Threat = tuple[float | None, str | None]
        threats: dict[str, tuple[str, Threat]] = {"robust_acc": ("worst", (self.eps, self.norm))}
        if with_clean:
            threats["clean_acc"] = ("clean", (None, None))
        for a in self.attacks:
            if a.accuracy is None:  # cascade: the runs' series is its cumulative accuracy
                continue
            own = (self.eps, self.norm) if a.in_worst_case else a.threat()
            threats[f"attack/{a.label}/acc"] = (a.label, own)
        out = []
        for key, values in self.stochastic.runs.items():
            if key not in threats:
                continue
            attack, (eps, norm) = threats[key]
            out += [MetricRow(self.protocol, attack, "accuracy_run", float(v), eps, norm,
                              item=str(i), n=self.n)
                    for i, v in enumerate(values, start=1) if finite(v)]  # fmt: skip
        return out

    def _rows(
        self, attack: str, values: dict[str, float | None], threat: tuple[float | None, str | None],
        per_class: dict[int, float] | None = None,
    ) -> list[MetricRow]:  # fmt: skip
        eps, norm = threat
        out = [MetricRow(self.protocol, attack, m, float(v), eps, norm, n=self.n)
               for m, v in values.items() if finite(v)]  # fmt: skip
        out += [MetricRow(self.protocol, attack, "class_accuracy", float(v), eps, norm,
                          item=str(c), n=self.n)
                for c, v in (per_class or {}).items() if finite(v)]  # fmt: skip
        return out

    # ------------------------------------------------------------------ rendering
    def title(self) -> str:
        fast = " (quick: reduced steps/queries)" if self.fast else ""
        mode = "cascade" if self.cascade else "individual"
        name = display_protocol(self.protocol)
        return f"protocol '{name}'{fast}: {self.norm} eps={self.eps:g}, n={self.n}, {mode}"

    def to_table(self) -> Any:
        """A ``rich.table.Table`` with one row per attack plus clean and worst-case rows."""
        from robustact.evaluate.render import eval_table

        return eval_table(self)

    def render(self, width: int = 140) -> str:
        """The table as plain text."""
        from robustact.evaluate.render import to_text

        return to_text(self.to_table(), width=width)

    # ------------------------------------------------------------------ notebooks
    def __repr__(self) -> str:
        lo, hi = self.robust_ci
        return (
            f"<EvalResult {display_protocol(self.protocol)}{' (quick)' if self.fast else ''} "
            f"{self.norm} eps={self.eps:g} n={self.n}: clean {pct(self.clean_accuracy)} %, "
            f"robust {pct(self.robust_accuracy)} % [{pct(lo)}, {pct(hi)}], drop "
            f"{pct(self.robustness_gap)} pp, {len(self.attacks)} attacks, {self.seconds:.1f} s>"
        )

    def _repr_html_(self) -> str:
        """What a notebook shows: the summary and one row per attack (percentages)."""
        lo, hi = self.robust_ci
        clo, chi = self.clean_ci
        head = html_table(["", "%", "95 % interval"], [
            ["clean accuracy", pct(self.clean_accuracy), f"[{pct(clo)}, {pct(chi)}]"],
            ["robust accuracy", pct(self.robust_accuracy), f"[{pct(lo)}, {pct(hi)}]"],
            ["drop (clean - robust, pp)", pct(self.robustness_gap), ""],
        ], caption=self.title())  # fmt: skip
        rows = [
            [a.label, pct(a.accuracy), pct(a.cumulative_accuracy), pct(a.success_rate),
             f"{a.n_fooled}/{a.n_attacked}", f"{a.seconds:.1f}"]
            for a in self.attacks
        ]  # fmt: skip
        cols = ["attack", "accuracy %", "cumulative %", "success %", "fooled", "s"]
        return f"<div>{head}{html_table(cols, rows)}</div>"

    def to_records(self) -> list[dict[str, Any]]:
        """The typed rows as dicts (long format: one measurement per row; fractions)."""
        return [r.to_dict() for r in self.rows()]


def _repeat_stats(
    sd: StochasticSummary | None, key: str, *, cumulative: bool = False
) -> dict[str, float | None]:
    """Metric suffix -> value of the repeated-run statistics of one accuracy (``key`` as
    :func:`robustact.evaluate.metrics.summarise_repeats` names it); empty without repeats.

    ``accuracy`` is the mean over the runs (the headline of a stochastic model, not run 1)
    where the accuracy itself is measured; with ``cumulative`` (an attack in cascade mode,
    which has no accuracy of its own) only ``accuracy_mean``/``accuracy_sd`` are given."""
    if sd is None:
        return {}
    out: dict[str, float | None] = {}
    if key in sd.mean_sd:
        out.update(accuracy_mean=sd.mean_sd[key].mean, accuracy_sd=sd.mean_sd[key].sd)
        if not cumulative:
            out["accuracy"] = sd.mean_sd[key].mean
    if key in sd.worst_of_r:
        out["accuracy_worst_of_r"] = sd.worst_of_r[key]
    if key in sd.majority_vote:
        out["accuracy_majority"] = sd.majority_vote[key]
    return out


def _clean_json(obj: Any) -> Any:
    if isinstance(obj, float):
        return _json_num(obj)
    if isinstance(obj, dict):
        return {str(k): _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean_json(v) for v in obj]
    return obj
