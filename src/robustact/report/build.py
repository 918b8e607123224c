"""`build_report`: every report file from a results store (or its records) in one call."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from robustact.experiments.records import atomic_write_text
from robustact.experiments.store import ResultStore
from robustact.report import html as html_mod
from robustact.report.cells import CellView, cells_from_records, cells_from_store, label_cells
from robustact.report.curves import curve_figures
from robustact.report.export import long_csv_text, long_rows, write_parquet
from robustact.report.format import is_proportion, precision_note, protocol_title
from robustact.report.headline import Headline, headline, headline_markdown, point_counts
from robustact.report.labels import with_method_labels
from robustact.report.latex import report_files
from robustact.report.plots import (
    plot_accuracy_vs_eps,
    plot_accuracy_vs_lambda,
    series_from_records,
)
from robustact.report.ranking import cd_figures, rank_methods, ranking_markdown
from robustact.report.sections import (
    diagnostics_lines,
    lines_html,
    lines_markdown,
    masking_lines,
)
from robustact.report.seed_section import (
    SeedSection,
    seed_html,
    seed_markdown,
    seed_section,
    write_seed_files,
)
from robustact.report.summary import SummaryRow, protocol_summary
from robustact.report.tables import (
    fmt_key,
    markdown_escape,
    method_label,
    to_csv,
)

FORMATS = ("md", "tex", "csv", "html")
#: Config keys tried, in order, to name the methods when `method_key` is not given.
METHOD_KEYS = (
    "cfg.method",
    "cfg.model",
    "cfg.activation",
    "cfg.activation.name",
    "cfg.objective",
    "cfg.training",
    "cfg.defense",
)
#: Config keys of the D-ReLU penalty weight (runner records carry ``cfg.objective.lam``).
LAMBDA_KEYS = ("cfg.objective.lam", "cfg.lambda", "cfg.lam", "cfg.penalty")


def evaluation_records(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records of protocol evaluations (typed-row ``kind`` "result"; records without a
    kind, e.g. hand-made ones, count as results). Masking checks, diagnostics and training
    numbers have their own kinds and are not ranked."""
    return [r for r in records if r.get("kind", "result") == "result"]


def _distinct(records: Sequence[Mapping[str, Any]], key: str) -> list[Any]:
    return list(dict.fromkeys(r.get(key) for r in records))


def summary_protocols(present: Sequence[str]) -> tuple[str, str]:
    """The (seed-style, adaptive) protocol pair of the side-by-side summary.

    "seed" when present, else the first protocol named ``seed...`` (``seed-brelu``, a
    recipe's ``seed-pgd7``), else the first that is neither adaptive, masking nor
    AutoAttack; "adaptive", else the first protocol with "adaptive" in its name.
    """
    others = [p for p in present if "adaptive" not in p and p not in ("masking", "autoattack")]
    seed = next(
        (p for p in present if p == "seed"),
        next((p for p in present if p.startswith("seed")), others[0] if others else "seed"),
    )
    adaptive = (
        "adaptive"
        if "adaptive" in present
        else next((p for p in present if "adaptive" in p), "adaptive")
    )
    return seed, adaptive


def guess_method_key(records: Sequence[Mapping[str, Any]]) -> str | tuple[str, ...]:
    """ "cfg.method", else "method" (see `with_method_labels`), else the `METHOD_KEYS` that
    vary (joined in the label)."""
    present = [k for k in METHOD_KEYS if any(k in r for r in records)]
    if "cfg.method" in present:
        return "cfg.method"
    if any("method" in r for r in records):
        return "method"
    varying = [k for k in present if len(_distinct(records, k)) > 1]
    if varying:
        return varying[0] if len(varying) == 1 else tuple(varying)
    if present:
        return present[0]
    cfg = sorted({k for r in records for k in r if k.startswith("cfg.")})
    raise KeyError(f"cannot tell which config key names the method; pass method_key= from {cfg}")


_Loaded = tuple[list[dict[str, Any]], dict[str, Mapping[str, Any]], str, list[CellView]]


