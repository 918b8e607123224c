"""One-call comparison of k methods over N datasets: ranks, Friedman, Nemenyi."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from robustact.stats._checks import check_alpha, check_names, score_matrix
from robustact.stats.diagram import cd_diagram
from robustact.stats.omnibus import FriedmanResult, friedman_from_ranks
from robustact.stats.posthoc import critical_difference, nemenyi_significance
from robustact.stats.ranks import rank_matrix


@dataclass(frozen=True)
class MethodComparison:
    """Result of `compare_methods`.

    Attributes:
        method_names: the k method names, in column order.
        ranks: (N, k) per-dataset ranks (1 = best, ties averaged).
        avg_ranks: (k,) average ranks.
        friedman: Friedman chi-square and Iman-Davenport F_F with p-values.
        cd: Nemenyi critical difference at `alpha`.
        alpha: significance level.
        significant: (k, k) bool matrix, True where the average ranks differ by more than cd.
        significant_pairs: (better, worse) name pairs that differ significantly, in order of
            decreasing rank difference.
    """

    method_names: tuple[str, ...]
    ranks: np.ndarray
    avg_ranks: np.ndarray
    friedman: FriedmanResult
    cd: float
    alpha: float
    significant: np.ndarray
    significant_pairs: tuple[tuple[str, str], ...]

    @property
    def n_datasets(self) -> int:
        """N, the number of datasets (rows)."""
        return int(self.ranks.shape[0])

    def to_text(self) -> str:
        """Plain-text summary (several lines) for logs and reports."""
        f = self.friedman
        width = max(len(n) for n in self.method_names)
        n, k = self.n_datasets, len(self.method_names)
        lines = [f"Comparison of {k} methods over {n} blocks"]
        lines.append("Average ranks (1 = best):")
        for i in np.argsort(self.avg_ranks, kind="stable"):
            lines.append(f"  {self.method_names[i]:<{width}}  {self.avg_ranks[i]:.2f}")
        verdict = "reject" if f.reject else "do not reject"
        lines.append(f"Friedman chi2 = {f.chi2:.2f} (df = {f.df[0]}, p = {f.p_chi2:.3g})")
        lines.append(
            f"Iman-Davenport F_F = {f.f_f:.2f} (df = {f.df[0]}, {f.df[1]}, p = {f.p_f:.3g}); "
            f"critical value at alpha = {self.alpha:g}: {f.critical_value:.2f} "
            f"-> {verdict} equal performance"
        )
        lines.append(f"Nemenyi critical difference CD = {self.cd:.2f}")
        if self.significant_pairs:
            lines.append("Significantly different pairs (better > worse):")
            idx = {n: i for i, n in enumerate(self.method_names)}
            for better, worse in self.significant_pairs:
                diff = self.avg_ranks[idx[worse]] - self.avg_ranks[idx[better]]
                lines.append(f"  {better} > {worse}  (rank difference {diff:.2f})")
        else:
            lines.append("No pair differs by more than CD.")
        return "\n".join(lines)

    def cd_diagram(self, **kwargs: Any) -> Figure:
        """Critical-difference diagram of this comparison (kwargs go to `cd_diagram`)."""
        return cd_diagram(self.avg_ranks, self.method_names, self.cd, **kwargs)


def compare_methods(
    acc_matrix: Any,
    method_names: Sequence[str],
    alpha: float = 0.05,
    *,
    higher_is_better: bool = True,
) -> MethodComparison:
    """Ranks k methods over N datasets and runs Friedman / Iman-Davenport and Nemenyi.

    Args:
        acc_matrix: (N, k) scores (e.g. accuracies), one row per dataset/condition.
        method_names: k names, one per column.
        alpha: significance level for F_F's critical value and for the CD.
        higher_is_better: rank 1 goes to the highest score when True.

    Returns:
        `MethodComparison`. The Nemenyi pairs are reported whatever the Friedman verdict;
        read them only when `friedman.reject` is True (Demšar 2006).
    """
    alpha = check_alpha(alpha)
    arr = score_matrix(acc_matrix, "acc_matrix")
    n, k = arr.shape
    names = tuple(check_names(method_names, k))
    ranks = rank_matrix(arr, higher_is_better=higher_is_better)
    avg = ranks.mean(axis=0)
    fr = friedman_from_ranks(avg, n, alpha=alpha)
    cd = critical_difference(k, n, alpha)
    sig = nemenyi_significance(avg, cd)
    pairs = [
        (i, j) for i in range(k) for j in range(k) if sig[i, j] and avg[i] < avg[j]
    ]  # i better than j
    pairs.sort(key=lambda p: (-(avg[p[1]] - avg[p[0]]), p))
    return MethodComparison(
        method_names=names,
        ranks=ranks,
        avg_ranks=avg,
        friedman=fr,
        cd=cd,
        alpha=alpha,
        significant=sig,
        significant_pairs=tuple((names[i], names[j]) for i, j in pairs),
    )
