"""Ranking methods across blocks: the report's rank tables and their statistics.

As in the dissertation (Table 4.2, Appendix A; Demšar 2006), methods are ranked inside
each *block* and compared by their average ranks with Friedman / Iman-Davenport and the
Nemenyi critical difference. Here a block is a dataset (the ``block_keys``, e.g.
``cfg.dataset.name``) and, for robust accuracy, a threat model of that dataset
(dataset × ε, as Table 4.2 does with its two budgets); attacks are never blocks. One rank
table per metric, never pooled:

* clean accuracy (blocks: datasets);
* robust accuracy under each protocol — the paper protocol first, then the adaptive one —
  the per-point worst case over the protocol's attacks (its "worst" row) at each of its
  threat models; an attack with its own threat model (CW-L2 in an L-inf protocol) is a
  block of its own, once, however many ε it was stored at.

Each number is the mean over random seeds ± the sample sd (`robustact.stats.aggregate_seeds`);
a stochastic model's number is the mean over its R repeated runs (``accuracy_mean``), not
run 1. A method whose masking verdict is "masked" (†) or "suspect" (‡) is marked in every
table, and the statistics text says its rank rests on a masked number. With fewer than 2
blocks or 2 methods no test is run and the text says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from robustact.report.html import ProtocolTable
from robustact.report.summary import verdict_level
from robustact.report.tables import (
    Pivot,
    RankTable,
    comparison,
    fmt_key,
    header,
    markdown_escape,
    method_label,
    rank_table,
    to_latex,
    to_markdown,
)
from robustact.stats import aggregate_seeds

__all__ = [
    "MARKS",
    "block_records",
    "cd_figures",
    "headline_records",
    "masking_levels",
    "rank_methods",
    "ranking_latex",
    "ranking_markdown",
]

#: Mark of a method by its masking verdict level (1 suspect, 2 masked).
MARKS = {2: "†", 1: "‡"}
_LEVEL_WORDS = {2: "masked", 1: "suspect"}
_ROW = ("cell_id", "kind", "protocol", "attack", "item", "metric", "eps", "norm")


def headline_records(
    records: Sequence[Mapping[str, Any]], metric: str = "accuracy"
) -> list[dict[str, Any]]:
    """The result rows of ``metric``, one per (cell, row identity), each with its headline.

    A stochastic model's ``accuracy`` row takes the value of its ``accuracy_mean`` row
    (mean over the R repeated runs) and gets ``runs_sd`` (sd over the runs); a row stored
    twice in one cell (e.g. an ε-independent attack rerun at every ε) is kept once.
    """
    means: dict[tuple[Any, ...], float] = {}
    sds: dict[tuple[Any, ...], float] = {}
    stats = (f"{metric}_mean", f"{metric}_sd")
    for r in records:
        if r.get("kind", "result") == "result" and r.get("metric") in stats:
            key = (*(r.get(k) for k in _ROW[:5]), metric, r.get("eps"), r.get("norm"))
            (means if r["metric"].endswith("_mean") else sds)[key] = float(r["value"])
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in records:
        if r.get("kind", "result") != "result" or r.get("metric") != metric:
            continue
        key = tuple(r.get(k) for k in _ROW)
        if key in out:
            continue
        row = dict(r)
        if key in means:
            row["value"] = means[key]
            row["runs_sd"] = sds.get(key)
        out[key] = row
    return list(out.values())


def masking_levels(
    records: Sequence[Mapping[str, Any]], masking: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[Any, int]:
    """cell_id -> masking verdict level (0 no evidence, 1 suspect, 2 masked), the most
    severe over its ε: from the typed verdict rows, else the masking reports ``masking``
    (cell_id -> {"verdict": ...}), else the records' ``extra.masking.verdict``."""
    words = {"bad": 2, "warn": 1, "good": 0}
    levels: dict[Any, int] = {}

    def put(cid: Any, level: int) -> None:
        levels[cid] = max(level, levels.get(cid, 0))

    for r in records:
        if (r.get("kind"), r.get("attack"), r.get("metric")) == ("masking", "verdict", "level"):
            put(r.get("cell_id"), int(r["value"]))
    for cell, rep in (masking or {}).items():
        if cell not in levels and rep.get("verdict") is not None:
            put(cell, words.get(verdict_level(str(rep["verdict"])), 0))
    for r in records:
        v = r.get("extra.masking.verdict")
        if r.get("cell_id") not in levels and v is not None:
            put(r.get("cell_id"), words.get(verdict_level(str(v)), 0))
    return levels


