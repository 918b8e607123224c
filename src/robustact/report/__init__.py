"""Reports from the results store: rank tables (Markdown, LaTeX, CSV), statistics,
plots (matplotlib figures) and a self-contained HTML page."""

from __future__ import annotations

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
    "comparison",
    "pivot",
    "protocol_summary",
    "rank_table",
    "statistics_text",
    "to_csv",
    "to_latex",
    "to_markdown",
    "verdict_level",
]
