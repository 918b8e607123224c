"""Finished cells as the report reads them: config, typed rows, extras and a method label.

The seed tables and figures (`robustact.report.seed_tables`, `robustact.report.seed_figures`)
work on :class:`CellView` objects, built from a `ResultStore` (configs, typed
`MetricRow` rows and extras) or from flat store records (extras then hold only scalars).
Nothing here parses a metric name: what a number measures is in the row's fields.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from robustact.evaluate.rows import VERDICTS, MetricRow

__all__ = [
    "CellView",
    "adaptive_protocol",
    "cells_from_records",
    "cells_from_store",
    "label_cells",
    "mean",
    "paper_protocols",
]

#: Protocols that are neither a paper protocol nor the adaptive one.
_OTHER = ("masking", "diagnostics", "training", "autoattack", "autoattack-rand")


@dataclass
class CellView:
    """One finished cell.

    Attributes:
        cell_id: the store's id; spec: the spec (recipe) name that ran it.
        config: the cell's nested config; rows: its typed rows (fractions as stored).
        extra: the cell's extra (histories and diagnostic results when read from a store).
        label: the method label (every config axis that varies across the report's cells).
    """

    cell_id: str
    spec: str | None
    config: dict[str, Any]
    rows: list[MetricRow]
    extra: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def get(self, dotted: str, default: Any = None) -> Any:
        """The config value at a dotted path (``model.name``), ``default`` when absent."""
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def select(self, **want: Any) -> list[MetricRow]:
        """Rows whose fields equal every keyword (``kind="result", attack="clean"``)."""
        return [r for r in self.rows if all(getattr(r, k) == v for k, v in want.items())]

    def value(self, **want: Any) -> float | None:
        """The mean value of the matching rows, None when there is none."""
        return mean(r.value for r in self.select(**want))

    def clean(self) -> float | None:
        """Clean accuracy (the first protocol's clean row; every protocol stores the same)."""
        rows = self.select(kind="result", attack="clean", metric="accuracy")
        return rows[0].value if rows else None

    def threats(self, protocol: str | None = None) -> list[tuple[float, str]]:
        """The (eps, norm) of the result rows (of ``protocol``), in first-seen order."""
        seen = dict.fromkeys(
            (r.eps, r.norm)
            for r in self.rows
            if r.kind == "result"
            and r.eps is not None
            and r.norm is not None
            and (protocol is None or r.protocol == protocol)
        )
        return [(float(e), str(n)) for e, n in seen if e is not None and n is not None]

    def verdict(self, eps: float | None = None) -> str | None:
        """The masking verdict at ``eps`` (the most severe over eps when None)."""
        levels = [
            int(r.value)
            for r in self.select(kind="masking", attack="verdict", metric="level")
            if eps is None or r.eps is None or math.isclose(float(r.eps), eps)
        ]
        if not levels:
            v = self.extra.get("masking", {}) if isinstance(self.extra, Mapping) else {}
            got = v.get("verdict") if isinstance(v, Mapping) else None
            return str(got) if got is not None else None
        return VERDICTS[max(0, min(max(levels), len(VERDICTS) - 1))]


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not None (None when there are none)."""
    vs = [float(v) for v in values if v is not None]
    return sum(vs) / len(vs) if vs else None


def cells_from_store(store: Any) -> list[CellView]:
    """Every finished cell of a `ResultStore` with its typed rows and extra."""
    return [
        CellView(c.cell_id, c.spec, dict(c.config), store.metrics(c.cell_id), dict(c.extra))
        for c in store.cells()
    ]


def _unflatten(flat: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in flat.items():
        if not key.startswith(prefix):
            continue
        *parents, leaf = key[len(prefix) :].split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        if isinstance(v, str) and v.startswith("["):
            with contextlib.suppress(ValueError):
                v = json.loads(v)
        node[leaf] = v
    return out


def cells_from_records(records: Sequence[Mapping[str, Any]]) -> list[CellView]:
    """Cells rebuilt from flat store records (``cfg.*`` keys and the row fields)."""
    by_id: dict[str, CellView] = {}
    for r in records:
        cid = str(r.get("cell_id", "cell"))
        if cid not in by_id:
            by_id[cid] = CellView(
                cid, r.get("spec"), _unflatten(r, "cfg."), [], _unflatten(r, "extra.")
            )
        if "value" not in r or r.get("protocol") is None or r.get("metric") is None:
            continue
        eps, n = r.get("eps"), r.get("n")
        by_id[cid].rows.append(
            MetricRow(
                str(r["protocol"]),
                str(r.get("attack") or ""),
                str(r["metric"]),
                float(r["value"]),
                None if eps is None else float(eps),
                r.get("norm"),
                str(r.get("kind") or "result"),
                r.get("item"),
                None if n is None else int(n),
            )
        )
    return list(by_id.values())


def label_cells(cells: Sequence[CellView], labels: Mapping[str, str]) -> None:
    """Set each cell's label from ``labels`` (cell id -> method label); else its cell id."""
    for c in cells:
        c.label = labels.get(c.cell_id, c.label or c.cell_id)


def paper_protocols(cells: Sequence[CellView]) -> list[str]:
    """Protocols of result rows that are not adaptive (the paper protocols), "seed" first."""
    found = dict.fromkeys(
        r.protocol
        for c in cells
        for r in c.rows
        if r.kind == "result" and "adaptive" not in r.protocol and r.protocol not in _OTHER
    )
    return sorted(found, key=lambda p: (p != "seed", not p.startswith("seed")))


def adaptive_protocol(cells: Sequence[CellView]) -> str | None:
    """ "adaptive" when present, else the first result protocol with "adaptive" in its name."""
    found = list(dict.fromkeys(r.protocol for c in cells for r in c.rows if r.kind == "result"))
    if "adaptive" in found:
        return "adaptive"
    return next((p for p in found if "adaptive" in p), None)
