"""Per-sample and per-seed statistics: McNemar, Wilson intervals, mean ± sd."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from robustact.stats._checks import to_numpy


@dataclass(frozen=True)
class McNemarResult:
    """McNemar test on paired outcomes of two classifiers on the same samples.

    Attributes:
        statistic: b for the exact test; the continuity-corrected chi-square otherwise.
        p: two-sided p-value.
        b: samples A gets right and B gets wrong.
        c: samples A gets wrong and B gets right.
        method: "exact" (binomial) or "chi2" (with continuity correction).
    """

    statistic: float
    p: float
    b: int
    c: int
    method: Literal["exact", "chi2"]


def mcnemar(correct_a: Any, correct_b: Any, *, exact_below: int = 25) -> McNemarResult:
    """McNemar test of whether two classifiers' accuracies differ on the same samples.

    Only discordant pairs matter: b = A right & B wrong, c = A wrong & B right. When
    b + c < `exact_below` the exact two-sided binomial test (`scipy.stats.binomtest`,
    b of b + c at p = 1/2) is used; otherwise the chi-square with continuity correction,
    (|b - c| - 1)^2 / (b + c) on 1 df. With no discordant pair the p-value is 1.

    Args:
        correct_a: (n,) booleans (or 0/1), True where classifier A is correct.
        correct_b: (n,) booleans for classifier B on the same samples in the same order.
        exact_below: discordant count below which the exact test is used (25 by default).

    Returns:
        `McNemarResult`.
    """
    a = to_numpy(correct_a).ravel()
    bb = to_numpy(correct_b).ravel()
    if a.shape != bb.shape:
        raise ValueError(
            f"paired outcomes must have the same length, got {a.size} and {bb.size}; "
            "pass per-sample results of both classifiers on the same samples"
        )
    for name, v in (("correct_a", a), ("correct_b", bb)):
        if v.dtype != np.bool_ and not np.all(np.isin(v, (0, 1))):
            raise ValueError(f"{name} must be booleans or 0/1 per sample, got other values")
    a, bb = a.astype(bool), bb.astype(bool)
    b = int(np.sum(a & ~bb))
    c = int(np.sum(~a & bb))
    n = b + c
    if n == 0:
        return McNemarResult(statistic=0.0, p=1.0, b=b, c=c, method="exact")
    from scipy import stats  # deferred: evaluation (Wilson intervals) runs without scipy

    if n < exact_below:
        p = float(stats.binomtest(b, n, 0.5, alternative="two-sided").pvalue)
        return McNemarResult(statistic=float(b), p=min(p, 1.0), b=b, c=c, method="exact")
    chi2 = (abs(b - c) - 1.0) ** 2 / n
    return McNemarResult(
        statistic=float(chi2), p=float(stats.chi2.sf(chi2, 1)), b=b, c=c, method="chi2"
    )


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion such as an accuracy.

    The closed form (no continuity correction; what `scipy.stats.binomtest(...)
    .proportion_ci(method="wilson")` gives, without needing scipy, so evaluation runs
    on the runtime dependencies alone): centre (k + z^2/2) / (n + z^2), half-width
    z sqrt(k (n - k) / n + z^2/4) / (n + z^2), z the normal quantile at (1 + confidence)/2.
    E.g. 8 of 10 at 95 % gives (0.4902, 0.9433).

    Args:
        successes: number of correct predictions, 0 <= successes <= n.
        n: number of samples, n >= 1.
        confidence: confidence level in (0, 1).

    Returns:
        (low, high) with 0 <= low <= successes / n <= high <= 1.
    """
    k_int, n_int = int(successes), int(n)
    if k_int != successes or n_int != n:
        raise ValueError(f"successes and n must be integers, got {successes} and {n}")
    if n_int < 1:
        raise ValueError(f"n must be >= 1, got {n}; an interval needs at least one sample")
    if not 0 <= k_int <= n_int:
        raise ValueError(f"successes must lie in [0, n={n}], got {successes}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}; use e.g. 0.95")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    z2 = z * z
    centre = (k_int + z2 / 2.0) / (n_int + z2)
    half = z * math.sqrt(k_int * (n_int - k_int) / n_int + z2 / 4.0) / (n_int + z2)
    # Clip: floating rounding can leave the bounds a hair outside [0, 1] at k = 0 or n.
    p_hat = k_int / n_int
    low = min(max(centre - half, 0.0), p_hat)
    high = max(min(centre + half, 1.0), p_hat)
    return low, high


@dataclass(frozen=True)
class MeanSD:
    """Mean and sample standard deviation (ddof = 1) of a metric over seeds.

    Attributes:
        mean: arithmetic mean.
        sd: sample standard deviation (ddof = 1); NaN for a single value.
        n: number of values.
    """

    mean: float
    sd: float
    n: int

    def format(self, decimals: int = 1, scale: float = 1.0) -> str:
        """Formats as "85.3 ± 1.2"; a single value formats as "85.3 (n=1)".

        Args:
            decimals: digits after the decimal point.
            scale: factor applied to both numbers first (100 turns fractions into percent).
        """
        m = self.mean * scale
        if self.n < 2:
            return f"{m:.{decimals}f} (n=1)"
        return f"{m:.{decimals}f} ± {self.sd * abs(scale):.{decimals}f}"

    def __str__(self) -> str:
        return self.format()


def mean_sd(values: Any) -> MeanSD:
    """Mean ± sample sd (ddof = 1) of a metric over seeds.

    Args:
        values: (n,) array-like or tensor of finite numbers, n >= 1.

    Returns:
        `MeanSD`; ``str(mean_sd([85.0, 86.0]))`` is "85.5 ± 0.7".
    """
    v = to_numpy(values).astype(np.float64).ravel()
    if v.size == 0:
        raise ValueError("mean_sd needs at least one value; got an empty sequence")
    if not np.all(np.isfinite(v)):
        raise ValueError("mean_sd got NaN or inf; drop failed seeds before aggregating")
    sd = float(np.std(v, ddof=1)) if v.size > 1 else math.nan
    return MeanSD(mean=float(np.mean(v)), sd=sd, n=int(v.size))
