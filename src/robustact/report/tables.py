"""Rank tables in the source documents' style (dissertation Table 4.2 / Appendix A).

Rows are conditions (dataset, attack, eps), columns are methods, each cell reads
"97.30 (1)": the score with its rank inside the row (1 = best, ties share the average
rank), the best of each row in bold, and a last "Average" row with each method's mean
score and, in parentheses, its average rank. Ranks, Friedman / Iman-Davenport and the
Nemenyi CD come from `robustact.stats`.

Input is plain data: the records of `ResultStore.records()` (one dict per cell and
metric), aggregated by `pivot`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from robustact.report.format import pct

if TYPE_CHECKING:  # imported where used: ranks and statistics need scipy (``report`` extra)
    from robustact.stats import MethodComparison

#: Column headers for well-known record keys (anything else: "cfg." stripped, capitalised).
HEADERS = {"eps": "ε", "norm": "Norm", "attack": "Attack", "protocol": "Protocol",
           "threat": "Threat model", "block": "Block"}  # fmt: skip
_LATEX_HEADERS = {"eps": r"$\epsilon$"}
MISSING = "–"


@dataclass(frozen=True)
class Pivot:
    """Scores arranged as (conditions x methods).

    Attributes:
        row_keys: the record keys that make a condition, e.g. ("cfg.dataset", "attack", "eps").
        rows: one tuple of key values per condition, in first-appearance order.
        methods: method labels (columns), in first-appearance order.
        values: (N, k) mean score per condition and method; NaN where nothing was recorded.
        counts: (N, k) how many records were averaged (e.g. seeds).
        sds: (N, k) sample sd over those records (NaN for one), shown as "± sd"; None
            shows none.
    """

    row_keys: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    methods: list[str]
    values: np.ndarray
    counts: np.ndarray
    sds: np.ndarray | None = None


def method_label(record: Mapping[str, Any], method_key: str | Sequence[str]) -> str:
    """The method name of a record: one key's value, or several joined by " / "."""
    keys = [method_key] if isinstance(method_key, str) else list(method_key)
    return " / ".join(fmt_key(record.get(k)) for k in keys)


def select(
    records: Iterable[Mapping[str, Any]], where: Mapping[str, Any] | None = None
) -> list[Mapping[str, Any]]:
    """Records whose value equals `where[key]` for every key (a set/list/tuple means any of)."""
    out = []
    for r in records:
        ok = True
        for k, want in (where or {}).items():
            got = r.get(k)
            ok = got in want if isinstance(want, (set, frozenset, list, tuple)) else got == want
            if not ok:
                break
        if ok:
            out.append(r)
    return out


def pivot(
    records: Iterable[Mapping[str, Any]],
    *,
    method_key: str | Sequence[str] = "cfg.method",
    row_keys: Sequence[str] = ("cfg.dataset", "attack", "eps"),
    where: Mapping[str, Any] | None = None,
    value_key: str = "value",
) -> Pivot:
    """Averages records into a (conditions x methods) matrix.

    Args:
        records: dicts as from `ResultStore.records()`.
        method_key: record key(s) naming the method (columns).
        row_keys: record keys making a condition (rows); a missing key counts as None.
        where: filter, e.g. ``{"metric": "accuracy", "protocol": "seed"}``.
        value_key: the key holding the score.

    Returns:
        `Pivot`; several records for one (condition, method), e.g. seeds, are averaged.
    """
    recs = select(records, where)
    if not recs:
        raise ValueError(f"no records match {dict(where or {})}; check the filter and the store")
    mkeys = [method_key] if isinstance(method_key, str) else list(method_key)
    missing = [k for k in mkeys if all(k not in r for r in recs)]
    if missing:
        cfg_cols = sorted({k for r in recs for k in r if k.startswith("cfg.")})
        raise KeyError(f"method key {missing} not in the records; pick from {cfg_cols}")
    rows: dict[tuple[Any, ...], int] = {}
    methods: dict[str, int] = {}
    sums: dict[tuple[int, int], list[float]] = {}
    for r in recs:
        rk = tuple(r.get(k) for k in row_keys)
        m = method_label(r, mkeys)
        i = rows.setdefault(rk, len(rows))
        j = methods.setdefault(m, len(methods))
        sums.setdefault((i, j), []).append(float(r[value_key]))
    values = np.full((len(rows), len(methods)), np.nan)
    counts = np.zeros((len(rows), len(methods)), dtype=np.int64)
    for (i, j), vs in sums.items():
        values[i, j] = float(np.mean(vs))
        counts[i, j] = len(vs)
    return Pivot(tuple(row_keys), list(rows), list(methods), values, counts)


