"""The headline table, once for every format: model | clean | paper protocol | adaptive |
gap | verdict.

:func:`headline` turns the :class:`~robustact.report.summary.SummaryRow` list into plain
cells (percentages with one decimal and their 95 % Wilson interval, the gap in percentage
points, the verdict with its flagged checks); Markdown, HTML and LaTeX only lay them out.
Columns that hold one value for every row (the dataset, eps, norm, n) leave the table and
become its ``context`` line, which keeps the table narrow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from robustact.report.format import pct, pp, wilson
from robustact.report.summary import SummaryRow, verdict_level
from robustact.report.tables import fmt_key, header, markdown_escape, method_label, select

__all__ = ["Cell", "Headline", "caption", "headline", "headline_markdown", "point_counts"]


@dataclass(frozen=True)
class Cell:
    """One headline cell.

    Attributes:
        text: what the cell shows ("92.3", "+12.1", "masked", a method name).
        note: a second, smaller line (the interval "89.0–94.5", the flagged checks).
        kind: "label" (left-aligned text), "num" (right-aligned) or "verdict".
        level: the verdict's colour class ("bad", "warn", "good", "unknown").
        low, high: the interval in percent (None without one), for machine readers.
    """

    text: str
    note: str = ""
    kind: str = "num"
    level: str = ""
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Headline:
    """The table: ``head`` (column titles), ``body`` (rows of cells), ``context`` (the
    values shared by every row, e.g. ``["Dataset: digits", "ε = 0.1", "n = 359"]``)."""

    head: list[str]
    body: list[list[Cell]]
    context: list[str]


def point_counts(
    records: Iterable[Mapping[str, Any]],
    rows: Sequence[SummaryRow],
    *,
    method_key: str | Sequence[str],
    group_keys: Sequence[str],
    metric: str = "accuracy",
) -> list[int | None]:
    """The number of test points behind each summary row (its records' largest ``n``;
    None where the records carry no n)."""
    best: dict[tuple[Any, ...], int] = {}
    for r in select(records, {"metric": metric}):
        n = r.get("n")
        if n is None:
            continue
        key = (tuple(r.get(k) for k in group_keys), method_label(r, method_key))
        best[key] = max(best.get(key, 0), int(n))
    return [best.get((r.group, r.method)) for r in rows]


def _acc(value: float | None, n: int | None) -> Cell:
    ci = wilson(value, n)
    if ci is None:
        return Cell(pct(value))
    lo, hi = 100.0 * ci[0], 100.0 * ci[1]
    return Cell(pct(value), f"{lo:.1f}–{hi:.1f}", low=round(lo, 1), high=round(hi, 1))


def _verdict(r: SummaryRow) -> Cell:
    text = "not checked" if r.verdict is None else r.verdict
    return Cell(text, ", ".join(r.flagged), "verdict", verdict_level(r.verdict))


def _shared(values: Sequence[Any]) -> bool:
    return len(set(values)) == 1


def headline(
    rows: Sequence[SummaryRow], counts: Sequence[int | None], group_keys: Sequence[str]
) -> Headline:
    """The headline table of ``rows`` (``counts``: the n of each row, `point_counts`)."""
    if len(counts) != len(rows):
        raise ValueError(f"need one count per row, got {len(counts)} for {len(rows)} rows")
    context: list[str] = []
    keep_group = [
        i for i in range(len(group_keys)) if not rows or not _shared([r.group[i] for r in rows])
    ]
    for i, k in enumerate(group_keys):
        if i not in keep_group:
            context.append(f"{header(k)}: {fmt_key(rows[0].group[i])}")
    extra = {
        "ε": [fmt_key(r.eps) for r in rows],
        "Norm": [fmt_key(r.norm) for r in rows],
        "n": [fmt_key(n) for n in counts],
    }
    shown = [h for h, vals in extra.items() if not rows or not _shared(vals)]
    for h, vals in extra.items():
        if h not in shown:
            context.append(f"{h}: {vals[0]}" if h == "Norm" else f"{h} = {vals[0]}")
    head = [header(group_keys[i]) for i in keep_group] + ["Model", *shown]
    head += ["Clean", "Paper protocol", "Adaptive", "Gap (pp)", "Verdict"]
    body: list[list[Cell]] = []
    for r, n in zip(rows, counts, strict=True):
        cells = [Cell(fmt_key(r.group[i]), kind="label") for i in keep_group]
        cells.append(Cell(r.method, kind="label"))
        cells += [Cell(extra[h][len(body)]) for h in shown]
        cells += [_acc(r.clean, n), _acc(r.robust_seed, n), _acc(r.robust_adaptive, n)]
        cells += [Cell(pp(r.gap)), _verdict(r)]
        body.append(cells)
    return Headline(head, body, context)


def caption(
    h: Headline, interval: str = "under each accuracy its 95 % Wilson score interval"
) -> str:
    """The sentence under the table: the shared values, units and where the interval is
    (``interval``: how the format shows it)."""
    shared = "; ".join(h.context)
    lead = f"{shared}. " if shared else ""
    return (
        f"{lead}Accuracies in %, {interval}; paper protocol: the source "
        "papers' attacks; adaptive: attacks aimed at masked gradients (BPDA, EOT, margin "
        "losses, gradient-free search); gap = paper protocol − adaptive in percentage points "
        "(large: the paper protocol overstates robustness)."
    )


def headline_markdown(h: Headline) -> str:
    """The table in GitHub Markdown, the interval in parentheses after each accuracy."""
    lines = ["| " + " | ".join(markdown_escape(x) for x in h.head) + " |"]
    kinds = [c.kind for c in h.body[0]] if h.body else ["label"] * len(h.head)
    lines.append("|" + "".join("---:|" if k == "num" else "---|" for k in kinds))
    for row in h.body:
        cells = []
        for c in row:
            if c.kind == "verdict":
                text = c.text.upper() + (f" ({c.note})" if c.note else "")
            else:
                text = c.text + (f" ({c.note})" if c.note else "")
            cells.append(markdown_escape(text))
        lines.append("| " + " | ".join(cells) + " |")
    return (
        "\n".join(lines)
        + "\n\n"
        + markdown_escape(caption(h, "(95 % Wilson score interval)"))
        + "\n"
    )