def _threat(eps: Any, norm: Any) -> str:
    return f"{fmt_key(norm)} ε={fmt_key(eps)}" if eps is not None else fmt_key(norm)


def _robust_values(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, float, Any]]:
    """(threat label, value, runs_sd) of one cell under one protocol: the "worst" row per
    threat model (else the lowest attack), and each own-threat attack once."""
    worst = {(r.get("eps"), r.get("norm")): r for r in rows if r.get("attack") == "worst"}
    out = [(_threat(e, n), float(r["value"]), r.get("runs_sd")) for (e, n), r in worst.items()]
    by_threat: dict[tuple[Any, Any], list[Mapping[str, Any]]] = {}
    own: dict[tuple[Any, Any], Mapping[str, Any]] = {}
    for r in rows:
        threat = (r.get("eps"), r.get("norm"))
        if r.get("attack") in ("clean", "worst") or threat in worst:
            continue
        if worst:  # not in the worst case: its own threat model, counted once (not per ε)
            own.setdefault((r.get("attack"), r.get("norm")), r)
        else:
            by_threat.setdefault(threat, []).append(r)
    for (e, n), rs in by_threat.items():
        low = min(rs, key=lambda r: float(r["value"]))
        out.append((_threat(e, n), float(low["value"]), low.get("runs_sd")))
    for (attack, n), r in own.items():
        out.append((f"{attack} ({_threat(r.get('eps'), n)})", float(r["value"]), r.get("runs_sd")))
    return out


def block_records(
    records: Sequence[Mapping[str, Any]], *, protocol: str | None, method_key: Any,
    block_keys: Sequence[str], metric: str = "accuracy",
) -> list[dict[str, Any]]:  # fmt: skip
    """One record per (cell, block) of one rank table: ``method``, ``block`` (the block
    keys' values, plus the threat model for robust accuracy), ``value``, ``runs_sd``,
    the cell's ``cfg.*`` keys, ``cell_id`` and ``seed``.

    Args:
        records: store records (any kinds; only results of ``metric`` are used).
        protocol: the protocol whose robust accuracy is ranked; None for clean accuracy
            (the first stored protocol's clean row: every protocol measures the same).
        method_key: record key(s) naming the method (see `tables.method_label`).
        block_keys: record keys of a block, e.g. ("cfg.dataset.name",).
        metric: the metric ranked.
    """
    cells: dict[Any, list[dict[str, Any]]] = {}
    for r in headline_records(records, metric):
        cells.setdefault(r.get("cell_id"), []).append(r)
    out = []
    for cid, rows in cells.items():
        first = rows[0]
        base = {k: v for k, v in first.items() if k.startswith("cfg.")}
        base.update(cell_id=cid, seed=first.get("seed"), method=method_label(first, method_key))
        block = tuple(first.get(k) for k in block_keys) or ("all",)
        if protocol is None:
            clean = [r for r in rows if r.get("attack") == "clean"]
            vals = [("", float(clean[0]["value"]), clean[0].get("runs_sd"))] if clean else []
        else:
            vals = _robust_values([r for r in rows if r.get("protocol") == protocol])
        for threat, v, runs_sd in vals:
            blk = (*block, threat) if protocol is not None else block
            out.append({**base, "block": blk, "value": v, "runs_sd": runs_sd})
    return out


