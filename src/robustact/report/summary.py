"""Seed protocol vs adaptive protocol, side by side, with the masking verdict.

For every (group, method, eps, norm): clean accuracy, the robust accuracy the source
documents' attacks report ("seed" protocol), the robust accuracy of the adaptive attacks,
their gap (how much the seed protocol overstates robustness) and the masking verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robustact.report.tables import method_label, select

#: Verdict words by how they should be coloured.
_GOOD = {"ok", "clean", "sound", "pass", "passed", "none", "unmasked", "robust", "fine"}
_WARN = {
    "suspect",
    "suspicious",
    "possible",
    "possibly",
    "warn",
    "warning",
    "inconclusive",
    "unclear",
    "partial",
}


@dataclass(frozen=True)
class SummaryRow:
    """One line of the protocol summary (accuracies as stored; None where not measured).

    `robust_*` is the "worst" attack's accuracy when recorded, otherwise the minimum over
    the protocol's attacks (an upper bound on the per-point worst case).
    """

    group: tuple[Any, ...]
    method: str
    eps: float | None
    norm: str | None
    clean: float | None
    robust_seed: float | None
    robust_adaptive: float | None
    verdict: str | None = None
    flagged: tuple[str, ...] = field(default_factory=tuple)

    @property
    def gap(self) -> float | None:
        """seed - adaptive robust accuracy (> 0: the seed protocol overstates robustness)."""
        if self.robust_seed is None or self.robust_adaptive is None:
            return None
        return self.robust_seed - self.robust_adaptive


def verdict_level(verdict: str | None) -> str:
    """ "bad" (masked), "warn" (suspect), "good" (not masked) or "unknown", for colouring."""
    if not verdict:
        return "unknown"
    low = verdict.lower().replace("-", " ").replace("_", " ")
    words = set(low.replace(",", " ").replace(":", " ").split())
    # "no evidence" is robustact.evaluate.masking's verdict when no check flags.
    if any(p in low for p in ("not masked", "no masking", "no evidence")) or words & _GOOD:
        return "good"
    if words & _WARN:
        return "warn"
    if "mask" in low or "fail" in low or "broken" in low:
        return "bad"
    return "unknown"


_SEVERITY = {"bad": 3, "warn": 2, "unknown": 1, "good": 0}


def _robust(recs: list[Mapping[str, Any]]) -> float | None:
    if not recs:
        return None
    worst = [float(r["value"]) for r in recs if r.get("attack") == "worst"]
    if worst:
        return float(np.mean(worst))
    by_attack: dict[str, list[float]] = {}
    for r in recs:
        by_attack.setdefault(str(r.get("attack")), []).append(float(r["value"]))
    return min(float(np.mean(v)) for v in by_attack.values())


def _flagged_names(checks: Any) -> list[str]:
    """Names of the flagged checks in a masking report's "checks" (list of dicts or a dict)."""
    names: list[str] = []
    if isinstance(checks, Mapping):
        for k, v in checks.items():
            flag = v.get("flagged", v.get("flag")) if isinstance(v, Mapping) else v
            if flag is True:
                names.append(str(k))
    elif isinstance(checks, list):
        for c in checks:
            if isinstance(c, Mapping) and (c.get("flagged") is True or c.get("flag") is True):
                names.append(str(c.get("check", c.get("name", "?"))))
    return names


def protocol_summary(
    records: Iterable[Mapping[str, Any]],
    *,
    method_key: str | Sequence[str] = "cfg.method",
    group_keys: Sequence[str] = ("cfg.dataset",),
    metric: str = "accuracy",
    masking: Mapping[str, Mapping[str, Any]] | None = None,
    seed_protocol: str = "seed",
    adaptive_protocol: str = "adaptive",
) -> list[SummaryRow]:
    """Builds the side-by-side summary from store records.

    Args:
        records: dicts as from `ResultStore.records(include_extra=True)`.
        method_key: record key(s) naming the method.
        group_keys: record keys that split the rows further (e.g. the dataset).
        metric: which metric to compare (accuracy).
        masking: optional cell_id -> masking report ({"verdict": ..., "checks": ...}); when
            absent, the "extra.masking.verdict" record column is used if present.
        seed_protocol, adaptive_protocol: the protocol names in the records.

    Returns:
        Rows in first-appearance order. With several cells (seeds) per row, accuracies
        are averaged and the most severe verdict is shown.
    """
    recs = select(records, {"metric": metric})
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in recs:
        key = (tuple(r.get(k) for k in group_keys), method_label(r, method_key))
        g = groups.setdefault(key, {"clean": [], "cells": {}, "adv": {}})
        g["cells"].setdefault(r.get("cell_id"), r)
        # a row with no attack and no threat model is a clean number (older records)
        no_threat = r.get("eps") is None and r.get("norm") is None
        unattacked = r.get("attack") in (None, "") and no_threat
        if r.get("attack") == "clean" or unattacked:
            g["clean"].append(float(r["value"]))
        else:
            g["adv"].setdefault((r.get("eps"), r.get("norm")), []).append(r)
    out = []
    for (grp, method), g in groups.items():
        verdict, flagged = _verdict(g["cells"], masking)
        clean = float(np.mean(g["clean"])) if g["clean"] else None
        # the threat models a protocol's worst case was measured at; an attack with its own
        # threat model (CW-L2 in an L-inf protocol) has rows at its own, with no worst case
        worst = [t for t, rs in g["adv"].items() if any(r.get("attack") == "worst" for r in rs)]
        threats = worst or list(g["adv"]) or [(None, None)]
        for eps, norm in threats:
            adv = g["adv"].get((eps, norm), [])
            out.append(
                SummaryRow(
                    group=grp,
                    method=method,
                    eps=eps,
                    norm=norm,
                    clean=clean,
                    robust_seed=_robust([r for r in adv if r.get("protocol") == seed_protocol]),
                    robust_adaptive=_robust(
                        [r for r in adv if r.get("protocol") == adaptive_protocol]
                    ),
                    verdict=verdict,
                    flagged=tuple(flagged),
                )
            )
    return out


def _verdict(
    cells: Mapping[Any, Mapping[str, Any]], masking: Mapping[str, Mapping[str, Any]] | None
) -> tuple[str | None, list[str]]:
    found: list[tuple[str, list[str]]] = []
    for cid, rec in cells.items():
        rep = masking.get(str(cid)) if masking is not None else None
        if rep:
            v = rep.get("verdict")
            if v is not None:
                found.append((str(v), _flagged_names(rep.get("checks"))))
        elif rec.get("extra.masking.verdict") is not None:
            found.append((str(rec["extra.masking.verdict"]), []))
    if not found:
        return None, []
    found.sort(key=lambda vf: -_SEVERITY[verdict_level(vf[0])])
    flagged = sorted({n for _, fl in found for n in fl})
    return found[0][0], flagged
