"""The report's masking and diagnostics sections, read from typed rows (not ranked).

Masking checks (kind ``masking``) and diagnostics (kind ``diagnostic``) are not
accuracies under a protocol: they get their own tables, one line per method and threat
(masking) or per method, diagnostic, item and metric (diagnostics), averaged over seeds.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from robustact.report.cells import CellView, mean

__all__ = ["Lines", "diagnostics_lines", "lines_html", "lines_markdown", "masking_lines"]

Lines = tuple[list[str], list[list[str]]]


def masking_lines(cells: Sequence[CellView]) -> Lines:
    """(header, rows): method, ε, verdict, flagged checks (most severe over seeds)."""
    out: dict[tuple[str, float | None], tuple[list[str], set[str]]] = {}
    for c in cells:
        eps_seen = dict.fromkeys(r.eps for r in c.select(kind="masking", attack="verdict"))
        for eps in eps_seen:
            v = c.verdict(None if eps is None else float(eps))
            flagged = {
                str(r.item)
                for r in c.select(kind="masking", attack="check", metric="flagged", eps=eps)
                if r.value > 0.5
            }
            got = out.setdefault((c.label, eps), ([], set()))
            got[0].append(v or "not checked")
            got[1].update(flagged)
    order = {"masked": 0, "suspect": 1, "no evidence": 2}
    rows = [
        [
            label,
            "–" if eps is None else f"{eps:g}",
            min(vs, key=lambda v: order.get(v, 3)),
            ", ".join(sorted(fl)) or "none",
        ]
        for (label, eps), (vs, fl) in out.items()
    ]
    return ["method", "ε", "verdict", "flagged checks"], rows


def diagnostics_lines(cells: Sequence[CellView]) -> Lines:
    """(header, rows): method, diagnostic, item, metric, ε, value (mean over seeds)."""
    acc: dict[tuple[str, str, str, str, str], list[float]] = {}
    for c in cells:
        for r in c.select(kind="diagnostic"):
            eps = "–" if r.eps is None else f"{r.eps:g}"
            acc.setdefault((c.label, r.attack, r.item or "–", r.metric, eps), []).append(r.value)
    rows = [[*k, f"{mean(v):.4g}"] for k, v in acc.items()]
    return ["method", "diagnostic", "item", "metric", "ε", "value"], rows


def lines_markdown(title: str, lines: Lines, note: str = "") -> list[str]:
    """A Markdown section (nothing when there are no rows)."""
    head, rows = lines
    if not rows:
        return []
    out = [f"## {title}", ""] + ([note, ""] if note else [])
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(x.replace("|", "\\|") for x in r) + " |" for r in rows]
    return [*out, ""]


def lines_html(title: str, lines: Lines, note: str = "") -> str:
    """An HTML section (empty when there are no rows)."""
    head, rows = lines
    if not rows:
        return ""
    e = html.escape
    out = [f"<h2>{e(title)}</h2>"] + ([f'<p class="note">{e(note)}</p>'] if note else [])
    out.append(
        "<table><thead><tr>"
        + "".join(f'<th class="lab">{e(h)}</th>' for h in head)
        + "</tr></thead><tbody>"
    )
    out += ["<tr>" + "".join(f'<td class="lab">{e(x)}</td>' for x in r) + "</tr>" for r in rows]
    out.append("</tbody></table>")
    return "\n".join(out)
