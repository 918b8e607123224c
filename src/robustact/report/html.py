"""One self-contained HTML page: inline CSS, tables as HTML, plots as base64 PNG data URIs.

Nothing is fetched from anywhere (no http://, no file:// references), so the file can be
mailed or archived alone. Every user string (method names, config values, verdicts,
captions) goes through `html.escape`. A small inline script records on <html> how many
images decoded (`data-images-loaded` / `data-images-total`) and how many tables have a
non-zero size (`data-tables-visible`), which the tests read back from headless Chromium.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure

from robustact.report.format import protocol_title
from robustact.report.headline import Cell, Headline, headline
from robustact.report.headline import caption as headline_caption
from robustact.report.plots import figure_to_data_uri
from robustact.report.summary import SummaryRow, verdict_level
from robustact.report.tables import (
    RankTable,
    avg_best,
    cell_strings,
    fmt_key,
    header,
    label_rows,
)

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px;
       color: #1b1f24; max-width: 1200px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; } h3 { font-size: 15px; }
.meta { color: #57606a; font-size: 12px; }
.side > section { margin-bottom: 18px; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums;
        max-width: 100%; }
th, td { border-bottom: 1px solid #d0d7de; padding: 3px 7px; text-align: right;
         white-space: nowrap; }
th { white-space: normal; overflow-wrap: break-word; vertical-align: bottom; }
td.lab { white-space: normal; overflow-wrap: break-word; }
table.ranks td.lab { white-space: nowrap; }
th { background: #f6f8fa; border-top: 2px solid #57606a; }
td.lab, th.lab { text-align: left; }
tr.avg td { border-top: 2px solid #57606a; font-style: italic; }
td.best { font-weight: 700; }
.verdict { padding: 1px 7px; border-radius: 9px; font-weight: 600; color: #fff; }
.verdict-bad { background: #cf222e; } .verdict-warn { background: #bf8700; }
.verdict-good { background: #1a7f37; } .verdict-unknown { background: #6e7781; }
.flags { color: #cf222e; font-size: 12px; white-space: normal; }
pre.stats { white-space: pre-wrap; background: #f6f8fa; padding: 8px 10px; font-size: 12px; }
figure { display: inline-block; margin: 10px 18px 10px 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { font-size: 12px; color: #57606a; }
.note { color: #57606a; font-size: 12px; }
td .ci { display: block; font-size: 11px; color: #57606a; }
@page { size: A4; margin: 12mm; }
/* Print (A4 at 12 mm margins: 703 CSS px) and narrow windows share one layout, so a
   703 px window shows what the PDF will: nothing cut, nothing scrolling sideways. */
@media print, (max-width: 760px) {
  body { margin: 0; max-width: none; font-size: 11px; }
  h1 { font-size: 18px; } h2 { font-size: 15px; margin-top: 16px; } h3 { font-size: 13px; }
  h2, h3, caption { break-after: avoid; }
  th, td { padding: 2px 4px; }
  td .ci { white-space: nowrap; }
  tr, figure, pre.stats { break-inside: avoid; }
  pre.stats { font-size: 10px; overflow-wrap: anywhere; }
  figure { display: block; margin: 8px 0; }
  figure img { max-width: 100%; height: auto; }
  .verdict { border: 1px solid #57606a; print-color-adjust: exact;
             -webkit-print-color-adjust: exact; }
}
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; }
  }
  document.documentElement.setAttribute("data-images-loaded", String(ok));
  document.documentElement.setAttribute("data-images-total", String(imgs.length));
  var tables = document.getElementsByTagName("table"), shown = 0;
  for (var j = 0; j < tables.length; j++) {
    if (tables[j].offsetWidth > 0 && tables[j].offsetHeight > 0) { shown++; }
  }
  document.documentElement.setAttribute("data-tables-visible", String(shown));
  // widest element beyond the viewport (0: nothing needs a horizontal scroll)
  var over = 0, all = document.body.getElementsByTagName("*"), vw = window.innerWidth;
  for (var k = 0; k < all.length; k++) {
    var r = all[k].getBoundingClientRect();
    over = Math.max(over, Math.ceil(r.right - vw), all[k].scrollWidth - all[k].clientWidth);
  }
  document.documentElement.setAttribute("data-overflow-px", String(Math.max(0, over)));
});
"""


@dataclass(frozen=True)
class ProtocolTable:
    """A rank table of one protocol (or "clean") with its statistics text, for the
    side-by-side view; ``title`` names the metric (default: "<protocol> protocol")."""

    protocol: str
    table: RankTable
    stats: str
    caption: str = ""
    title: str = ""
    percent: bool = False
    note: str = ""


def esc(value: object) -> str:
    """HTML-escaped text of any value (quotes included)."""
    return html.escape(str(value), quote=True)


