"""Experiments: the SQLite results store (spec and runner come later)."""

from __future__ import annotations

from robustact.experiments.records import (
    CellRecord,
    MetricRow,
    canonical_json,
    cell_id,
    write_records_csv,
)
from robustact.experiments.store import CellWriter, ResultStore

__all__ = [
    "CellRecord",
    "CellWriter",
    "MetricRow",
    "ResultStore",
    "canonical_json",
    "cell_id",
    "write_records_csv",
]
