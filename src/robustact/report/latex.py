r"""LaTeX tables that fit ``\textwidth``, and the standalone ``report.tex``.

Nothing is scaled (no ``\resizebox``): a table is set in ``\small`` with narrow column
gaps; a cell may hold several lines (the 95 % interval goes under its percentage, in
``\scriptsize``); long labels wrap in a ragged-right ``p`` column that may break after
``(``, ``,``, ``=``, ``+`` and ``_``; long method names become M1, M2, ... with a legend;
and when the value columns still do not fit they are split into several tabulars stacked
in the same float, the label columns repeated. Widths are estimated from the text with
generous per-character widths of Computer Modern at 9 pt, so an estimate is never
smaller than what pdfTeX sets (the tests compile the output and look for "Overfull").

Every text is plain text here and escaped when the table is written (`latex_escape`,
which also turns Greek letters and the common symbols into math).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from robustact.report.format import CI_NOTE, protocol_title
from robustact.report.headline import Headline
from robustact.report.headline import caption as headline_caption
from robustact.report.tables import RankTable, avg_best, cell_strings, fmt_key, header, label_rows

if TYPE_CHECKING:
    from robustact.report.html import ProtocolTable

#: ``\textwidth`` of the article class at 10 pt (the standalone report's layout), in pt.
TEXTWIDTH_PT = 345.0
#: ``\tabcolsep`` inside our tables, in pt (LaTeX's default is 6 pt).
TABCOLSEP_PT = 4.0
#: The body font size of the tables (``\small`` at 10 pt), in pt.
FONT_PT = 9.0
#: ``\scriptsize`` at 10 pt, for the second lines (intervals, flagged checks).
NOTE_PT = 7.0
#: Method names longer than this (in pt at the table font) become M1, M2, ... in headers.
MAX_HEADER_PT = 60.0

_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}
_SYMBOLS = {
    "ε": r"$\varepsilon$",
    "λ": r"$\lambda$",
    "–": "--",
    "—": "---",
    "±": r"$\pm$",
    "∞": r"$\infty$",
    "≤": r"$\le$",
    "≥": r"$\ge$",
    "×": r"$\times$",
    "→": r"$\to$",
    "·": r"$\cdot$",
    "−": "-",
    "…": r"\ldots{}",
    "µ": r"$\mu$",
}
_BREAK_AFTER = "(,=+_/"


def _char(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if ch in _SYMBOLS:
        return _SYMBOLS[ch]
    if ord(ch) < 128:
        return ch
    name = unicodedata.name(ch, "")
    if name.startswith(("GREEK SMALL LETTER ", "GREEK CAPITAL LETTER ")):
        word = name.split()[-1].lower().replace("lamda", "lambda")
        if "CAPITAL" in name:
            word = word.capitalize()
        return rf"$\{word}$"
    if ord(ch) < 256 and ch.isalpha():
        return ch  # Latin-1 letters: the utf8 input encoding sets them as accented letters
    return "?"  # anything pdfLaTeX cannot set without extra packages


def latex_escape(text: object, *, breakable: bool = False) -> str:
    """``text`` as LaTeX source: special characters escaped, Greek letters and common
    symbols as math, other characters outside Latin-1 as "?"; with ``breakable``, a line
    may break after ``(``, ``,``, ``=``, ``+``, ``_`` and ``/`` (for wrapped columns)."""
    out = []
    for ch in " ".join(str(text).splitlines()):
        out.append(_char(ch))
        if breakable and ch in _BREAK_AFTER:
            out.append(r"\allowbreak{}")
    return "".join(out)


def text_width(text: str, size: float = FONT_PT, *, bold: bool = False) -> float:
    """An upper estimate of the width of ``text`` set in Computer Modern at ``size`` pt."""
    em = 0.0
    for ch in text:
        if ch in "mwMW%@—" or ch.isupper():
            em += 0.85
        elif ch in "ilj.,:;'!|()[] ":
            em += 0.36
        else:
            em += 0.58
    return em * size * (1.12 if bold else 1.0)


def _fragments(text: str) -> list[str]:
    """The pieces of ``text`` no line break can split (see `latex_escape`)."""
    out, cur = [], ""
    for ch in text:
        if ch == " ":
            out.append(cur)
            cur = ""
            continue
        cur += ch
        if ch in _BREAK_AFTER:
            out.append(cur)
            cur = ""
    return [f for f in [*out, cur] if f]


@dataclass(frozen=True)
class TexCell:
    """One table cell: plain-text lines (the first in the table font), an optional note
    line in ``\\scriptsize`` under them (an interval, flagged checks), bold or not."""

    lines: tuple[str, ...]
    note: str = ""
    bold: bool = False

    @staticmethod
    def of(text: str, note: str = "", bold: bool = False) -> TexCell:
        """A one-line cell."""
        return TexCell((text,), note, bold)

    def width(self) -> float:
        """Estimated natural width in pt."""
        w = [text_width(t, bold=self.bold) for t in self.lines]
        return max([*w, text_width(self.note, NOTE_PT)] if self.note else w)

    def min_width(self) -> float:
        """The widest piece that cannot be broken (for wrapped columns), in pt."""
        pieces = [text_width(f, bold=self.bold) for t in self.lines for f in _fragments(t)]
        pieces += [text_width(f, NOTE_PT) for f in _fragments(self.note)]
        return max(pieces, default=0.0)


@dataclass(frozen=True)
class TexTable:
    """A table before layout.

    Attributes:
        head: one header cell per column.
        body: rows of cells (as many as ``head``).
        kinds: per column "l", "r" or "p" (left, right, wrapped ragged-right).
        n_labels: the first columns are row labels, repeated in every split part.
        footer: rows after a ``\\midrule`` (the average row of a rank table).
        caption, label, legend: the float's caption, ``\\label`` and a note under it.
    """

    head: Sequence[TexCell]
    body: Sequence[Sequence[TexCell]]
    kinds: Sequence[str]
    n_labels: int = 1
    footer: Sequence[Sequence[TexCell]] = ()
    caption: str = ""
    label: str = ""
    legend: str = ""
    widths: dict[int, float] = field(default_factory=dict)


def _column_widths(t: TexTable, width_pt: float) -> list[float]:
    """Estimated width of every column; wrapped ("p") columns get at most their share of
    what the other columns leave, never less than their longest unbreakable piece."""
    rows = [t.head, *t.body, *t.footer]
    out = [max(r[j].width() for r in rows) for j in range(len(t.kinds))]
    wrap = [j for j, k in enumerate(t.kinds) if k == "p"]
    if not wrap:
        return out
    floors = {j: max(r[j].min_width() for r in rows) for j in wrap}
    for j in wrap:
        out[j] = max(floors[j], min(out[j], t.widths.get(j, 0.3 * width_pt)))
    fixed = sum(w for j, w in enumerate(out) if j not in wrap)
    room = width_pt - fixed - 2 * TABCOLSEP_PT * len(out)
    wanted = sum(out[j] for j in wrap)
    if wanted > room > 0:
        for j in wrap:
            out[j] = max(floors[j], out[j] * room / wanted)
    return out


def _parts(t: TexTable, widths: Sequence[float], width_pt: float) -> list[list[int]]:
    """The value columns of each stacked tabular, so that each fits ``width_pt``."""
    pad = 2 * TABCOLSEP_PT
    base = sum(widths[: t.n_labels]) + pad * t.n_labels
    parts: list[list[int]] = [[]]
    used = base
    for j in range(t.n_labels, len(widths)):
        need = widths[j] + pad
        if parts[-1] and used + need > width_pt:
            parts.append([])
            used = base
        parts[-1].append(j)
        used += need
    return parts


def _cell_tex(c: TexCell, kind: str, top: bool) -> str:
    """The LaTeX of one cell (a nested tabular when it has several lines)."""
    lines = [latex_escape(x, breakable=kind == "p") for x in c.lines]
    if c.bold:
        lines = [rf"\textbf{{{x}}}" if x else x for x in lines]
    if c.note:
        lines.append(rf"{{\scriptsize {latex_escape(c.note, breakable=kind == 'p')}}}")
    if kind == "p":
        return r" \newline ".join(lines)
    if len(lines) == 1:
        return lines[0]
    pos = "t" if top else "b"
    return rf"\begin{{tabular}}[{pos}]{{@{{}}{kind}@{{}}}}" + r" \\ ".join(lines) + r"\end{tabular}"


def _tabular(t: TexTable, cols: Sequence[int], widths: Sequence[float]) -> list[str]:
    """One tabular of the label columns plus the value columns ``cols``."""
    idx = [*range(t.n_labels), *cols]
    spec = "".join(
        rf">{{\raggedright\arraybackslash}}p{{{widths[j]:.1f}pt}}"
        if t.kinds[j] == "p"
        else t.kinds[j]
        for j in idx
    )

    def row_tex(row: Sequence[TexCell], top: bool = True) -> str:
        return " & ".join(_cell_tex(row[j], t.kinds[j], top) for j in idx) + r" \\"

    out = [rf"\begin{{tabular}}{{@{{}}{spec}@{{}}}}", r"\toprule", row_tex(t.head, False)]
    out += [r"\midrule", *(row_tex(r) for r in t.body)]
    if t.footer:
        out += [r"\midrule", *(row_tex(r) for r in t.footer)]
    out += [r"\bottomrule", r"\end{tabular}"]
    return out


def render_table(t: TexTable, width_pt: float = TEXTWIDTH_PT) -> str:
    r"""A ``table`` float (booktabs and array packages) no wider than ``width_pt``."""
    if any(len(r) != len(t.kinds) for r in [t.head, *t.body, *t.footer]):
        raise ValueError("every row of a TexTable needs one cell per column")
    widths = _column_widths(t, width_pt)
    out = [r"\begin{table}[htbp]", r"\centering", r"\small",
           rf"\setlength{{\tabcolsep}}{{{TABCOLSEP_PT:g}pt}}"]  # fmt: skip
    if t.caption:
        out.append(rf"\caption{{{latex_escape(t.caption)}}}")
    if t.label:
        # a label is a control-sequence name: only letters, digits and ":-." are safe
        out.append(rf"\label{{{re.sub(r'[^A-Za-z0-9:.-]', '-', t.label)}}}")
    for i, cols in enumerate(_parts(t, widths, width_pt)):
        if i:
            out.append(r"\par\medskip")
        out += _tabular(t, cols, widths)
    if t.legend:
        out.append(
            r"\par\smallskip{\raggedright\footnotesize "
            + latex_escape(t.legend, breakable=True)
            + r"\par}"
        )
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def short_names(names: Sequence[str], prefix: str = "M") -> tuple[list[str], str]:
    """Header names and a legend: the names themselves when all are short, else
    ``M1, M2, ...`` and the legend ``"M1: <name>; M2: <name>"``."""
    if all(text_width(n, bold=True) <= MAX_HEADER_PT for n in names):
        return list(names), ""
    short = [f"{prefix}{i + 1}" for i in range(len(names))]
    legend = "; ".join(f"{s}: {n}" for s, n in zip(short, names, strict=True))
    return short, legend


def fits(widths: Sequence[float], width_pt: float = TEXTWIDTH_PT) -> bool:
    """True when columns of these widths (plus their gaps) fit ``width_pt``."""
    return sum(widths) + 2 * TABCOLSEP_PT * len(widths) <= width_pt + 1e-9 and all(
        math.isfinite(w) for w in widths
    )


# --------------------------------------------------------------------------- tables


def _head(text: str) -> TexCell:
    """A header cell, one word per line when it has several words."""
    return TexCell(tuple(text.split(" ")) if " " in text else (text,))


def headline_latex(h: Headline, *, caption: str = "", label: str = "") -> str:
    """The headline table (model | clean | paper protocol | adaptive | gap | verdict) as a
    float that fits ``\\textwidth``; the interval under each accuracy."""
    model = h.head.index("Model")
    kinds = ["l" if j < model else "r" for j in range(len(h.head))]
    kinds[model] = "p"
    kinds[-1] = "p"  # the verdict and its flagged checks wrap
    body = [[TexCell.of(c.text, c.note) for c in row] for row in h.body]
    t = TexTable(
        [_head(x) for x in h.head], body, kinds, n_labels=model + 1,
        caption=caption, label=label, legend=CI_NOTE + ".",
    )  # fmt: skip
    return render_table(t)


def _condition_lines(t: RankTable, keep: Sequence[int], row: tuple[Any, ...]) -> tuple[str, ...]:
    """Header lines naming one condition (transposed rank table)."""
    keys = t.pivot.row_keys
    lines = []
    for i in keep:
        v = row[i]
        if keys[i] == "attack" or (v is None and keys[i] != "eps"):
            lines.append(fmt_key(v))
        elif v is not None:
            lines.append(f"{header(keys[i])}={fmt_key(v)}")
    return tuple(lines) or ("all",)


def _rank_parts(t: RankTable, digits: int, percent: bool) -> tuple[Any, ...]:
    body, avg = cell_strings(t, digits, 2, percent=percent)
    keys = t.pivot.row_keys
    keep = [i for i in range(len(keys)) if len({r[i] for r in t.pivot.rows}) > 1] or [0]
    const = [f"{header(keys[i])}: {fmt_key(t.pivot.rows[0][i])}" for i in range(len(keys))
             if i not in keep and t.pivot.rows[0][i] is not None]  # fmt: skip
    return body, avg, keep, const


def _seed_style(t: RankTable, body: Any, avg: Any, keep: Sequence[int]) -> TexTable:
    """Conditions as rows, methods as columns (the seeds' layout)."""
    names, legend = short_names(t.pivot.methods)
    rows = [tuple(r[i] for i in keep) for r in t.pivot.rows]
    head = [TexCell.of(header(t.pivot.row_keys[i])) for i in keep]
    head += [TexCell.of(n) for n in names]
    out = []
    for labels, cells, best in zip(label_rows(rows), body, t.best, strict=True):
        labs = [TexCell.of(x) for x in labels]
        out.append(labs + [TexCell.of(c, bold=bool(b)) for c, b in zip(cells, best, strict=True)])
    foot = [TexCell.of("Average")] + [TexCell.of("")] * (len(keep) - 1)
    foot += [TexCell.of(c, bold=bool(b)) for c, b in zip(avg, avg_best(t), strict=True)]
    kinds = ["l"] * len(keep) + ["r"] * len(names)
    return TexTable(head, out, kinds, n_labels=len(keep), footer=[foot], legend=legend)


def _transposed(t: RankTable, body: Any, avg: Any, keep: Sequence[int]) -> TexTable:
    """Methods as rows, conditions as columns, the average last."""
    head = [TexCell.of("Method")]
    head += [TexCell(_condition_lines(t, keep, r)) for r in t.pivot.rows]
    head.append(TexCell(("Average",)))
    out = []
    for j, m in enumerate(t.pivot.methods):
        cells = [TexCell.of(body[i][j], bold=bool(t.best[i, j])) for i in range(len(body))]
        out.append([TexCell.of(m), *cells, TexCell.of(avg[j], bold=bool(avg_best(t)[j]))])
    kinds = ["p"] + ["r"] * (len(t.pivot.rows) + 1)
    return TexTable(head, out, kinds, n_labels=1, widths={0: 0.25 * TEXTWIDTH_PT})


def rank_table_latex(
    t: RankTable, *, caption: str = "", label: str = "", digits: int = 2,
    percent: bool = False, note: str = "",
) -> str:  # fmt: skip
    """A rank table as a float that fits ``\\textwidth``: the seeds' layout (conditions as
    rows) or, when that needs more stacked parts, methods as rows. Rows shared by every
    condition (one dataset) move to the caption; ``percent`` shows fractions as %."""
    body, avg, keep, const = _rank_parts(t, digits, percent)
    options = [_seed_style(t, body, avg, keep), _transposed(t, body, avg, keep)]
    parts = [len(_parts(o, _column_widths(o, TEXTWIDTH_PT), TEXTWIDTH_PT)) for o in options]
    best = options[0] if parts[0] <= parts[1] else options[1]
    text = "; ".join([caption, *const]) if const and caption else caption
    legend = " ".join(x for x in (note, best.legend) if x)
    chosen = TexTable(best.head, best.body, best.kinds, best.n_labels, best.footer,
                      text, label, legend, best.widths)  # fmt: skip
    return render_table(chosen)


# --------------------------------------------------------------------------- document

PREAMBLE = r"""\documentclass[10pt]{article}
\usepackage[utf8]{inputenc}
\usepackage{booktabs}
\usepackage{array}
\usepackage{graphicx}
% let tall tables share a page with text instead of floating to pages of their own
\renewcommand{\topfraction}{0.9}
\renewcommand{\textfraction}{0.07}
\renewcommand{\floatpagefraction}{0.8}
"""


def standalone(title: str, meta: str, sections: Sequence[tuple[str, str]]) -> str:
    """A complete article (``pdflatex report.tex``): ``sections`` are (heading, LaTeX
    body) pairs; the bodies are the table floats and paragraphs."""
    out = [PREAMBLE.rstrip(), rf"\title{{{latex_escape(title)}}}", r"\date{}", r"\author{}"]
    out += [r"\begin{document}", r"\maketitle", r"\noindent{\raggedright\small "
            + latex_escape(meta, breakable=True) + r"\par}", ""]  # fmt: skip
    for heading, body in sections:
        out += [rf"\section*{{{latex_escape(heading)}}}", body.rstrip(), r"\clearpage", ""]
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def paragraphs(text: str) -> str:
    """Plain lines as ragged-right paragraphs in ``\\small`` (e.g. the statistics)."""
    lines = [latex_escape(ln.strip(), breakable=True) for ln in text.splitlines() if ln.strip()]
    return r"{\raggedright\small " + r"\par ".join(lines) + r"\par}" + "\n"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "protocol"


def report_files(
    title: str,
    meta: str,
    head: Headline | None,
    tables: Sequence[ProtocolTable],
    notes: Sequence[str] = (),
) -> dict[str, tuple[str, str]]:
    """The LaTeX of a report: kind -> (file name, text). "tex" is ``report.tex``, a
    complete article with every table; "tex:headline" and "tex:<protocol>" are the
    table floats alone (``\\input`` them; they need booktabs and array)."""
    files: dict[str, tuple[str, str]] = {}
    sections: list[tuple[str, str]] = []
    if head is not None and head.body:
        cap = "Paper protocol vs adaptive protocol. " + headline_caption(head)
        tex = headline_latex(head, caption=cap, label="tab:headline")
        files["tex:headline"] = ("table_headline.tex", tex)
        sections.append(("Paper protocol vs adaptive protocol", tex))
    for pt in tables:
        tex = rank_table_latex(pt.table, caption=pt.caption, label=f"tab:{_slug(pt.protocol)}",
                               digits=1, percent=pt.percent, note=pt.note)  # fmt: skip
        files[f"tex:{pt.protocol}"] = (f"table_{_slug(pt.protocol)}.tex", tex)
        title_p = protocol_title(pt.protocol)
        sections.append((title_p[:1].upper() + title_p[1:], tex + "\n" + paragraphs(pt.stats)))
    if notes:
        sections.append(("Notes", paragraphs("\n".join(notes))))
    files["tex"] = ("report.tex", standalone(title, meta, sections))
    return files