def _load(source: Any) -> _Loaded:
    """Records, cell_id -> masking report, a provenance line and the cells (typed rows)."""
    if isinstance(source, (str, os.PathLike)):
        with ResultStore(source, read_only=True) as store:  # a report never writes its input
            return _load(store)
    if isinstance(source, ResultStore):
        cells = source.cells()
        masking = {
            c.cell_id: c.extra["masking"] for c in cells if isinstance(c.extra.get("masking"), dict)
        }
        versions = sorted({f"{c.robustact_version} {c.git_commit or ''}".strip() for c in cells})
        meta = f"{len(cells)} finished cells from {source.path.name}; code: {', '.join(versions)}"
        return source.records(include_extra=True), masking, meta, cells_from_store(source)
    records = [dict(r) for r in source]
    views = cells_from_records(records)
    return records, {}, f"{len(_distinct(records, 'cell_id'))} cells", views


def _summary_csv(rows: Sequence[SummaryRow], group_keys: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            *group_keys,
            "method",
            "eps",
            "norm",
            "clean",
            "robust_seed",
            "robust_adaptive",
            "gap",
            "verdict",
            "flagged",
        ]
    )
    for r in rows:
        nums = [r.eps, r.clean, r.robust_seed, r.robust_adaptive, r.gap]
        e, c, s, a, g = ("" if v is None else repr(float(v)) for v in nums)
        w.writerow(
            [
                *("" if v is None else v for v in r.group),
                r.method,
                e,
                r.norm or "",
                c,
                s,
                a,
                g,
                r.verdict or "",
                ";".join(r.flagged),
            ]
        )
    return buf.getvalue()


def _eps_figures(rows: Sequence[SummaryRow], scale: float = 100.0) -> dict[str, Figure]:
    """Accuracy vs eps per group when at least two budgets were measured (clean at eps 0);
    ``scale`` turns the stored fractions into the axis' percent."""
    figs: dict[str, Figure] = {}
    for grp in dict.fromkeys(r.group for r in rows):
        sub = [r for r in rows if r.group == grp and r.eps is not None]
        if len({r.eps for r in sub}) < 2:
            continue
        seed: dict[str, dict[float, float]] = {}
        adaptive: dict[str, dict[float, float]] = {}
        for r in sub:
            for store, val in ((seed, r.robust_seed), (adaptive, r.robust_adaptive)):
                if val is not None:
                    pts = store.setdefault(r.method, {})
                    pts[float(r.eps)] = scale * val  # type: ignore[arg-type]
                    if r.clean is not None:
                        pts.setdefault(0.0, scale * r.clean)
        name = " / ".join(fmt_key(g) for g in grp)
        if seed:
            figs[f"Accuracy vs ε ({name})"] = plot_accuracy_vs_eps(seed, adaptive or None)
    return figs


