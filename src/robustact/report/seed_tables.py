"""The seeds' tables with our numbers beside the published ones.

For every table of ``recipes/paper/<recipe>.yaml`` that a store's cells reproduce, one line
per (seed row, seed column): the paper's number, our accuracy under the paper protocol
(the protocol whose attacks cover the table's columns; its header names them), under the
adaptive protocol, the worst case over everything we ran, and the masking verdict. Cells
are matched to seed rows by the paper file's ``match:`` blocks
(`robustact.experiments.paper_join.row_for_config`, quick stand-ins applied). Rendered as
Markdown, LaTeX, CSV and HTML; accuracies are shown as percentages with one decimal.
"""

from __future__ import annotations

import csv
import html
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from robustact.evaluate.rows import MetricRow
from robustact.experiments.paper import Column, PaperNumbers, PaperTable
from robustact.experiments.paper_join import no_row_reason, row_for_config
from robustact.report.cells import CellView, adaptive_protocol, mean, paper_protocols
from robustact.report.html import verdict_html

__all__ = [
    "SeedLine",
    "SeedTable",
    "attack_matches",
    "build_seed_tables",
    "seed_heading",
    "seed_table_csv",
    "seed_table_html",
    "seed_table_latex",
    "seed_table_markdown",
]

_PREFIXES = {"brelu_": "BReLU ", "seed001_": "Hybrid paper "}
_CLEAN = ("clean", "best_val_accuracy")
_AVERAGE = "average_accuracy"
_SEVERITY = {"masked": 3, "suspect": 2, "no evidence": 1}
WORST_HOW = "lowest accuracy of any protocol's per-point worst case or single attack"


def seed_heading(table_id: str) -> str:
    """ "table4_2" -> "Table 4.2", "brelu_fig4" -> "BReLU Figure 4"."""
    prefix = ""
    for p, name in _PREFIXES.items():
        if table_id.startswith(p):
            prefix, table_id = name, table_id[len(p) :]
    m = re.fullmatch(r"(table|fig)(\d+(?:_\d+)*)", table_id)
    if not m:
        return prefix + table_id
    kind = "Table" if m.group(1) == "table" else "Figure"
    return f"{prefix}{kind} {m.group(2).replace('_', '.')}"


def _norm_label(s: str) -> str:
    return re.sub(r"[\s_()]+", "", s.upper())


def attack_matches(column_attack: str, label: str) -> bool:
    """Whether our attack ``label`` is the seed's ``column_attack``.

    "PGD" matches "PGD-10" and "PGD-20"; "PGD-7" only "PGD-7"; "CW" matches "CW-L2";
    a BPDA/EOT variant ("PGD-10+BPDA") never matches a plain seed attack.
    """
    want, got = _norm_label(column_attack), _norm_label(label)
    return got == want or (got.startswith(want + "-") and "+" not in got)


@dataclass(frozen=True)
class SeedLine:
    """One (seed row, seed column): the paper's number as printed and ours as fractions."""

    row: str
    column: str
    paper: str | None
    paper_fraction: float | None
    ours: float | None
    adaptive: float | None
    worst: float | None
    verdict: str | None


