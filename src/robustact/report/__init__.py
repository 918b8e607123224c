"""Reports from the results store: rank tables (Markdown, LaTeX, CSV), statistics,
plots (matplotlib figures) and a self-contained HTML page."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from robustact.report.build import build_report
    from robustact.report.html import render_html
    from robustact.report.plots import (
        figure_to_data_uri,
        figure_to_png_bytes,
        plot_accuracy_vs_eps,
        plot_accuracy_vs_lambda,
        plot_cap_trajectories,
        plot_cd_diagram,
        plot_layer_growth,
        plot_sensitivity_map,
        plot_zero_gradient_distance,
        series_from_records,
    )
    from robustact.report.summary import SummaryRow, protocol_summary, verdict_level
    from robustact.report.tables import (
        Pivot,
        RankTable,
        comparison,
        pivot,
        rank_table,
        statistics_text,
        to_csv,
        to_latex,
        to_markdown,
    )

#: name -> submodule, imported on first use (`summary` and `tables` need numpy only;
#: plots, HTML and build need matplotlib and scipy, the ``report`` extra).
_WHERE = {
    "build_report": "build",
    "render_html": "html",
    "figure_to_data_uri": "plots",
    "figure_to_png_bytes": "plots",
    "plot_accuracy_vs_eps": "plots",
    "plot_accuracy_vs_lambda": "plots",
    "plot_cap_trajectories": "plots",
    "plot_cd_diagram": "plots",
    "plot_layer_growth": "plots",
    "plot_sensitivity_map": "plots",
    "plot_zero_gradient_distance": "plots",
    "series_from_records": "plots",
    "SummaryRow": "summary",
    "protocol_summary": "summary",
    "verdict_level": "summary",
    "Pivot": "tables",
    "RankTable": "tables",
    "comparison": "tables",
    "pivot": "tables",
    "rank_table": "tables",
    "statistics_text": "tables",
    "to_csv": "tables",
    "to_latex": "tables",
    "to_markdown": "tables",
}

__all__ = [
    "Pivot",
    "RankTable",
    "SummaryRow",
    "build_report",
    "comparison",
    "figure_to_data_uri",
    "figure_to_png_bytes",
    "pivot",
    "plot_accuracy_vs_eps",
    "plot_accuracy_vs_lambda",
    "plot_cap_trajectories",
    "plot_cd_diagram",
    "plot_layer_growth",
    "plot_sensitivity_map",
    "plot_zero_gradient_distance",
    "protocol_summary",
    "rank_table",
    "render_html",
    "series_from_records",
    "statistics_text",
    "to_csv",
    "to_latex",
    "to_markdown",
    "verdict_level",
]


def __getattr__(name: str) -> Any:
    sub = _WHERE.get(name)
    if sub is None:
        raise AttributeError(f"module 'robustact.report' has no attribute {name!r}")
    from robustact._extras import import_or_explain

    value = getattr(import_or_explain(f"robustact.report.{sub}", "report"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