def build_report(
    source: Any,
    out_dir: str | os.PathLike[str],
    formats: Sequence[str] = FORMATS,
    *,
    method_key: str | Sequence[str] | None = None,
    row_keys: Sequence[str] | None = None,
    metric: str = "accuracy",
    protocols: Sequence[str] | None = None,
    lambda_key: str | None = None,
    title: str = "robustact report",
    alpha: float = 0.05,
    figures: Mapping[str, Figure] | None = None,
    dpi: int = 100,
) -> dict[str, Path]:
    """Writes the report files (each atomically: temp file + os.replace).

    Args:
        source: a `ResultStore`, the path of its SQLite file, or its `records()`.
        out_dir: folder for the files (created).
        formats: any of "md" (report.md), "tex" (report.tex), "csv" (records.csv,
            summary.csv, table_<protocol>.csv), "html" (report.html, self-contained).
        method_key: record key(s) naming the methods (default: `guess_method_key`).
        row_keys: keys of a rank-table block (default: the dataset if recorded); robust
            tables add the threat model (see `robustact.report.ranking`).
        metric: the metric tabulated and ranked.
        protocols: protocols to tabulate (default: all, "seed" then "adaptive" first).
        lambda_key: config key of the penalty weight for an accuracy-vs-lambda plot
            (default: the first of `LAMBDA_KEYS` that varies).
        title: report title.
        alpha: significance level of the statistics.
        figures: extra figures (caption -> Figure), e.g. layer growth or cap trajectories.
        dpi: resolution of the PNGs embedded in the HTML.

    Returns:
        Written paths by kind: "md", "tex", "html", "csv" (records), "csv:summary",
        "csv:<protocol>".
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown report formats {bad}; choose from {FORMATS}")
    records, masking, meta, cells = _load(source)
    if not records:
        raise ValueError("no finished cells to report; run the experiment first")
    if method_key is None:
        records = with_method_labels(records)
    mkey = method_key if method_key is not None else guess_method_key(records)
    groups = [k for k in ("cfg.dataset", "cfg.dataset.name") if any(k in r for r in records)]
    # runner records also hold masking, training and diagnostic rows: not accuracies to rank
    results = evaluation_records(records)
    present = _distinct(results, "protocol")
    protos = list(protocols) if protocols is not None else _protocol_order(present)

    seed_p, adaptive_p = summary_protocols(present)
    tables, notes = rank_methods(
        records, method_key=mkey, block_keys=groups if row_keys is None else row_keys,
        protocols=protos, paper_protocol=seed_p,
        metric=metric, alpha=alpha, masking=masking,
    )  # fmt: skip
    rows = protocol_summary(
        results, method_key=mkey, group_keys=groups, metric=metric, masking=masking,
        seed_protocol=seed_p, adaptive_protocol=adaptive_p,
    )  # fmt: skip
    # the rank tables already show fractions as percentages (report.ranking); add n and CI
    tables = [replace(pt, note=_note(results, pt.protocol, metric)) for pt in tables]
    figs: dict[str, Figure] = {}
    fig_notes: list[str] = []
    if "html" in formats:
        values = [r.get("value") for r in results if r.get("metric") == metric]
        scale = 100.0 if is_proportion(metric, values) else 1.0
        figs = _figures(results, rows, tables, protos, groups, metric, alpha, lambda_key, scale)
        curves, fig_notes = curve_figures(records, masking, method_key=mkey, group_keys=groups)
        figs.update(curves)
        figs.update(figures or {})
    label_cells(cells, {str(r.get("cell_id")): method_label(r, mkey) for r in records})
    counts = point_counts(results, rows, method_key=mkey, group_keys=groups, metric=metric)
    page = _Page(title, meta, notes, rows, groups, tables, figs, dpi, cells, seed_section(cells),
                 headline(rows, counts, groups), mkey, fig_notes)  # fmt: skip
    return _write(page, records, Path(out_dir), formats)


def _protocol_order(present: Sequence[str]) -> list[str]:
    """The stored protocols, the paper protocol ("seed") and "adaptive" first."""
    first = [p for p in ("seed", "adaptive") if p in present]
    return first + [p for p in present if p not in first]


def _note(results: Sequence[Mapping[str, Any]], protocol: str, metric: str) -> str:
    """n and the widest 95 % interval of one protocol's numbers (see `precision_note`)."""
    recs = [r for r in results if r.get("protocol") == protocol and r.get("metric") == metric]
    return precision_note([r.get("value") for r in recs], [r.get("n") for r in recs])


def _figures(
    results: Sequence[Mapping[str, Any]], rows: Sequence[SummaryRow],
    tables: Sequence[html_mod.ProtocolTable], protos: Sequence[str], groups: Sequence[str],
    metric: str, alpha: float, lambda_key: str | None, scale: float = 100.0,
) -> dict[str, Figure]:  # fmt: skip
    """The HTML report's figures: accuracy vs eps, vs the penalty weight, CD diagrams
    (``scale``: stored fractions to the axes' percent)."""
    figs = _eps_figures(rows, scale)
    lk = lambda_key or next(
        (k for k in LAMBDA_KEYS if len({r.get(k) for r in results} - {None}) > 1), None
    )
    for p in protos if lk is not None else ():
        assert lk is not None
        where = {"metric": metric, "protocol": p}
        ser = series_from_records(results, x_key=lk, group_key=[*groups, "attack"], where=where)
        ser = {k: (xs, [scale * y for y in ys]) for k, (xs, ys) in ser.items()}
        if ser:
            name = f"{metric} vs {lk.removeprefix('cfg.')} ({protocol_title(p)})"
            figs[name] = plot_accuracy_vs_lambda(ser)
    figs.update(cd_figures(tables, alpha))
    return figs


