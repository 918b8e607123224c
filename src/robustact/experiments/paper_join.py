"""Put our measured numbers beside the seeds' published ones.

``row_for_config`` finds the seed row a recipe cell reproduces (from the paper file's
``match:`` blocks, dotted cell-config paths); ``join_measured`` lines up
``table | row | column | paper | paper protocol (ours) | adaptive (ours) | worst case | verdict``
with ``None`` (rendered "not run") where we have no number.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from robustact.experiments.paper import PaperNumbers

__all__ = [
    "JOIN_HEADER",
    "JoinedRow",
    "join_measured",
    "joined_markdown",
    "matches",
    "no_row_reason",
    "row_for_config",
]

MEASURED_KEYS = ("seed_protocol", "adaptive", "worst_case", "verdict")
NOT_RUN = "not run"

_ABSENT = object()


def _lookup(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _same(want: Any, got: Any) -> bool:
    if want is None:
        return got is _ABSENT or got is None
    if got is _ABSENT:
        return False
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        return (
            isinstance(got, (int, float))
            and not isinstance(got, bool)
            and math.isclose(want, got, rel_tol=1e-9)
        )
    return bool(want == got)


def matches(pattern: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    """True when every dotted path of ``pattern`` has its value in ``config`` (None = absent)."""
    return all(_same(v, _lookup(config, k)) for k, v in pattern.items())


def _stand_in(paper: PaperNumbers, config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with each quick stand-in value replaced by the seed's."""
    out: dict[str, Any] = copy.deepcopy(dict(config))
    for dotted, swap in paper.quick_stand_ins.items():
        *parents, leaf = dotted.split(".")
        node: Any = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node and node[leaf] in swap:
            node[leaf] = swap[node[leaf]]
    return out


def row_for_config(
    paper: PaperNumbers, table: str, cell_config: Mapping[str, Any], quick: bool = False
) -> str | None:
    """The label of the row of ``table`` that ``cell_config`` (a Cell.config) reproduces, or None.

    With ``quick=True`` the file's ``quick_stand_ins`` are applied first (a quick digits cell
    stands in for the seed's MNIST row).

    Raises:
        ValueError: more than one row matches (the file's ``match:`` blocks overlap).
    """
    t = paper.table(table)
    cfg = _stand_in(paper, cell_config) if quick else cell_config
    hits = [r.label for r in t.rows if r.match is not None and matches(r.match, cfg)]
    if len(hits) > 1:
        raise ValueError(
            f"{paper.path}: table {table}: rows {hits} all match one cell; "
            "fix: make their match: blocks narrower"
        )
    return hits[0] if hits else None


def no_row_reason(
    paper: PaperNumbers, table: str, cell_config: Mapping[str, Any], quick: bool = False
) -> str | None:
    """Why the seed's ``table`` has no row for this cell: the first ``no_row:`` pattern it matches.

    None when a row matches the cell (no_row patterns are the fallback for unmatched cells) or
    when no pattern does (then the file has not accounted for the cell).
    """
    if row_for_config(paper, table, cell_config, quick=quick) is not None:
        return None
    cfg = _stand_in(paper, cell_config) if quick else cell_config
    for nr in paper.table(table).no_rows:
        if matches(nr.match, cfg):
            return nr.reason
    return None


@dataclass(frozen=True)
class JoinedRow:
    """One line of ``table | row | column | paper | paper protocol | adaptive | worst | verdict``.

    Accuracies are fractions in [0, 1]; None where there is no number (render as "not run").
    """

    table: str
    row: str
    column: str
    paper: float | None
    seed_protocol: float | None
    adaptive: float | None
    worst_case: float | None
    verdict: str | None

    def cells(self, digits: int = 4) -> list[str]:
        """The line as strings, None shown as ``not run`` (paper: ``-``)."""

        def fmt(v: float | None, missing: str) -> str:
            return missing if v is None else f"{v:.{digits}f}"

        return [
            self.table,
            self.row,
            self.column,
            fmt(self.paper, "-"),
            fmt(self.seed_protocol, NOT_RUN),
            fmt(self.adaptive, NOT_RUN),
            fmt(self.worst_case, NOT_RUN),
            self.verdict or NOT_RUN,
        ]


def _measured_entry(key: tuple[str, str, str], entry: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(entry) - set(MEASURED_KEYS))
    if unknown:
        raise ValueError(
            f"measured {key}: unknown key(s) {unknown}; fix: use only {list(MEASURED_KEYS)}"
        )
    out: dict[str, Any] = {}
    for k in ("seed_protocol", "adaptive", "worst_case"):
        v = entry.get(k)
        if v is not None and not (isinstance(v, (int, float)) and 0.0 <= float(v) <= 1.0):
            raise ValueError(
                f"measured {key}: {k}={v!r} is not a fraction in [0, 1]; fix: pass accuracy/100"
            )
        out[k] = None if v is None else float(v)
    if out["worst_case"] is None:
        present = [v for v in (out["seed_protocol"], out["adaptive"]) if v is not None]
        out["worst_case"] = min(present) if present else None
    out["verdict"] = entry.get("verdict")
    return out


def join_measured(
    paper: PaperNumbers, measured: Mapping[tuple[str, str, str], Mapping[str, Any]]
) -> list[JoinedRow]:
    """Put measured values beside the paper's, keyed by (table, row, column).

    Every paper number gets a line (measured None where not run); measured keys the paper has
    no number for get a line with ``paper=None``. ``worst_case`` defaults to the smaller of the
    paper-protocol and adaptive accuracies (a lower bound on the per-point worst case; pass the
    per-point value when you have it). Order: the paper's, then the extra measured keys sorted.

    Raises:
        ValueError: a measured key names a table the file does not have, or a value is not a
            fraction in [0, 1].
    """
    ids = {t.id for t in paper.tables}
    for key in measured:
        if key[0] not in ids:
            raise ValueError(
                f"measured key {key}: no table {key[0]!r} in {paper.recipe}; "
                f"fix: use one of {sorted(ids)}"
            )
    clean = {k: _measured_entry(k, v) for k, v in measured.items()}
    out: list[JoinedRow] = []
    done: set[tuple[str, str, str]] = set()
    for table_id, n in paper.all_numbers():
        key = (table_id, n.row, n.column)
        done.add(key)
        m = clean.get(key, {})
        out.append(
            JoinedRow(
                *key,
                n.fraction,
                m.get("seed_protocol"),
                m.get("adaptive"),
                m.get("worst_case"),
                m.get("verdict"),
            )
        )
    for key in sorted(set(clean) - done):
        m = clean[key]
        out.append(
            JoinedRow(*key, None, m["seed_protocol"], m["adaptive"], m["worst_case"], m["verdict"])
        )
    return out


JOIN_HEADER = (
    "table",
    "row",
    "column",
    "paper",
    "paper protocol (ours)",
    "adaptive (ours)",
    "worst case",
    "verdict",
)


def joined_markdown(rows: list[JoinedRow], digits: int = 4) -> str:
    """The joined rows as a Markdown table (fractions; ``not run`` where we have no number)."""
    lines = ["| " + " | ".join(JOIN_HEADER) + " |", "|" + "---|" * len(JOIN_HEADER)]
    lines += [
        "| " + " | ".join(c.replace("|", "\\|") for c in r.cells(digits)) + " |" for r in rows
    ]
    return "\n".join(lines) + "\n"
