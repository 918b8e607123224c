"""Input validation shared by the statistics modules (private)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from robustact._validate import check_float


def to_numpy(values: Any) -> np.ndarray:
    """Converts an array-like or a (possibly GPU) torch tensor to a NumPy array."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        # Torch tensors: detach and move to host so GPU results are accepted too.
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def score_matrix(scores: Any, name: str = "scores") -> np.ndarray:
    """Validates an (N datasets, k methods) score matrix and returns it as float64."""
    arr = to_numpy(scores)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (N datasets, k methods), got shape {arr.shape}; "
            "pass one row per dataset/condition and one column per method"
        )
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}; pass accuracies as floats")
    arr = arr.astype(np.float64)
    n, k = arr.shape
    if n < 2 or k < 2:
        raise ValueError(
            f"{name} needs at least 2 datasets and 2 methods, got shape {arr.shape}; "
            "add rows (datasets) or columns (methods)"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; remove or impute those cells first")
    return arr


def check_alpha(alpha: float) -> float:
    """Checks a significance level lies strictly inside (0, 1)."""
    return check_float("alpha", alpha, 0.0, 1.0, min_open=True, max_open=True,
                       hint="use e.g. alpha=0.05")  # fmt: skip


def check_names(names: Sequence[str], k: int) -> list[str]:
    """Checks there is one unique method name per column."""
    names = [str(n) for n in names]
    if len(names) != k:
        raise ValueError(
            f"got {len(names)} method names for {k} methods (columns); pass one name per column"
        )
    if len(set(names)) != k:
        raise ValueError(f"method names must be unique, got {names}; rename the duplicates")
    return names