@dataclass(frozen=True)
class _Page:
    """What every report format shows."""

    title: str
    meta: str
    notes: list[str]
    rows: Sequence[SummaryRow]
    groups: Sequence[str]
    tables: list[html_mod.ProtocolTable]
    figs: dict[str, Figure]
    dpi: int
    cells: Sequence[CellView] = ()
    seed: SeedSection | None = None

    headline: Headline | None = None
    method_key: Any = "method"
    figure_notes: list[str] = field(default_factory=list)


_MASKING_NOTE = ("The masking report per method and ε (typed masking rows); not a protocol, "
                 "so never ranked.")  # fmt: skip
_DIAG_NOTE = "Diagnostics (typed diagnostic rows), mean over seeds; not ranked."


def _write(
    page: _Page, records: Sequence[Mapping[str, Any]], out: Path, formats: Sequence[str]
) -> dict[str, Path]:
    """Write each requested format of ``page`` (atomically); returns the paths by kind."""
    title, meta, notes, rows, groups = page.title, page.meta, page.notes, page.rows, page.groups
    tables, figs, dpi = page.tables, page.figs, page.dpi
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if "md" in formats:
        md = [f"# {markdown_escape(title)}", "", markdown_escape(meta), ""]
        if page.headline is not None:
            md += ["## Paper protocol vs adaptive protocol", "", headline_markdown(page.headline)]
        md += ranking_markdown(tables, notes)
        md += ["", *_extra_markdown(page)]
        written["md"] = atomic_write_text(out / "report.md", "\n".join(md).rstrip() + "\n")
    if "tex" in formats:
        # the seeds' tables stay their own fragments (<id>.tex, written with the seed
        # section): their long attack headers do not fit \textwidth inside report.tex yet
        files = report_files(title, meta, page.headline, tables, notes)
        for kind, (name, text) in files.items():
            written[kind] = atomic_write_text(out / name, text)
    if "csv" in formats:
        long = long_rows(records, page.method_key)
        written["csv"] = atomic_write_text(out / "records.csv", long_csv_text(long))
        parquet = write_parquet(long, out / "records.parquet")
        if parquet is not None:
            written["parquet"] = parquet
        written["csv:summary"] = atomic_write_text(out / "summary.csv", _summary_csv(rows, groups))
        for pt in tables:
            written[f"csv:{pt.protocol}"] = atomic_write_text(
                out / f"table_{_slug(pt.protocol)}.csv", to_csv(pt.table)
            )
    if "html" in formats:
        html = html_mod.render_html(
            title=title,
            meta=meta + ("; " + "; ".join(notes) if notes else ""),
            summary=html_mod.headline_html(page.headline) if page.headline is not None else "",
            protocol_tables=tables,
            figures=figs,
            dpi=dpi,
            sections=_extra_html(page),
            figure_notes=page.figure_notes,
        )
        written["html"] = atomic_write_text(out / "report.html", html)
    if page.seed is not None:
        written.update(write_seed_files(page.seed, out, formats, dpi=dpi))
    return written


def _extra_markdown(page: _Page) -> list[str]:
    """report.md's seed tables and figures, masking and diagnostics sections."""
    md = seed_markdown(page.seed) if page.seed else []
    md += lines_markdown("Masking checks", masking_lines(page.cells), _MASKING_NOTE)
    md += lines_markdown("Diagnostics", diagnostics_lines(page.cells), _DIAG_NOTE)
    return md


def _extra_html(page: _Page) -> list[str]:
    """The same sections for the HTML page (already escaped)."""
    parts = [seed_html(page.seed, dpi=page.dpi)] if page.seed else []
    parts.append(lines_html("Masking checks", masking_lines(page.cells), _MASKING_NOTE))
    parts.append(lines_html("Diagnostics", diagnostics_lines(page.cells), _DIAG_NOTE))
    return [p for p in parts if p]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "protocol"