@dataclass(frozen=True)
class RankTable:
    """A pivot with its ranks (see the module docstring).

    Attributes:
        pivot: the complete rows only (rows with a missing method are in `dropped`).
        ranks: (N, k) rank of each method within its row, 1 = best, ties averaged.
        avg_ranks: (k,) mean rank per method.
        means: (k,) mean score per method.
        higher_is_better: whether rank 1 went to the highest score.
        dropped: conditions left out because some method had no score there.
    """

    pivot: Pivot
    ranks: np.ndarray
    avg_ranks: np.ndarray
    means: np.ndarray
    higher_is_better: bool = True
    dropped: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def best(self) -> np.ndarray:
        """(N, k) bool: the best method(s) of each row (all tied winners)."""
        return np.isclose(self.ranks, self.ranks.min(axis=1, keepdims=True))


def rank_table(p: Pivot, *, higher_is_better: bool = True) -> RankTable:
    """Ranks the methods within each complete row of `p` (via `robustact.stats`)."""
    keep = ~np.isnan(p.values).any(axis=1)
    if not keep.any():
        raise ValueError(
            "no condition has a score for every method; run the missing cells or filter methods"
        )
    vals = p.values[keep]
    n, k = vals.shape
    if k == 1:
        ranks = np.ones_like(vals)
    else:
        from robustact.stats import rank_matrix

        # stats.rank_matrix wants >= 2 rows; ranking a duplicated single row is the same.
        ranks = rank_matrix(np.vstack([vals, vals])[: max(n, 2)], higher_is_better=higher_is_better)
        ranks = ranks[:n]
    kept = Pivot(
        p.row_keys,
        [r for r, ok in zip(p.rows, keep, strict=True) if ok],
        p.methods,
        vals,
        p.counts[keep],
        None if p.sds is None else p.sds[keep],
    )
    return RankTable(
        pivot=kept,
        ranks=ranks,
        avg_ranks=ranks.mean(axis=0),
        means=vals.mean(axis=0),
        higher_is_better=higher_is_better,
        dropped=[r for r, ok in zip(p.rows, keep, strict=True) if not ok],
    )


def comparison(table: RankTable, alpha: float = 0.05) -> MethodComparison | None:
    """Friedman / Iman-Davenport / Nemenyi over the table's rows, or None when N < 2 or k < 2."""
    n, k = table.pivot.values.shape
    if n < 2 or k < 2:
        return None
    from robustact.stats import compare_methods

    return compare_methods(
        table.pivot.values, table.pivot.methods, alpha, higher_is_better=table.higher_is_better
    )


# --------------------------------------------------------------------------- formatting


def fmt_key(v: Any) -> str:
    if v is None:
        return MISSING
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def fmt_rank(r: float) -> str:
    """A rank: "2" for integers, "1.5" for ties."""
    r = float(r)
    return str(round(r)) if math.isclose(r, round(r)) else f"{r:g}"


def header(key: str) -> str:
    """Readable column header of a record key ("cfg.dataset" -> "Dataset")."""
    if key in HEADERS:
        return HEADERS[key]
    name = key.removeprefix("cfg.").removesuffix(".name")  # cfg.dataset.name -> Dataset
    return name[:1].upper() + name[1:]


def label_rows(rows: list[tuple[Any, ...]]) -> list[list[str]]:
    """Row labels with repeated leading labels blanked, as in the seeds' tables."""
    out = []
    for i, row in enumerate(rows):
        cells = [fmt_key(v) for v in row]
        for j in range(len(row) - 1):
            if i > 0 and rows[i - 1][: j + 1] == row[: j + 1]:
                cells[j] = ""
        out.append(cells)
    return out


def fmt_score(v: float, digits: int = 2, *, percent: bool = False) -> str:
    """A score: a fraction as a percentage with one decimal ("97.3") when ``percent``,
    else the number with ``digits`` decimals."""
    return pct(v) if percent else f"{v:.{digits}f}"