def rank_table_html(
    t: RankTable, *, caption: str = "", digits: int = 2, percent: bool = False, note: str = ""
) -> str:
    """A rank table as an HTML <table> (best bold, average row last); ``percent`` shows
    fractions as percentages with one decimal; ``note`` goes under it (n, intervals)."""
    body, avg = cell_strings(t, digits, 2, percent=percent)
    heads = [f'<th class="lab">{esc(header(k))}</th>' for k in t.pivot.row_keys]
    heads += [f"<th>{esc(m)}</th>" for m in t.pivot.methods]
    out = ['<table class="ranks">']
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    out.append("<thead><tr>" + "".join(heads) + "</tr></thead><tbody>")
    for labels, cells, best in zip(label_rows(t.pivot.rows), body, t.best, strict=True):
        tds = [f'<td class="lab">{esc(x)}</td>' for x in labels]
        tds += [
            f'<td class="best">{esc(c)}</td>' if b else f"<td>{esc(c)}</td>"
            for c, b in zip(cells, best, strict=True)
        ]
        out.append("<tr>" + "".join(tds) + "</tr>")
    nk = len(t.pivot.row_keys)
    tds = [f'<td class="lab" colspan="{nk}">Average (mean, average rank)</td>']
    tds += [
        f'<td class="best">{esc(c)}</td>' if b else f"<td>{esc(c)}</td>"
        for c, b in zip(avg, avg_best(t), strict=True)
    ]
    out.append('<tr class="avg">' + "".join(tds) + "</tr></tbody></table>")
    if note:
        out.append(f'<p class="note">{esc(note)}</p>')
    if t.dropped:
        missing = "; ".join(" / ".join(fmt_key(v) for v in r) for r in t.dropped)
        out.append(f'<p class="note">Left out (some method not measured): {esc(missing)}</p>')
    return "\n".join(out)


def verdict_html(verdict: str | None, flagged: Sequence[str] = ()) -> str:
    """A coloured verdict badge plus the names of the flagged checks."""
    if verdict is None:
        return '<span class="verdict verdict-unknown">not checked</span>'
    level = verdict_level(verdict)
    out = f'<span class="verdict verdict-{level}" data-level="{level}">{esc(verdict)}</span>'
    if flagged:
        out += f' <span class="flags">{esc(", ".join(flagged))}</span>'
    return out


def _headline_cell(c: Cell) -> str:
    if c.kind == "verdict":
        verdict = None if c.level == "unknown" and c.text == "not checked" else c.text
        flagged = [x for x in c.note.split(", ") if x]
        return f'<td class="lab">{verdict_html(verdict, flagged)}</td>'
    if c.kind == "label":
        return f'<td class="lab">{esc(c.text)}</td>'
    ci = f'<span class="ci">{esc(c.note)}</span>' if c.note else ""
    return f"<td>{esc(c.text)}{ci}</td>"


def headline_html(h: Headline) -> str:
    """The headline table (model | clean | paper protocol | adaptive | gap | verdict), each
    accuracy with its 95 % interval under it, and the caption."""
    kinds = [c.kind for c in h.body[0]] if h.body else ["label"] * len(h.head)
    out = ['<table class="summary"><thead><tr>']
    out += [
        f'<th class="lab">{esc(x)}</th>' if k != "num" else f"<th>{esc(x)}</th>"
        for x, k in zip(h.head, kinds, strict=True)
    ]
    out.append("</tr></thead><tbody>")
    for row in h.body:
        out.append("<tr>" + "".join(_headline_cell(c) for c in row) + "</tr>")
    out.append("</tbody></table>")
    out.append(f'<p class="note">{esc(headline_caption(h))}</p>')
    return "\n".join(out)


def summary_html(
    rows: Sequence[SummaryRow], group_keys: Sequence[str], counts: Sequence[int | None] = ()
) -> str:
    """The paper-protocol-vs-adaptive table (`headline_html` of ``rows``; ``counts``: the
    n of each row, for the intervals)."""
    return headline_html(headline(rows, list(counts) or [None] * len(rows), group_keys))


def render_html(
    *,
    title: str,
    meta: str = "",
    summary: str = "",
    protocol_tables: Sequence[ProtocolTable] = (),
    figures: Mapping[str, Figure | str] | None = None,
    dpi: int = 100,
    sections: Sequence[str] = (),
    figure_notes: Sequence[str] = (),
) -> str:
    """Assembles the page.

    Args:
        title: page title (escaped).
        meta: one line under the title (escaped).
        summary: HTML of the summary table (already escaped, from `summary_html`).
        protocol_tables: shown side by side (seed protocol next to adaptive protocol).
        figures: caption -> Figure (embedded as a PNG data URI) or a ready data URI.
        dpi: resolution of the embedded PNGs.
        sections: further blocks of ready HTML (seed tables and figures, masking and
            diagnostics), placed after the summary.
        figure_notes: lines under the figures (e.g. which plot had no data).
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{_CSS}</style>",
        f"<script>{_SCRIPT}</script>",
        "</head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    if meta:
        parts.append(f'<p class="meta">{esc(meta)}</p>')
    if summary:
        parts += ["<h2>Paper protocol vs adaptive protocol</h2>", summary]
        parts.append(
            '<p class="note">Robust accuracy is the "worst" attack when recorded, else the '
            "lowest single-attack accuracy.</p>"
        )
    parts += list(sections)
    if protocol_tables:
        parts.append('<h2>Rank tables</h2><div class="side">')
        for pt in protocol_tables:
            parts.append(f'<section data-protocol="{esc(pt.protocol)}">')
            name = pt.title or protocol_title(pt.protocol)
            parts.append(f"<h3>{esc(name[:1].upper() + name[1:])}</h3>")
            parts.append(
                rank_table_html(
                    pt.table, caption=pt.caption, digits=1, percent=pt.percent, note=pt.note
                )
            )
            parts.append(f'<pre class="stats">{esc(pt.stats)}</pre></section>')
        parts.append("</div>")
    if figures or figure_notes:
        parts.append("<h2>Figures</h2>")
        parts += [f'<p class="note">{esc(n)}</p>' for n in figure_notes]
    if figures:
        for caption, fig in figures.items():
            uri = fig if isinstance(fig, str) else figure_to_data_uri(fig, dpi=dpi)
            if not uri.startswith("data:image/"):
                raise ValueError(f"figure {caption!r} must be a Figure or a data:image URI")
            parts.append(
                f'<figure><img src="{esc(uri)}" alt="{esc(caption)}">'
                f"<figcaption>{esc(caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
