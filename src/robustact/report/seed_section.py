"""The report's "paper" part: each recipe's seed tables and figures, named by the seed's id.

A recipe declares what it reproduces through its paper file (``recipes/paper/<name>.yaml``):
every table that prints numbers becomes ``<id>.csv`` / ``<id>.tex`` and a section of
``report.md`` (heading "Table 4.2"), every figure ``<id>.png``. :func:`declared_outputs`
lists them; :func:`seed_section` builds them from the store's cells (grouped by the spec
that ran them); what a store cannot draw is listed with the reason.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from robustact.experiments.paper import PaperNumbers, list_paper_files, load_paper_numbers
from robustact.experiments.records import atomic_write_text
from robustact.report.cells import CellView
from robustact.report.plots import figure_to_data_uri, figure_to_png_bytes
from robustact.report.seed_figures import draw_figure
from robustact.report.seed_tables import (
    SeedTable,
    build_seed_tables,
    seed_heading,
    seed_table_csv,
    seed_table_html,
    seed_table_latex,
    seed_table_markdown,
)

__all__ = ["Declared", "SeedSection", "declared_outputs", "seed_section", "write_seed_files"]


@dataclass(frozen=True)
class Declared:
    """One seed table or figure a recipe reproduces and the files it is written to."""

    recipe: str
    id: str
    kind: str
    heading: str
    title: str
    files: tuple[str, ...]
    numbers_none: str | None = None


def declared_outputs(recipe: str) -> list[Declared]:
    """The seed tables (with numbers) and figures ``recipe``'s paper file declares."""
    if recipe not in list_paper_files():
        return []
    out = []
    for t in load_paper_numbers(recipe).tables:
        if t.kind == "table" and t.numbers:
            files: tuple[str, ...] = (f"{t.id}.csv", f"{t.id}.tex")
        elif t.kind == "figure":
            files = (f"{t.id}.png",)
        else:
            continue
        out.append(
            Declared(recipe, t.id, t.kind, seed_heading(t.id), t.title, files, t.numbers_none)
        )
    return out


@dataclass
class SeedSection:
    """Everything the report shows about the seeds: per recipe its tables and figures."""

    declared: list[Declared] = field(default_factory=list)
    tables: list[SeedTable] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    recipes: list[str] = field(default_factory=list)


def seed_section(cells: Sequence[CellView]) -> SeedSection:
    """The seed tables and figures of every recipe that ran cells of this store."""
    sec = SeedSection()
    by_spec: dict[str, list[CellView]] = {}
    for c in cells:
        if c.spec:
            by_spec.setdefault(c.spec, []).append(c)
    known = set(list_paper_files())
    for spec, group in by_spec.items():
        if spec not in known:
            continue
        paper: PaperNumbers = load_paper_numbers(spec)
        sec.recipes.append(spec)
        sec.declared += declared_outputs(spec)
        sec.tables += build_seed_tables(paper, group)
        for t in paper.tables:
            if t.kind != "figure":
                continue
            got = draw_figure(t.id, group, paper)
            if isinstance(got, Figure):
                sec.figures[t.id] = got
            else:
                sec.missing[t.id] = got
    return sec


def _caption(d: Declared) -> str:
    none = f" (the seed prints no numbers for it: {d.numbers_none})" if d.numbers_none else ""
    return f"{d.heading}: {d.title}{none}"


def seed_markdown(sec: SeedSection) -> list[str]:
    """report.md lines: the declared outputs, each seed table, each figure (or why not)."""
    if not sec.recipes:
        return []
    out = [
        "## Seed tables and figures",
        "",
        f"Recipes: {', '.join(sec.recipes)}. Reproduced here:",
        "",
    ]
    for d in sec.declared:
        status = f"not drawn: {sec.missing[d.id]}" if d.id in sec.missing else "written"
        out.append(f"- {d.heading} (`{d.id}`; {', '.join(d.files)}): {status}")
    out.append("")
    for t in sec.tables:
        out.append(seed_table_markdown(t))
    for d in sec.declared:
        if d.kind == "figure" and d.id in sec.figures:
            out += [f"### {d.heading}", "", f"![{d.heading}]({d.id}.png)", "", _caption(d), ""]
    return out


def seed_html(sec: SeedSection, dpi: int = 100) -> str:
    """The seed tables and figures as one HTML block (figures embedded as data URIs)."""
    if not sec.recipes:
        return ""
    e = html.escape
    out = ["<h2>Seed tables and figures</h2>", '<ul class="note">']
    for d in sec.declared:
        status = f"not drawn: {sec.missing[d.id]}" if d.id in sec.missing else "written"
        out.append(f"<li>{e(d.heading)} ({e(', '.join(d.files))}): {e(status)}</li>")
    out.append("</ul>")
    out += [seed_table_html(t) for t in sec.tables]
    for d in sec.declared:
        fig = sec.figures.get(d.id)
        if d.kind == "figure" and fig is not None:
            uri = figure_to_data_uri(fig, dpi=dpi)
            out.append(
                f'<figure data-seed-figure="{e(d.id)}"><img src="{e(uri)}" '
                f'alt="{e(d.heading)}"><figcaption>{e(_caption(d))}</figcaption></figure>'
            )
    return "\n".join(out)


def write_seed_files(
    sec: SeedSection,
    out: Path,
    formats: Sequence[str] = ("md", "tex", "csv", "html"),
    dpi: int = 100,
) -> dict[str, Path]:
    """Writes ``<id>.csv`` (format csv), ``<id>.tex`` (tex) per seed table and ``<id>.png``
    per drawn figure (md or html: report.md links them)."""
    written: dict[str, Path] = {}
    for t in sec.tables:
        if "csv" in formats:
            written[f"csv:{t.id}"] = atomic_write_text(out / f"{t.id}.csv", seed_table_csv(t))
        if "tex" in formats:
            written[f"tex:{t.id}"] = atomic_write_text(out / f"{t.id}.tex", seed_table_latex(t))
    for fid, fig in sec.figures.items() if {"md", "html"} & set(formats) else ():
        path = out / f"{fid}.png"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(figure_to_png_bytes(fig, dpi=dpi))
        tmp.replace(path)
        written[f"png:{fid}"] = path
    return written
