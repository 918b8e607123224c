"""Per-dataset ranks of methods with average ranks for ties."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from robustact.stats._checks import score_matrix


def rank_matrix(scores: Any, *, higher_is_better: bool = True) -> np.ndarray:
    """Ranks the methods within each dataset (row); ties share their average rank.

    Args:
        scores: (N, k) matrix, one row per dataset/condition and one column per method
            (e.g. accuracies in percent).
        higher_is_better: rank 1 goes to the highest score when True (accuracy), to the
            lowest when False (error, loss).

    Returns:
        (N, k) float array of ranks in [1, k]; each row sums to k(k+1)/2.
    """
    arr = score_matrix(scores)
    # rankdata ranks ascending, so negate to give rank 1 to the best (highest) score.
    keyed = -arr if higher_is_better else arr
    return np.asarray(stats.rankdata(keyed, method="average", axis=1), dtype=np.float64)


def average_ranks(scores: Any, *, higher_is_better: bool = True) -> np.ndarray:
    """Average rank of each method over the datasets (Demšar 2006, R_j).

    Args:
        scores: (N, k) score matrix as for `rank_matrix`.
        higher_is_better: see `rank_matrix`.

    Returns:
        (k,) float array of average ranks; lower is better, and they sum to k(k+1)/2.
    """
    return rank_matrix(scores, higher_is_better=higher_is_better).mean(axis=0)
