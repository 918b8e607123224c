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
from robustact.report.curves import curve_figures
from robustact.report.export import long_csv_text, long_rows, write_parquet
from robustact.report.format import is_proportion, precision_note, protocol_title
from robustact.report.headline import Headline, headline, headline_markdown, point_counts
from robustact.report.latex import report_files
from robustact.report.plots import (
    plot_accuracy_vs_eps,
    plot_accuracy_vs_lambda,
    plot_cd_diagram,
    series_from_records,
)
from robustact.report.summary import SummaryRow, protocol_summary
from robustact.report.tables import (
    RankTable,
    comparison,
    fmt_key,
    markdown_escape,
    pivot,
    rank_table,
    statistics_text,
    to_csv,
    to_markdown,
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
LAMBDA_KEYS = ("cfg.lambda", "cfg.lam", "cfg.penalty")


def evaluation_records(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records of protocol evaluations (typed-row ``kind`` "result"; records without a
    kind, e.g. hand-made ones, count as results). Masking checks, diagnostics and training
    numbers have their own kinds and are not ranked."""
    return [r for r in records if r.get("kind", "result") == "result"]


def _distinct(records: Sequence[Mapping[str, Any]], key: str) -> list[Any]:
    return list(dict.fromkeys(r.get(key) for r in records))


#: Config sections whose varying keys tell methods apart in experiment-runner records
#: (``cfg.activation.name``, ``cfg.activation.max_value``, ``cfg.objective.lam``, ...).
METHOD_SECTIONS = ("cfg.model.", "cfg.activation.", "cfg.preprocess.", "cfg.defense.",
                   "cfg.transform.", "cfg.objective.", "cfg.training.")  # fmt: skip


def with_method_labels(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``records`` with a ``"method"`` label built from the config keys that vary.

    Runner records spread a cell's config over keys such as ``cfg.activation.name`` and
    ``cfg.activation.max_value``; one method is one combination of every such key that
    differs between cells (datasets and seeds excluded: they are rows and repeats). The
    label reads ``srelu(max_value=0.01, where=act2) + natural``: per section its name and
    the arguments that vary. Records that already carry ``cfg.method`` are left as they are.
    """
    out = [dict(r) for r in records]
    if not out or any("cfg.method" in r for r in out):
        return out
    keys = sorted({k for r in out for k in r if k.startswith(METHOD_SECTIONS)})
    if not keys:  # not runner records: nothing to label
        return out
    varying = {k for k in keys if len(_distinct(out, k)) > 1}
    for r in out:
        parts = []
        for sec in METHOD_SECTIONS:
            sec_keys = [k for k in keys if k.startswith(sec)]
            if not any(k in varying for k in sec_keys):
                continue
            name = r.get(sec + "name")
            args = [
                f"{k[len(sec) :]}={fmt_key(r[k])}"
                for k in sec_keys
                if k in varying and k != sec + "name" and r.get(k) is not None
            ]
            label = fmt_key(name) if name is not None else sec[4:-1]
            parts.append(f"{label}({', '.join(args)})" if args else label)
        r["method"] = " + ".join(parts) if parts else "all"
    return out


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


def _load(source: Any) -> tuple[list[dict[str, Any]], dict[str, Mapping[str, Any]], str]:
    """Records, cell_id -> masking report, and a provenance line."""
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
        return source.records(include_extra=True), masking, meta
    records = [dict(r) for r in source]
    return records, {}, f"{len(_distinct(records, 'cell_id'))} cells"


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
        row_keys: keys making a table row (default: dataset if recorded, attack, eps).
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
    records, masking, meta = _load(source)
    if not records:
        raise ValueError("no finished cells to report; run the experiment first")
    if method_key is None:
        records = with_method_labels(records)
    mkey = method_key if method_key is not None else guess_method_key(records)
    groups = [k for k in ("cfg.dataset", "cfg.dataset.name") if any(k in r for r in records)]
    if row_keys is None:
        row_keys = [*groups, "attack", "eps"]
        if len({r.get("norm") for r in records if r.get("norm")}) > 1:
            row_keys.append("norm")
    # runner records also hold masking, training and diagnostic rows: not accuracies to rank
    results = evaluation_records(records)
    present = _distinct(results, "protocol")
    order = [p for p in ("seed", "adaptive") if p in present] + [
        p for p in present if p not in ("seed", "adaptive")
    ]
    protos = list(protocols) if protocols is not None else order

    tables, notes = _rank_tables(results, protos, mkey, row_keys, metric, alpha)
    seed_p, adaptive_p = summary_protocols(present)
    rows = protocol_summary(
        results, method_key=mkey, group_keys=groups, metric=metric, masking=masking,
        seed_protocol=seed_p, adaptive_protocol=adaptive_p,
    )  # fmt: skip

    counts = point_counts(results, rows, method_key=mkey, group_keys=groups, metric=metric)
    percent = is_proportion(metric, [r.get("value") for r in results if r.get("metric") == metric])
    tables = [
        replace(pt, percent=percent, note=_note(results, pt.protocol, metric),
                caption=_with_unit(pt.caption, metric, percent))
        for pt in tables
    ]  # fmt: skip
    figs: dict[str, Figure] = {}
    fig_notes: list[str] = []
    if "html" in formats:
        scale = 100.0 if percent else 1.0
        figs = _figures(results, rows, tables, protos, groups, metric, alpha, lambda_key, scale)
        curves, fig_notes = curve_figures(records, masking, method_key=mkey, group_keys=groups)
        figs.update(curves)
        figs.update(figures or {})

    page = _Page(title, meta, notes, rows, groups, tables, figs, dpi,
                 headline(rows, counts, groups), mkey, fig_notes)  # fmt: skip
    return _write(page, records, Path(out_dir), formats)


def _with_unit(caption: str, metric: str, percent: bool) -> str:
    """``"accuracy (%) under ..."`` when the table shows percentages."""
    if percent and caption.startswith(metric):
        return f"{metric} (%){caption[len(metric) :]}"
    return caption


def _note(results: Sequence[Mapping[str, Any]], protocol: str, metric: str) -> str:
    """n and the widest 95 % interval of one protocol's numbers (see `precision_note`)."""
    recs = [r for r in results if r.get("protocol") == protocol and r.get("metric") == metric]
    return precision_note([r.get("value") for r in recs], [r.get("n") for r in recs])


def _rank_tables(
    results: Sequence[Mapping[str, Any]], protos: Sequence[str], mkey: Any,
    row_keys: Sequence[str], metric: str, alpha: float,
) -> tuple[list[html_mod.ProtocolTable], list[str]]:  # fmt: skip
    """One rank table per protocol (and a note for each that cannot be ranked)."""
    tables: list[html_mod.ProtocolTable] = []
    notes: list[str] = []
    for p in protos:
        try:
            t: RankTable = rank_table(
                pivot(
                    results,
                    method_key=mkey,
                    row_keys=row_keys,
                    where={"metric": metric, "protocol": p},
                )
            )
        except ValueError as err:
            notes.append(f"{p} protocol: {err}")
            continue
        caption = (
            f"{metric} under the {protocol_title(p)}: score (rank); last row mean (average rank)"
        )
        tables.append(html_mod.ProtocolTable(p, t, statistics_text(t, alpha), caption))
    return tables, notes


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
    for pt in tables:
        if comparison(pt.table, alpha) is not None:
            figs[f"Critical difference, {protocol_title(pt.protocol)}"] = plot_cd_diagram(
                pt.table, alpha=alpha
            )
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
    headline: Headline | None = None
    method_key: Any = "method"
    figure_notes: list[str] = field(default_factory=list)


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
        for pt in tables:
            caption = markdown_escape(pt.caption + (f". {pt.note}" if pt.note else ""))
            name = protocol_title(pt.protocol)
            md += [f"## {markdown_escape(name[:1].upper() + name[1:])}", "", caption, ""]
            md += [to_markdown(pt.table, percent=pt.percent), "```text", pt.stats, "```", ""]
        md += [f"> {markdown_escape(n)}" for n in notes]
        written["md"] = atomic_write_text(out / "report.md", "\n".join(md).rstrip() + "\n")
    if "tex" in formats:
        for kind, (name, text) in report_files(title, meta, page.headline, tables, notes).items():
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
            figure_notes=page.figure_notes,
        )
        written["html"] = atomic_write_text(out / "report.html", html)
    return written


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "protocol"
