"""How numbers are shown to people: percentages, one decimal, with n and the 95 % interval.

Stored rows keep fractions (an accuracy of 0.923); everything a person reads (terminal,
HTML, Markdown, LaTeX) formats them here, so every format shows the same "92.3". The
interval of an accuracy measured on n points is the 95 % **Wilson score interval**
(:func:`robustact.stats.wilson_interval`, i.e. ``scipy.stats.binomtest(k, n)
.proportion_ci(method="wilson")``), with k = round(accuracy * n) correct points.

Differences of two accuracies (the gap: paper protocol minus adaptive; a drop: clean minus
robust) are percentage points, signed: ``pp(0.12) == "+12.0"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from robustact.stats import wilson_interval

__all__ = [
    "CI_LEVEL",
    "CI_METHOD",
    "CI_NOTE",
    "MISSING",
    "PROPORTION_METRICS",
    "ci_text",
    "describe",
    "half_width",
    "is_proportion",
    "pct",
    "pct_ci",
    "pp",
    "precision_note",
    "protocol_title",
    "wilson",
]

#: What a table shows where nothing was measured.
MISSING = "–"
#: Confidence level of every interval shown.
CI_LEVEL = 0.95
#: The interval's name, for legends.
CI_METHOD = "Wilson score"
#: One sentence for captions and footnotes.
CI_NOTE = (
    "brackets: 95 % Wilson score interval over the n test points "
    "(scipy.stats.binomtest, method='wilson')"
)
#: Metrics that are fractions of points (shown as percentages).
PROPORTION_METRICS = frozenset(
    {"accuracy", "success_rate", "robust_accuracy", "clean_accuracy", "found_fraction", "val_acc"}
)


def _finite(value: float | None) -> bool:
    return value is not None and not isinstance(value, bool) and math.isfinite(float(value))


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage without the unit: ``pct(0.9234) == "92.3"``; None or a
    non-finite value gives ``"–"``."""
    if not _finite(value):
        return MISSING
    assert value is not None
    return f"{100.0 * float(value):.{digits}f}"


def pp(value: float | None, digits: int = 1, *, sign: bool = True) -> str:
    """A difference of two fractions in percentage points: ``pp(0.123) == "+12.3"``."""
    if not _finite(value):
        return MISSING
    assert value is not None
    v = 100.0 * float(value)
    if round(v, digits) == 0:
        return f"{0.0:.{digits}f}"  # neither "-0.0" nor "+0.0"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def wilson(value: float | None, n: int | None) -> tuple[float, float] | None:
    """The 95 % Wilson interval (low, high) of a fraction measured on ``n`` points, as
    fractions; None when the value or n is missing, n < 1 or the value is outside [0, 1]."""
    if not _finite(value) or n is None or int(n) < 1:
        return None
    assert value is not None
    v = float(value)
    if not 0.0 <= v <= 1.0:
        return None
    k = min(max(round(v * int(n)), 0), int(n))
    return wilson_interval(k, int(n), CI_LEVEL)


def half_width(value: float | None, n: int | None) -> float | None:
    """Half the width of :func:`wilson` (a fraction), None where it has none."""
    ci = wilson(value, n)
    return None if ci is None else (ci[1] - ci[0]) / 2.0


def ci_text(value: float | None, n: int | None, digits: int = 1, sep: str = "–") -> str:
    """``"89.1–94.6"``: the interval in percent, or ``""`` where there is none."""
    ci = wilson(value, n)
    return "" if ci is None else f"{pct(ci[0], digits)}{sep}{pct(ci[1], digits)}"


def pct_ci(value: float | None, n: int | None, digits: int = 1, sep: str = "–") -> str:
    """``"92.3 [89.1–94.6]"``: the percentage and its interval (just the percentage
    without n)."""
    ci = ci_text(value, n, digits, sep)
    return pct(value, digits) + (f" [{ci}]" if ci else "")


def describe(value: float | None, n: int | None, digits: int = 1) -> str:
    """One phrase for prose and terminals: ``"92.3 % (n = 359, 95 % CI 89.1–94.6)"``."""
    if not _finite(value):
        return MISSING
    ci = ci_text(value, n, digits)
    if n is None:
        return f"{pct(value, digits)} %"
    inner = f"n = {int(n)}" + (f", 95 % CI {ci}" if ci else "")
    return f"{pct(value, digits)} % ({inner})"


def is_proportion(metric: str, values: Iterable[float | None]) -> bool:
    """True when ``metric`` is a fraction of points and every finite value lies in [0, 1]
    (records written by hand in percent are then shown as they are, not multiplied)."""
    if metric not in PROPORTION_METRICS:
        return False
    return all(0.0 <= float(v) <= 1.0 for v in values if _finite(v))  # type: ignore[arg-type]


def protocol_title(protocol: str) -> str:
    """How a protocol id reads in a report: "seed" (the source papers' evaluation) is the
    "paper protocol", other ids keep their name (``"adaptive protocol"``)."""
    return "paper protocol" if protocol == "seed" else f"{protocol} protocol"


def precision_note(values: Iterable[float | None], counts: Iterable[int | None]) -> str:
    """One sentence on n and the widest 95 % interval of a table's accuracies:
    ``"n = 359 test points; 95 % Wilson intervals at most ±5.2 pp."`` (``""`` without n)."""
    pairs = [(v, n) for v, n in zip(values, counts, strict=True) if n is not None]
    if not pairs:
        return ""
    ns = sorted({int(n) for _, n in pairs})
    widths = [w for w in (half_width(v, n) for v, n in pairs) if w is not None]
    n_text = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}–{ns[-1]}"
    tail = f"; 95 % {CI_METHOD} intervals at most ±{100 * max(widths):.1f} pp" if widths else ""
    return f"{n_text} test points{tail}."