@dataclass
class SeedTable:
    """A seed table beside our numbers (``diagnostic``: no attack columns, one "ours")."""

    id: str
    heading: str
    title: str
    protocol: str | None
    attacks: tuple[str, ...]
    adaptive: str | None
    lines: list[SeedLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    diagnostic: bool = False

    @property
    def protocol_header(self) -> str:
        """ "paper protocol (FGSM, PGD-10)": which attacks our paper-protocol column holds."""
        if self.diagnostic:
            return "ours"
        return f"paper protocol ({', '.join(self.attacks) or 'clean only'})"

    def header(self) -> list[str]:
        """Column headers of every rendering."""
        if self.diagnostic:
            return ["row", "column", "paper", "ours", "verdict"]
        adaptive = (
            f"adaptive ({self.adaptive})" if self.adaptive not in (None, "adaptive") else "adaptive"
        )
        return ["row", "column", "paper", self.protocol_header, adaptive, "worst case", "verdict"]


def _attack_labels(cells: Sequence[CellView], protocol: str) -> list[str]:
    return list(
        dict.fromkeys(
            r.attack
            for c in cells
            for r in c.rows
            if r.kind == "result"
            and r.protocol == protocol
            and r.attack not in ("clean", "worst")
            and r.metric in ("accuracy", "cumulative_accuracy")
        )
    )


def _choose_protocol(table: PaperTable, cells: Sequence[CellView]) -> tuple[str | None, list[str]]:
    """The paper protocol whose attacks cover most of the table's attack columns."""
    wanted = [c.attack for c in table.columns if c.attack]
    best: tuple[int, str | None, list[str]] = (-1, None, [])
    for p in paper_protocols(cells):
        labels = _attack_labels(cells, p)
        score = sum(any(attack_matches(a, lab) for lab in labels) for a in wanted)
        if score > best[0]:
            best = (score, p, labels)
    return best[1], best[2]


def _eps_map(table: PaperTable, cells: Sequence[CellView], protocol: str) -> dict[float, float]:
    """Seed column eps -> measured eps: exact where measured, else by position (a quick
    run at other budgets) when the counts agree."""
    want = sorted({c.eps for c in table.columns if c.eps is not None})
    have = sorted({e for c in cells for e, n in c.threats(protocol) if n.lower() == "linf"})
    exact = {w: h for w in want for h in have if math.isclose(w, h)}
    if len(exact) == len(want) or len(want) != len(have):
        return exact
    return dict(zip(want, have, strict=True))


def _at(row: MetricRow, eps: float | None, norm: str) -> bool:
    """The row is at this threat model (eps None: an unbounded attack of that norm)."""
    if row.norm != norm:
        return False
    if eps is None or row.eps is None:
        return eps is None and row.eps is None
    return math.isclose(float(row.eps), eps)


def _robust_values(
    cells: Sequence[CellView],
    protocol: str,
    adaptive: str | None,
    labels: Sequence[str],
    eps: float | None,
    norm: str,
) -> tuple[float | None, float | None, float | None, str | None]:
    """(paper protocol, adaptive, worst case, verdict) at one threat, mean over cells."""
    ours, adap, worst, verdicts = [], [], [], []
    for c in cells:
        res = [
            r for r in c.rows if r.kind == "result" and r.metric == "accuracy" and _at(r, eps, norm)
        ]
        own = [r.value for r in res if r.protocol == protocol and r.attack in labels]
        if not own:  # a cascade protocol stores each attack's cumulative accuracy only
            own = [
                r.value
                for r in c.select(kind="result", protocol=protocol, metric="cumulative_accuracy")
                if r.attack in labels and _at(r, eps, norm)
            ]
        ours.append(mean(own))
        adap.append(mean(r.value for r in res if r.protocol == adaptive and r.attack == "worst"))
        worst.append(min((r.value for r in res), default=None))
        verdicts.append(c.verdict(eps))
    return mean(ours), mean(adap), mean(worst), _most_severe(verdicts)


def _most_severe(verdicts: Sequence[str | None]) -> str | None:
    found = [v for v in verdicts if v is not None]
    return max(found, key=lambda v: _SEVERITY.get(v, 0)) if found else None


def _threats(
    cells: Sequence[CellView],
    protocol: str,
    labels: Sequence[str],
    col: Column,
    eps_map: dict[float, float],
) -> list[tuple[float | None, str]]:
    """The threat models a robust column is read at (an attack with its own threat model,
    CW-L2 in an L-inf protocol, at its own, whatever eps the seed's column names)."""
    found = dict.fromkeys(
        (None if r.eps is None else float(r.eps), str(r.norm))
        for c in cells
        for r in c.rows
        if r.kind == "result" and r.protocol == protocol and r.attack in labels and r.norm
    )
    if col.eps is None:
        return list(found)
    target = eps_map.get(col.eps)
    hits = [
        t for t in found if t[0] is not None and target is not None and math.isclose(t[0], target)
    ]
    own = [t for t in found if t[1].lower() != "linf"]
    return hits or (own if len(own) == len(found) else [])


def _eps(eps: float | None) -> str:
    return "unbounded" if eps is None else f"{eps:g}"


def _diagnostic_value(cells: Sequence[CellView], col: Column) -> float | None:
    """A negative-unit-ratio column ("Layer 2 Post"): the k-th layer's pre/post ratio."""
    m = re.search(r"(\d+)", col.label)
    metric = col.metric.rsplit("_", 1)[-1]
    vals = []
    for c in cells:
        rows = c.select(kind="diagnostic", attack="negative_unit_ratio", metric=metric)
        layers = list(dict.fromkeys(r.item for r in rows))
        k = int(m.group(1)) - 1 if m else 0
        if 0 <= k < len(layers):
            vals.append(mean(r.value for r in rows if r.item == layers[k]))
    return mean(vals)


def _row_lines(
    t: SeedTable,
    table: PaperTable,
    row: str,
    cells: Sequence[CellView],
    eps_map: dict[float, float],
) -> list[SeedLine]:
    """The lines of one seed row (one per column; one per eps where a column has none)."""
    out: list[SeedLine] = []
    labels_by_col: dict[str, list[str]] = {}
    for col in table.columns:
        n = next((x for x in table.numbers if x.row == row and x.column == col.label), None)
        pv, pf = (n.value, n.fraction) if n else (None, None)
        if col.metric in _CLEAN:
            v = mean(c.clean() for c in cells)
            out.append(
                SeedLine(
                    row, col.label, pv, pf, v, v, v, _most_severe([c.verdict() for c in cells])
                )
            )
        elif col.metric.startswith("negative_unit_ratio"):
            v = _diagnostic_value(cells, col)
            out.append(SeedLine(row, col.label, pv, pf, v, None, None, None))
        elif col.attack is not None and t.protocol is not None:
            labels = [lab for lab in t.attacks if attack_matches(col.attack, lab)]
            labels_by_col[col.label] = labels
            threats = _threats(cells, t.protocol, labels, col, eps_map)
            if not threats:
                out.append(SeedLine(row, col.label, pv, pf, None, None, None, None))
            for eps, norm in threats:
                name = col.label if len(threats) == 1 else f"{col.label} (ε={_eps(eps)})"
                ours, adap, worst, ver = _robust_values(
                    cells, t.protocol, t.adaptive, labels, eps, norm
                )
                out.append(SeedLine(row, name, pv, pf, ours, adap, worst, ver))
        elif col.metric == _AVERAGE:
            others = [x for x in out if x.row == row]
            o, a, w = (
                _all_mean([getattr(x, k) for x in others]) for k in ("ours", "adaptive", "worst")
            )
            out.append(
                SeedLine(row, col.label, pv, pf, o, a, w, _most_severe([x.verdict for x in others]))
            )
        else:
            out.append(SeedLine(row, col.label, pv, pf, None, None, None, None))
    return out


def _all_mean(values: Sequence[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else mean(values)


def _seed_table(paper: PaperNumbers, table: PaperTable, cells: Sequence[CellView]) -> SeedTable:
    proto, labels = _choose_protocol(table, cells)
    diagnostic = not any(c.attack for c in table.columns) and not any(
        c.metric in _CLEAN for c in table.columns
    )
    t = SeedTable(
        table.id,
        seed_heading(table.id),
        table.title,
        proto,
        tuple(labels),
        adaptive_protocol(cells),
        diagnostic=diagnostic,
    )
    by_row: dict[str, list[CellView]] = {}
    unmatched: list[str] = []
    stand_in = False
    for c in cells:
        row = row_for_config(paper, table.id, c.config, quick=True)
        if row is None:
            why = no_row_reason(paper, table.id, c.config, quick=True)
            unmatched.append(f"{c.label} ({why or 'no seed row matches this cell'})")
            continue
        by_row.setdefault(row, []).append(c)
        stand_in |= row_for_config(paper, table.id, c.config) is None
    eps_map = _eps_map(table, cells, proto) if proto else {}
    for r in table.rows:
        if r.label in by_row:
            t.lines += _row_lines(t, table, r.label, by_row[r.label], eps_map)
    _notes(t, paper, table, by_row, unmatched, stand_in, eps_map)
    return t


def _notes(
    t: SeedTable,
    paper: PaperNumbers,
    table: PaperTable,
    by_row: dict[str, list[CellView]],
    unmatched: list[str],
    stand_in: bool,
    eps_map: dict[float, float],
) -> None:
    if stand_in:
        swaps = "; ".join(f"{k}: {v}" for k, v in paper.quick_stand_ins.items())
        t.notes.append(f"quick run: cells stand in for the seed's rows ({swaps})")
    moved = {a: b for a, b in eps_map.items() if not math.isclose(a, b)}
    if moved:
        t.notes.append(
            "seed ε read at our ε: " + ", ".join(f"{a:g} -> {b:g}" for a, b in moved.items())
        )
    if any(c.metric.startswith("best_val") for c in table.columns):
        t.notes.append(
            "the seed's numbers are best-over-epochs validation accuracies; ours "
            "are test-split accuracies of the final model"
        )
    if not t.diagnostic:
        t.notes.append(
            f"worst case: {WORST_HOW} at that ε (an upper bound on the per-point "
            "worst case over everything we ran)"
        )
    missing = [r.label for r in table.rows if r.label not in by_row]
    if missing:
        t.notes.append(f"{len(missing)} seed rows not run here: " + ", ".join(missing))
    if unmatched:
        t.notes.append("cells without a seed row: " + "; ".join(unmatched))
    if table.note:
        t.notes.append(f"seed table: {table.note}")
    if not by_row:
        t.notes.append("no cell of this store reproduces a row of this table")


def build_seed_tables(paper: PaperNumbers, cells: Sequence[CellView]) -> list[SeedTable]:
    """One `SeedTable` per table of ``paper`` that prints numbers (figures: seed_figures)."""
    return [_seed_table(paper, t, cells) for t in paper.tables if t.kind == "table" and t.numbers]


def _pct(v: float | None) -> str:
    return "not run" if v is None else f"{100.0 * v:.1f}"


def _cells(t: SeedTable, ln: SeedLine) -> list[str]:
    paper = ln.paper if ln.paper is not None else "–"
    if t.diagnostic:
        return [ln.row, ln.column, paper, _pct(ln.ours), ln.verdict or "not checked"]
    return [
        ln.row,
        ln.column,
        paper,
        _pct(ln.ours),
        _pct(ln.adaptive),
        _pct(ln.worst),
        ln.verdict or "not checked",
    ]


def seed_table_markdown(t: SeedTable) -> str:
    """The table as Markdown: a heading, the seed's title, the lines and the notes."""

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    out = [f"## {t.heading}", "", f"{esc(t.title)} (%, paper as printed)", ""]
    out += ["| " + " | ".join(t.header()) + " |", "|" + "---|" * len(t.header())]
    out += ["| " + " | ".join(esc(x) for x in _cells(t, ln)) + " |" for ln in t.lines]
    if not t.lines:
        out.append("| " + " | ".join(["not run"] * len(t.header())) + " |")
    out += [""] + [f"> {esc(n)}" for n in t.notes] + [""]
    return "\n".join(out)


def seed_table_csv(t: SeedTable) -> str:
    """The table as CSV (fractions as stored; empty where not run)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "table",
            "row",
            "column",
            "paper",
            "paper_fraction",
            "protocol",
            "ours",
            "adaptive",
            "worst_case",
            "verdict",
        ]
    )
    for ln in t.lines:
        w.writerow(
            [
                t.id,
                ln.row,
                ln.column,
                ln.paper or "",
                "" if ln.paper_fraction is None else repr(ln.paper_fraction),
                t.protocol_header,
                *("" if v is None else repr(float(v)) for v in (ln.ours, ln.adaptive, ln.worst)),
                ln.verdict or "",
            ]
        )
    return buf.getvalue()


def _tex(s: str) -> str:
    return re.sub(r"([&%$#_{}])", r"\\\1", s).replace("ε", r"$\epsilon$")


def seed_table_latex(t: SeedTable) -> str:
    """The table as a booktabs LaTeX table labelled ``tab:<id>``."""
    head = t.header()
    out = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{ll" + "r" * (len(head) - 3) + "l}",
        r"\toprule",
        " & ".join(_tex(h) for h in head) + r" \\",
        r"\midrule",
    ]
    out += [" & ".join(_tex(x) for x in _cells(t, ln)) + r" \\" for ln in t.lines]
    out += [
        r"\bottomrule",
        r"\end{tabular}",
        rf"\caption{{{_tex(t.heading)}: {_tex(t.title)}}}",
        rf"\label{{tab:{t.id}}}",
        r"\end{table}",
        "",
    ]
    return "\n".join(out)


def seed_table_html(t: SeedTable) -> str:
    """The table as an HTML section (escaped; ``data-seed-table`` names its id)."""
    e = html.escape
    out = [
        f'<section class="seed" data-seed-table="{e(t.id)}"><h3>{e(t.heading)}</h3>',
        f'<p class="note">{e(t.title)} (%, paper as printed)</p>',
        '<table class="seed"><thead><tr>',
    ]
    out += [
        f'<th class="lab">{e(h)}</th>' if i < 2 else f"<th>{e(h)}</th>"
        for i, h in enumerate(t.header())
    ]
    out.append("</tr></thead><tbody>")
    for ln in t.lines:
        cs = _cells(t, ln)
        tds = [
            f'<td class="lab">{e(x)}</td>' if i < 2 else f"<td>{e(x)}</td>"
            for i, x in enumerate(cs[:-1])
        ]
        tds.append(f'<td class="lab">{verdict_html(ln.verdict)}</td>')
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    out += [f'<p class="note">{e(n)}</p>' for n in t.notes]
    out.append("</section>")
    return "\n".join(out)
