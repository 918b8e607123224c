"""Typed result rows: one measured number with everything that says what it measures.

Every number an evaluation produces — a protocol's accuracies, a masking check, a
diagnostic, a training summary — is a :class:`MetricRow`. The results store writes them
(one SQL row each), the report, the CLI JSON and the CSV read them, and nothing encodes
structure in a metric name to parse it back later: the structure is in the fields.

=========== =========== ====================================== ===================================
kind        protocol    attack                                 metric (item)
=========== =========== ====================================== ===================================
result      <protocol>  "clean" | "worst" | <attack label>     accuracy, accuracy_ci_low/high,
                                                               success_rate, mean_linf, ...;
                                                               class_accuracy (item: the class)
masking     "masking"   <attack label>                         accuracy
masking     "masking"   "check"                                value | flagged | threshold
                                                               (item: the check name)
masking     "masking"   "verdict"                              level (0 no evidence, 1 suspect,
                                                               2 masked)
diagnostic  diagnostics <diagnostic name>                      its metrics (item: layer, steps)
training    "training"  "final"                                loss, val_loss, val_acc, epochs,
                                                               seconds
=========== =========== ====================================== ===================================

``eps``/``norm`` are the threat model (None for clean and training numbers; an attack with
its own threat model, e.g. CW-L2 in an L-inf protocol, carries its own), ``n`` the number
of points behind the value. Dataset, method and seed belong to the cell that owns the rows
(the store's ``cfg.*`` and ``seed`` columns).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeGuard

__all__ = ["KINDS", "VERDICTS", "Kind", "MetricRow"]

Kind = Literal["result", "masking", "diagnostic", "training"]
#: The row kinds (see the module table).
KINDS: tuple[str, ...] = ("result", "masking", "diagnostic", "training")
#: Masking verdicts in order of severity (the ``level`` of a verdict row is the index).
VERDICTS: tuple[str, ...] = ("no evidence", "suspect", "masked")


@dataclass(frozen=True)
class MetricRow:
    """One measured number (see the module table for the values of each field).

    Attributes:
        protocol: evaluation protocol ("seed", "adaptive", ...), or "masking",
            "diagnostics", "training" for the other kinds.
        attack: "clean", "worst" (worst case over the protocol), an attack label, a
            diagnostic name, "check"/"verdict" (masking) or "final" (training).
        metric: "accuracy", "success_rate", "mean_linf", "value", ...
        value: a finite number (accuracies are fractions in [0, 1]).
        eps: perturbation budget, None for clean and training metrics.
        norm: threat model ("Linf", "L2"), None with ``eps``.
        kind: "result", "masking", "diagnostic" or "training".
        item: what inside the attack/diagnostic is measured (a class, a layer, a check
            name, a step count), None when the row is about the whole.
        n: number of points behind the value (None when not a per-point statistic).
    """

    protocol: str
    attack: str
    metric: str
    value: float
    eps: float | None = None
    norm: str | None = None
    kind: str = "result"
    item: str | None = None
    n: int | None = None

    def key(self) -> tuple[str, str, str, str | None, str, float | None, str | None]:
        """The identity of the row inside its cell (everything but the value and n)."""
        return (self.kind, self.protocol, self.attack, self.item, self.metric, self.eps, self.norm)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (JSON-ready)."""
        return asdict(self)


def finite(v: Any) -> TypeGuard[float]:
    """True for a real number that is neither NaN nor infinite."""
    return v is not None and not isinstance(v, bool) and math.isfinite(float(v))