def cell_strings(
    t: RankTable, digits: int, rank_digits: int, *, percent: bool = False
) -> tuple[list[list[str]], list[str]]:
    """Body cells "97.30 (1)" (with the pivot's sds: "97.30 ± 0.40 (1)") and the
    average-row cells "83.35 (1.60)" (with ``percent``, fractions as percentages)."""
    sds = t.pivot.sds if t.pivot.sds is not None else np.full_like(t.pivot.values, np.nan)

    def cell(v: float, sd: float, r: float) -> str:
        s = fmt_score(sd, digits, percent=percent) if math.isfinite(sd) else ""
        pm = f" ± {s}" if s else ""
        return f"{fmt_score(v, digits, percent=percent)}{pm} ({fmt_rank(r)})"

    body = [
        [cell(v, sd, r) for v, sd, r in zip(vrow, srow, rrow, strict=True)]
        for vrow, srow, rrow in zip(t.pivot.values, sds, t.ranks, strict=True)
    ]
    avg = [
        f"{fmt_score(m, digits, percent=percent)} ({a:.{rank_digits}f})"
        for m, a in zip(t.means, t.avg_ranks, strict=True)
    ]
    return body, avg


def avg_best(t: RankTable) -> np.ndarray:
    return np.isclose(t.avg_ranks, t.avg_ranks.min())


def markdown_escape(s: str) -> str:
    """Escapes the characters that would break a Markdown table cell, add emphasis or pass
    HTML through (``<script>`` becomes ``\\<script\\>``); line breaks become spaces, so a
    value cannot start a new heading or block."""
    s = " ".join(str(s).splitlines())
    for ch in "\\`*_|[]<>#":
        s = s.replace(ch, "\\" + ch)
    return s


def to_markdown(
    t: RankTable, *, digits: int = 2, rank_digits: int = 2, percent: bool = False
) -> str:
    """GitHub-flavoured Markdown table (best in bold, last row the averages); ``percent``
    shows fractions as percentages with one decimal."""
    body, avg = cell_strings(t, digits, rank_digits, percent=percent)
    nk = len(t.pivot.row_keys)
    head = [header(k) for k in t.pivot.row_keys] + list(t.pivot.methods)
    lines = [
        "| " + " | ".join(markdown_escape(h) for h in head) + " |",
        "|" + "---|" * nk + "---:|" * len(t.pivot.methods),
    ]
    best = t.best
    for labels, cells, brow in zip(label_rows(t.pivot.rows), body, best, strict=True):
        vals = [f"**{c}**" if b else c for c, b in zip(cells, brow, strict=True)]
        lines.append("| " + " | ".join([*map(markdown_escape, labels), *vals]) + " |")
    avg_cells = [f"**{c}**" if b else c for c, b in zip(avg, avg_best(t), strict=True)]
    lines.append("| " + " | ".join(["Average"] + [""] * (nk - 1) + avg_cells) + " |")
    return "\n".join(lines) + "\n"


def latex_escape(s: str) -> str:
    """Escapes LaTeX's special characters in user text (see `robustact.report.latex`)."""
    from robustact.report.latex import latex_escape as escape

    return escape(s)


def to_latex(
    t: RankTable,
    *,
    caption: str | None = None,
    label: str | None = None,
    digits: int = 2,
    rank_digits: int = 2,
    percent: bool = False,
    note: str = "",
) -> str:
    """A booktabs ``table`` float that fits ``\\textwidth`` (needs ``\\usepackage{booktabs,
    array}``; see `robustact.report.latex.rank_table_latex`). ``rank_digits`` is kept for
    compatibility (average ranks always show 2 decimals)."""
    from robustact.report.latex import rank_table_latex

    del rank_digits
    return rank_table_latex(
        t, caption=caption or "", label=label or "", digits=digits, percent=percent, note=note
    )


def to_csv(t: RankTable) -> str:
    """CSV: the row keys, then "<method>" (full-precision score) and "<method> rank" pairs;
    the last row holds the means and average ranks, labelled "Average"."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [header(k) for k in t.pivot.row_keys]
        + [c for m in t.pivot.methods for c in (m, f"{m} rank")]
    )
    for row, vrow, rrow in zip(t.pivot.rows, t.pivot.values, t.ranks, strict=True):
        labels = ["" if v is None else v for v in row]
        w.writerow(
            labels
            + [x for v, r in zip(vrow, rrow, strict=True) for x in (repr(float(v)), fmt_rank(r))]
        )
    avg = [
        x
        for m, a in zip(t.means, t.avg_ranks, strict=True)
        for x in (repr(float(m)), repr(float(a)))
    ]
    w.writerow(["Average"] + [""] * (len(t.pivot.row_keys) - 1) + avg)
    return buf.getvalue()


def statistics_text(t: RankTable, alpha: float = 0.05) -> str:
    """The statistics block: `MethodComparison.to_text()` or why it cannot be computed."""
    cmp = comparison(t, alpha)
    if cmp is None:
        n, k = t.pivot.values.shape
        return f"Statistics need at least 2 complete conditions and 2 methods (have {n} and {k})."
    return cmp.to_text()