def _pivot(
    rows: Sequence[Mapping[str, Any]], row_keys: tuple[str, ...], scale: float,
    levels: Mapping[Any, int],
) -> tuple[Pivot, dict[str, int], list[str]]:  # fmt: skip
    """(blocks x methods) mean ± sd over seeds, the methods' verdict levels and notes.

    Method labels carry their mark (`MARKS`); cells that share a label and a block but
    differ by more than the seed are averaged, with a note naming the label.
    """
    aggs = aggregate_seeds(rows)
    level: dict[str, int] = {}
    for r in rows:
        lv = levels.get(r.get("cell_id"), 0)
        level[r["method"]] = max(lv, level.get(r["method"], 0))
    blocks = list(dict.fromkeys(a.record["block"] for a in aggs))
    methods = list(dict.fromkeys(a.record["method"] for a in aggs))
    cells: dict[tuple[int, int], list[Any]] = {}
    for a in aggs:
        i, j = blocks.index(a.record["block"]), methods.index(a.record["method"])
        cells.setdefault((i, j), []).append(a)
    runs_sd = {(r["method"], r["block"]): r.get("runs_sd") for r in rows}
    values = np.full((len(blocks), len(methods)), np.nan)
    sds = np.full_like(values, np.nan)
    counts = np.zeros(values.shape, dtype=np.int64)
    clashes: dict[str, set[str]] = {}
    for (i, j), group in cells.items():
        if len(group) > 1:  # labels too coarse: say which config keys tell them apart
            cfg = {k for a in group for k in a.record if k.startswith("cfg.")}
            clashes.setdefault(methods[j], set()).update(
                k for k in cfg if len({repr(a.record.get(k)) for a in group}) > 1
            )
        values[i, j] = float(np.mean([a.mean for a in group])) * scale
        counts[i, j] = sum(a.n_seeds for a in group)
        sd = group[0].sd if len(group) == 1 else None
        if sd is None and counts[i, j] == 1:  # one seed: a stochastic model's sd over runs
            sd = runs_sd.get((methods[j], blocks[i]))
        sds[i, j] = np.nan if sd is None else float(sd) * scale
    notes = [
        f"'{m}' stands for several configurations (differing in {', '.join(sorted(ks))}), "
        "averaged in the rank tables; name the methods with --method-key"
        for m, ks in clashes.items()
    ]
    labels = [f"{m} {MARKS[level[m]]}" if level.get(m, 0) in MARKS else m for m in methods]
    pv = Pivot(row_keys, [tuple(b) for b in blocks], labels, values, counts, sds)
    return pv, {lab: level.get(m, 0) for lab, m in zip(labels, methods, strict=True)}, notes


def _block_name(block: Sequence[Any]) -> str:
    return " / ".join(fmt_key(v) for v in block if v != "") or "all"


def _titles(protocols: Sequence[str], paper: str | None, metric: str) -> list[tuple[Any, str]]:
    """(protocol or None for clean, title) of each table: clean, paper, adaptive, others."""
    what = "accuracy" if metric == "accuracy" else metric
    order = [p for p in protocols if p == paper] + [p for p in protocols if p == "adaptive"]
    order += [p for p in protocols if p not in order]
    out: list[tuple[Any, str]] = [(None, f"Clean {what}")]
    for p in order:
        kind = f"{p} protocol" if p != paper else "paper protocol"
        if p == paper and p != "seed":  # a recipe's own name for it (seed-pgd, seed-brelu)
            kind += f" ({p} protocol)"
        out.append((p, f"Robust {what}, {kind}"))
    return out


def _marks_text(levels: Mapping[str, int], clean: bool) -> list[str]:
    """Footnotes for the marked methods (none when no method is marked)."""
    out = []
    for level, mark in MARKS.items():
        names = [m.removesuffix(f" {mark}") for m, lv in levels.items() if lv == level]
        if not names:
            continue
        word = _LEVEL_WORDS[level]
        rests = "their ranks rest" if len(names) > 1 else "its rank rests"
        why = (
            f"{rests} on a model whose robust evaluation is {word} (clean accuracy is not "
            "attacked; see the robust tables)"
            if clean
            else f"{rests} on a {word} number: the masking report finds "
            + ("evidence of" if level == 2 else "signs of")
            + " gradient masking, so this robust accuracy may overstate robustness"
        )
        out.append(f"{mark} masking verdict {word}: {', '.join(names)}; {why}.")
    return out


def _stats_text(t: RankTable, levels: Mapping[str, int], blocks: str, alpha: float,
                clean: bool) -> str:  # fmt: skip
    """Blocks and methods, then the tests or why none was run, then the footnotes."""
    n, k = t.pivot.values.shape
    lines = [f"Blocks: {n} ({blocks}); methods: {k}."]
    if t.dropped:
        gone = "; ".join(_block_name(b) for b in t.dropped)
        lines.append(f"Left out (some method not measured there): {gone}.")
    cmp = comparison(t, alpha)
    if k < 2:
        lines.append(f"Only one method ({t.pivot.methods[0]}): nothing to rank, no test run.")
    elif n < 2:
        lines.append(
            f"Only one block ({_block_name(t.pivot.rows[0])}): Friedman, Iman-Davenport and "
            "Nemenyi need at least 2 blocks, so no test is run and no CD diagram is drawn; "
            "the ranks above are of that block alone."
        )
    elif cmp is not None:
        lines.append(cmp.to_text())
    return "\n".join(lines + _marks_text(levels, clean))


