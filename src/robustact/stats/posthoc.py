"""Nemenyi post-hoc test: critical difference, pairwise significance, groups."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from robustact.stats._checks import check_alpha, to_numpy


def nemenyi_q(n_methods: int, alpha: float = 0.05) -> float:
    """Critical value q_alpha of the Nemenyi test (Demšar 2006, Table 5a).

    q_alpha = studentized_range.ppf(1 - alpha, k, inf) / sqrt(2); e.g. 2.569 for k = 4 at
    alpha = 0.05. Computed, not tabulated, so any k >= 2 and any alpha work.

    Args:
        n_methods: k >= 2.
        alpha: significance level in (0, 1).
    """
    alpha = check_alpha(alpha)
    k = int(n_methods)
    if k < 2 or k != n_methods:
        raise ValueError(f"n_methods must be an integer >= 2, got {n_methods}")
    return float(stats.studentized_range.ppf(1.0 - alpha, k, np.inf) / np.sqrt(2.0))


def critical_difference(n_methods: int, n_datasets: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference CD = q_alpha sqrt(k (k + 1) / (6 N)).

    Two methods differ significantly when their average ranks differ by more than CD.

    Args:
        n_methods: k >= 2.
        n_datasets: N >= 1 datasets the ranks were averaged over.
        alpha: significance level.
    """
    n = int(n_datasets)
    if n < 1 or n != n_datasets:
        raise ValueError(f"n_datasets must be an integer >= 1, got {n_datasets}")
    k = int(n_methods)
    return nemenyi_q(n_methods, alpha) * float(np.sqrt(k * (k + 1) / (6.0 * n)))


def _ranks_vector(avg_ranks: Any) -> np.ndarray:
    r = to_numpy(avg_ranks).astype(np.float64).ravel()
    if r.size < 2 or not np.all(np.isfinite(r)):
        raise ValueError(f"need finite average ranks of at least 2 methods, got {r.tolist()}")
    return r


def nemenyi_significance(avg_ranks: Any, cd: float) -> np.ndarray:
    """Pairwise Nemenyi significance matrix.

    Args:
        avg_ranks: (k,) average ranks.
        cd: critical difference (see `critical_difference`).

    Returns:
        (k, k) bool array, True at [i, j] when |R_i - R_j| > cd; symmetric, False diagonal.
    """
    r = _ranks_vector(avg_ranks)
    if not cd > 0:
        raise ValueError(f"cd must be positive, got {cd}; compute it with critical_difference()")
    return np.abs(r[:, None] - r[None, :]) > cd


def nonsignificant_groups(avg_ranks: Any, cd: float) -> list[tuple[int, ...]]:
    """Maximal runs of methods (in rank order) whose ranks lie within `cd` of each other.

    These are the bars of a Demšar critical-difference diagram: in rank order, every method
    of a group is not significantly different from every other one in it. Groups contained
    in a larger group are dropped; single methods are not groups.

    Args:
        avg_ranks: (k,) average ranks.
        cd: critical difference.

    Returns:
        List of tuples of method indices (into `avg_ranks`), each sorted best rank first,
        ordered by their best member's rank.
    """
    r = _ranks_vector(avg_ranks)
    if not cd > 0:
        raise ValueError(f"cd must be positive, got {cd}; compute it with critical_difference()")
    order = np.argsort(r, kind="stable")
    sorted_r = r[order]
    groups: list[tuple[int, ...]] = []
    last_end = -1
    for i in range(len(order)):
        # Furthest method (in rank order) not significantly different from method i.
        # Same comparison as nemenyi_significance so the two never disagree on rounding.
        end = int(np.flatnonzero(sorted_r - sorted_r[i] <= cd).max())
        if end > i and end > last_end:
            groups.append(tuple(int(j) for j in order[i : end + 1]))
            last_end = end
    return groups
