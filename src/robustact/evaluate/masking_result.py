"""Containers of the gradient-masking report (see :mod:`robustact.evaluate.masking`)."""

from __future__ import annotations

import html
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from robustact.evaluate._notebook import NotebookMixin, html_table
from robustact.evaluate.rows import VERDICTS, MetricRow, finite

__all__ = ["MaskingCheck", "MaskingReport", "Verdict"]

Verdict = Literal["no evidence", "suspect", "masked"]


@dataclass(frozen=True)
class MaskingCheck:
    """One check of the report.

    Attributes:
        name: check id (see the module table).
        value: measured value (None: not applicable to this model).
        threshold: flagged when ``value > threshold``.
        flagged: the check raised a flag.
        citation: where the check comes from.
        explanation: one line on what it means.
    """

    name: str
    value: float | None
    threshold: float
    flagged: bool
    citation: str
    explanation: str


@dataclass
class MaskingReport(NotebookMixin):
    """Verdict and the numbers behind it.

    Attributes:
        verdict: ``"no evidence"``, ``"suspect"`` or ``"masked"``.
        reason: one line saying which rule decided the verdict.
        checks: every check, in a fixed order.
        accuracies: attack label -> accuracy (fraction) on the given points.
        security_curve: ``[(eps, plain-PGD accuracy), ...]``.
        eps, norm, n, fast: the setting.
        notes: settings of the attacks used.
    """

    verdict: Verdict
    reason: str
    checks: list[MaskingCheck]
    accuracies: dict[str, float]
    security_curve: list[tuple[float, float]]
    eps: float
    norm: str
    n: int
    fast: bool
    notes: list[str] = field(default_factory=list)

    def check(self, name: str) -> MaskingCheck:
        """The check called ``name``."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check {name!r}; checks: {', '.join(c.name for c in self.checks)}")

    @property
    def flagged(self) -> list[str]:
        """Names of the flagged checks."""
        return [c.name for c in self.checks if c.flagged]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        d = asdict(self)
        d["security_curve"] = [list(p) for p in self.security_curve]
        return d

    def metrics(self) -> dict[str, float]:
        """Flat ``{name: float}``: each check value and flag, accuracies, the verdict as 0/1/2."""
        m: dict[str, float] = {
            "masking/verdict": float(("no evidence", "suspect", "masked").index(self.verdict))
        }
        for c in self.checks:
            if c.value is not None and math.isfinite(c.value):
                m[f"masking/{c.name}"] = float(c.value)
            m[f"masking/{c.name}/flagged"] = float(c.flagged)
        for k, v in self.accuracies.items():
            m[f"masking/acc/{k}"] = float(v)
        return m

    def rows(self) -> list[MetricRow]:
        """Typed rows (kind "masking"; see :mod:`robustact.evaluate.rows`): the verdict
        level, each check's value, threshold and flag, and each attack's accuracy."""

        def row(attack: str, metric: str, value: float, item: str | None = None) -> MetricRow:
            return MetricRow("masking", attack, metric, float(value), self.eps, self.norm,
                             kind="masking", item=item, n=self.n)  # fmt: skip

        out = [row("verdict", "level", VERDICTS.index(self.verdict))]
        for c in self.checks:
            if c.value is not None and finite(c.value):
                out.append(row("check", "value", c.value, c.name))
            out.append(row("check", "threshold", c.threshold, c.name))
            out.append(row("check", "flagged", float(c.flagged), c.name))
        out += [row(label, "accuracy", v) for label, v in self.accuracies.items() if finite(v)]
        return out

    def to_table(self) -> Any:
        """A ``rich.table.Table`` with one row per check."""
        from robustact.evaluate.render import masking_table

        return masking_table(self)

    def render(self, width: int = 160) -> str:
        """The table as plain text."""
        from robustact.evaluate.render import to_text

        return to_text(self.to_table(), width=width)

    def __repr__(self) -> str:
        flagged = f" (flagged: {', '.join(self.flagged)})" if self.flagged else ""
        return (
            f"<MaskingReport {self.norm} eps={self.eps:g} n={self.n}: "
            f"{self.verdict.upper()}{flagged}>"
        )

    def _repr_html_(self) -> str:
        """What a notebook shows: the verdict, its reason and one row per check."""
        rows = [[c.name, "–" if c.value is None else f"{c.value:.4g}", f"{c.threshold:.4g}",
                 "FLAG" if c.flagged else "", c.explanation] for c in self.checks]  # fmt: skip
        cap = f"masking report, {self.norm} eps={self.eps:g}, n={self.n}"
        table = html_table(["check", "value", "threshold", "flagged", "meaning"], rows, cap)
        return f"<div><p><b>{self.verdict.upper()}</b>: {html.escape(self.reason)}</p>{table}</div>"

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per check: setting, verdict, check name, value, threshold, flag."""
        common = {"eps": self.eps, "norm": self.norm, "n": self.n, "verdict": self.verdict}
        return [{**common, "check": c.name, "value": c.value, "threshold": c.threshold,
                 "flagged": c.flagged} for c in self.checks]  # fmt: skip