def rank_methods(
    records: Sequence[Mapping[str, Any]],
    *,
    method_key: Any,
    block_keys: Sequence[str] = ("cfg.dataset.name",),
    protocols: Sequence[str] = ("seed", "adaptive"),
    paper_protocol: str | None = "seed",
    metric: str = "accuracy",
    alpha: float = 0.05,
    masking: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[list[ProtocolTable], list[str]]:
    """The rank tables of a report: clean accuracy, then robust accuracy per protocol.

    Args:
        records: store records (every kind: results are ranked, masking rows mark).
        method_key: record key(s) naming the methods.
        block_keys: record keys of a block (the dataset); robust tables add the threat model.
        protocols: the protocols whose robust accuracy gets a table.
        paper_protocol: which of them is the paper protocol (its table comes first).
        metric: the metric ranked (accuracies stored as fractions are shown in percent).
        alpha: significance level of the tests.
        masking: cell_id -> masking report, used where the records hold no verdict rows.

    Returns:
        (tables, notes): one `ProtocolTable` per metric with a score (``protocol`` "clean"
        or the protocol name), and one note per table that could not be built.
    """
    levels = masking_levels(records, masking)
    tables: list[ProtocolTable] = []
    notes: list[str] = []
    bkeys = tuple(block_keys) or ("block",)
    for proto, title in _titles(protocols, paper_protocol, metric):
        rows = block_records(records, protocol=proto, method_key=method_key,
                             block_keys=block_keys, metric=metric)  # fmt: skip
        if not rows:
            if proto is not None:
                notes.append(f"{title}: no {metric} rows under the {proto} protocol")
            continue
        row_keys = bkeys if proto is None else (*bkeys, "threat")
        scale = _percent_scale(rows, metric)
        pv, marks, clash = _pivot(rows, row_keys, scale, levels)
        notes += [n for n in clash if n not in notes]
        try:
            t = rank_table(pv)
        except ValueError as err:
            notes.append(f"{title}: {err}")
            continue
        what = " × ".join(_header_word(k) for k in row_keys)
        unit = " in %" if scale == 100.0 else ""
        caption = (f"{title}{unit}: mean ± sd over seeds (rank inside the block); blocks: "
                   f"{what}; last row: mean (average rank)")  # fmt: skip
        if any(r.get("runs_sd") is not None for r in rows):
            caption += "; stochastic models: mean over their repeated runs (± over runs at 1 seed)"
        stats = _stats_text(t, marks, what, alpha, clean=proto is None)
        tables.append(ProtocolTable(proto or "clean", t, stats, caption, title=title))
    return tables, notes


def _percent_scale(rows: Sequence[Mapping[str, Any]], metric: str) -> float:
    """100 for an accuracy or rate stored as fractions (shown in percent), else 1 (hand-made
    records already in percent, or another metric)."""
    fractions = all(0.0 <= float(r["value"]) <= 1.0 for r in rows)
    return 100.0 if fractions and ("accuracy" in metric or metric.endswith("rate")) else 1.0


def _header_word(key: str) -> str:
    return header(key).lower()


def ranking_markdown(tables: Sequence[ProtocolTable], notes: Sequence[str] = ()) -> list[str]:
    """The rank section of ``report.md``: per table a heading, caption, table, statistics."""
    md: list[str] = []
    for pt in tables:
        title = markdown_escape(pt.title or pt.protocol)
        caption = markdown_escape(pt.caption + (f". {pt.note}" if pt.note else ""))
        md += [f"## {title}", "", caption, ""]
        md += [to_markdown(pt.table, digits=1), "```text", pt.stats, "```", ""]
    return md + [f"> {markdown_escape(n)}" for n in notes]


def ranking_latex(tables: Sequence[ProtocolTable]) -> list[str]:
    """The rank tables of ``report.tex`` (booktabs), each with its statistics as comments."""
    tex: list[str] = []
    for pt in tables:
        label = "tab:" + "".join(c if c.isalnum() or c in "-." else "_" for c in pt.protocol)
        tex.append(to_latex(pt.table, caption=pt.caption, label=label, digits=1))
        tex += [f"% {line}" for line in pt.stats.splitlines()] + [""]
    return tex


def cd_figures(tables: Sequence[ProtocolTable], alpha: float = 0.05) -> dict[str, Figure]:
    """A critical-difference diagram per table with at least 2 blocks and 2 methods."""
    figs: dict[str, Figure] = {}
    for pt in tables:
        cmp = comparison(pt.table, alpha)
        if cmp is not None:
            figs[f"Critical difference, {pt.title or pt.protocol}"] = cmp.cd_diagram()
    return figs
