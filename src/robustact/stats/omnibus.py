"""Omnibus tests over several methods: one-way ANOVA and Friedman / Iman-Davenport."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from robustact.stats._checks import check_alpha, score_matrix, to_numpy
from robustact.stats.ranks import average_ranks


@dataclass(frozen=True)
class AnovaResult:
    """One-way ANOVA result.

    Attributes:
        f: the F statistic (between-group over within-group mean square).
        p: its p-value.
        df: (between, within) degrees of freedom = (g - 1, n_total - g) for g groups.
    """

    f: float
    p: float
    df: tuple[int, int]

    def critical_value(self, alpha: float = 0.05) -> float:
        """F value above which the null hypothesis of equal means is rejected at `alpha`."""
        return float(stats.f.ppf(1.0 - check_alpha(alpha), *self.df))


def one_way_anova(*groups: Any) -> AnovaResult:
    """One-way ANOVA of g >= 2 independent groups (wraps `scipy.stats.f_oneway`).

    For an (N, k) accuracy matrix whose columns are methods, call
    ``one_way_anova(*matrix.T)``.

    Args:
        *groups: g 1-D array-likes (or tensors), each of length >= 1, at least one of
            them with two or more values.

    Returns:
        `AnovaResult` with f (the F statistic), p and df = (g - 1, n_total - g).
    """
    if len(groups) < 2:
        raise ValueError(f"ANOVA needs at least 2 groups, got {len(groups)}; pass one per method")
    arrays = [to_numpy(g).astype(np.float64).ravel() for g in groups]
    for i, a in enumerate(arrays):
        if a.size == 0:
            raise ValueError(f"ANOVA group {i} is empty; every group needs at least one value")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"ANOVA group {i} contains NaN or inf; remove those values first")
    n_total = sum(a.size for a in arrays)
    if n_total <= len(arrays):
        raise ValueError(
            f"ANOVA needs more values ({n_total}) than groups ({len(arrays)}); add observations"
        )
    res = stats.f_oneway(*arrays)
    return AnovaResult(
        f=float(res.statistic), p=float(res.pvalue), df=(len(arrays) - 1, n_total - len(arrays))
    )


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman test on average ranks with the Iman-Davenport correction.

    Attributes:
        chi2: Friedman chi-square chi2_F (chi-square with k - 1 df under the null).
        p_chi2: p-value of chi2_F.
        f_f: Iman-Davenport statistic (N - 1) chi2_F / (N (k - 1) - chi2_F).
        p_f: p-value of F_F under F(k - 1, (k - 1)(N - 1)).
        df: (k - 1, (k - 1)(N - 1)), the degrees of freedom of F_F.
        critical_value: F_F above which the null of equal methods is rejected at `alpha`.
        alpha: the significance level used for `critical_value` and `reject`.
        n_datasets: N.
        n_methods: k.
        avg_ranks: (k,) average ranks the statistics were computed from.
    """

    chi2: float
    p_chi2: float
    f_f: float
    p_f: float
    df: tuple[int, int]
    critical_value: float
    alpha: float
    n_datasets: int
    n_methods: int
    avg_ranks: np.ndarray

    @property
    def reject(self) -> bool:
        """True when F_F exceeds its critical value (the methods differ at `alpha`)."""
        return self.f_f > self.critical_value


def friedman_from_ranks(avg_ranks: Any, n_datasets: int, *, alpha: float = 0.05) -> FriedmanResult:
    """Friedman chi-square and Iman-Davenport F_F from average ranks (Demšar 2006).

    Hand-written rather than `scipy.stats.friedmanchisquare` because (a) it starts from the
    average ranks, so a published ranks row can be checked directly, (b) scipy does not give
    the Iman-Davenport F_F, and (c) scipy applies a tie correction that Demšar's formula
    (used by the papers we reproduce) does not: without ties the two chi-squares agree.

        chi2_F = 12 N / (k (k + 1)) * (sum_j R_j^2 - k (k + 1)^2 / 4)
        F_F    = (N - 1) chi2_F / (N (k - 1) - chi2_F)

    Args:
        avg_ranks: (k,) average ranks R_j, k >= 2.
        n_datasets: N >= 2, the number of datasets the ranks were averaged over.
        alpha: significance level for the critical value of F_F.

    Returns:
        `FriedmanResult`. When every dataset ranks the methods identically (chi2_F reaches
        its maximum N (k - 1)), F_F is +inf and p_F is 0.
    """
    alpha = check_alpha(alpha)
    r = to_numpy(avg_ranks).astype(np.float64).ravel()
    k = r.size
    n = int(n_datasets)
    if k < 2:
        raise ValueError(f"Friedman needs average ranks of at least 2 methods, got {k}")
    if n < 2 or n != n_datasets:
        raise ValueError(f"n_datasets must be an integer >= 2, got {n_datasets}")
    if not np.all(np.isfinite(r)) or np.any(r < 1.0) or np.any(r > k):
        raise ValueError(f"average ranks must lie in [1, k={k}], got {r.tolist()}")
    chi2 = 12.0 * n / (k * (k + 1)) * (float(np.sum(r**2)) - k * (k + 1) ** 2 / 4.0)
    chi2 = max(chi2, 0.0)  # rounding can push a zero statistic slightly negative
    df1, df2 = k - 1, (k - 1) * (n - 1)
    denom = n * (k - 1) - chi2
    # denom is 0 only under perfect agreement; treat tiny rounding residue the same way.
    if denom <= 1e-12 * n * (k - 1):
        f_f, p_f = float("inf"), 0.0
    else:
        f_f = (n - 1) * chi2 / denom
        p_f = float(stats.f.sf(f_f, df1, df2))
    return FriedmanResult(
        chi2=float(chi2),
        p_chi2=float(stats.chi2.sf(chi2, df1)),
        f_f=float(f_f),
        p_f=p_f,
        df=(df1, df2),
        critical_value=float(stats.f.ppf(1.0 - alpha, df1, df2)),
        alpha=alpha,
        n_datasets=n,
        n_methods=k,
        avg_ranks=r,
    )


def friedman(scores: Any, *, alpha: float = 0.05, higher_is_better: bool = True) -> FriedmanResult:
    """Friedman / Iman-Davenport test on an (N datasets, k methods) score matrix.

    Args:
        scores: (N, k) matrix (e.g. accuracies), N >= 2, k >= 2.
        alpha: significance level for the critical value of F_F.
        higher_is_better: rank 1 goes to the highest score when True.

    Returns:
        `FriedmanResult` (see `friedman_from_ranks`).
    """
    arr = score_matrix(scores)
    ranks = average_ranks(arr, higher_is_better=higher_is_better)
    return friedman_from_ranks(ranks, arr.shape[0], alpha=alpha)
