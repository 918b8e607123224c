"""A RobustBench-style model card from an ``autoattack`` evaluation.

RobustBench (Croce et al. 2021) describes each leaderboard entry by a JSON file
(``model_info/<dataset>/<threat>/<name>.json``) with the fields ``link``, ``name``,
``authors``, ``additional_data``, ``number_forward_passes``, ``dataset``, ``venue``,
``architecture``, ``eps`` (a string such as ``"8/255"`` or ``"0.5"``), ``clean_acc``,
``reported`` and ``autoattack_acc`` (percentages as strings with two decimals), plus
optional ``footnote`` and ``unreliable``. :func:`robustbench_entry` fills the measured
fields from an :class:`~robustact.evaluate.results.EvalResult` and adds ``threat_model``,
``n_examples`` and ``protocol`` (RobustBench keeps the first in the file path and the
second in its evaluation log); the descriptive fields are the caller's.
"""

from __future__ import annotations

import math
from typing import Any

from robustact._validate import is_int
from robustact.evaluate.results import EvalResult

__all__ = ["format_eps", "robustbench_entry"]

_PROTOCOLS = ("autoattack", "autoattack-rand")


def format_eps(eps: float, norm: str) -> str:
    """RobustBench's spelling of a radius: ``"8/255"`` for Linf multiples of 1/255 that
    are not short decimals, else the shortest decimal (``"0.3"``, ``"0.5"``)."""
    k = eps * 255
    short = abs(eps - round(eps, 3)) < 1e-9
    if norm == "Linf" and not short and abs(k - round(k)) < 1e-6:
        return f"{round(k)}/255"
    return f"{eps:g}"


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def robustbench_entry(
    result: EvalResult,
    *,
    name: str = "",
    architecture: str = "",
    dataset: str = "",
    link: str = "",
    authors: str = "",
    venue: str = "",
    reported: float | None = None,
    additional_data: bool = False,
    number_forward_passes: int = 1,
    footnote: str | None = None,
) -> dict[str, Any]:
    """The RobustBench JSON fields for ``result`` (an ``autoattack`` or ``autoattack-rand``
    evaluation with the full budget).

    Args:
        result: what :func:`robustact.evaluate.evaluate` returned.
        name, architecture, dataset, link, authors, venue: descriptive fields.
        reported: robust accuracy the authors reported, as a fraction (``None``: left out).
        additional_data: trained with data beyond the dataset's training split.
        number_forward_passes: passes per prediction (> 1 for ensembles / randomised
            models evaluated by averaging).
        footnote: optional note shown on the leaderboard.

    Returns:
        A JSON-serialisable dict in RobustBench's field order (strings where RobustBench
        writes strings), plus ``threat_model``, ``n_examples`` and ``protocol``.

    Raises:
        ValueError: the evaluation was not a full AutoAttack run.
    """
    if result.protocol not in _PROTOCOLS:
        raise ValueError(
            f"a RobustBench entry needs an AutoAttack evaluation, got protocol "
            f"{result.protocol!r}; run evaluate(..., protocol='autoattack')"
        )
    if result.fast:
        raise ValueError(
            "this evaluation ran with fast=True (cut steps and queries); RobustBench entries "
            "need the full budget: evaluate again without fast"
        )
    if not is_int(number_forward_passes):
        raise TypeError(f"number_forward_passes must be an int, got {number_forward_passes!r}")
    if number_forward_passes < 1:
        raise ValueError(f"number_forward_passes must be >= 1, got {number_forward_passes}")
    if reported is not None and not (math.isfinite(reported) and 0 <= reported <= 1):
        raise ValueError(f"reported must be a fraction in [0, 1], got {reported!r}")
    entry: dict[str, Any] = {
        "link": link,
        "name": name,
        "authors": authors,
        "additional_data": bool(additional_data),
        "number_forward_passes": number_forward_passes,
        "dataset": dataset,
        "venue": venue,
        "architecture": architecture,
        "eps": format_eps(result.eps, result.norm),
        "clean_acc": _pct(result.clean_accuracy),
        "reported": "" if reported is None else _pct(reported),
        "autoattack_acc": _pct(result.robust_accuracy),
    }
    if footnote is not None:
        entry["footnote"] = footnote
    entry.update(threat_model=result.norm, n_examples=result.n, protocol=result.protocol)
    return entry
