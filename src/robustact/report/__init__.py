"""Reports from the results store: rank tables (Markdown, LaTeX, CSV), statistics,
plots (matplotlib figures) and a self-contained HTML page."""

from __future__ import annotations

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
