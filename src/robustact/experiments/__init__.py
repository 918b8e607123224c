"""Experiments: validated YAML specs, their execution (local processes, Ray, torchrun DDP)
and the SQLite results store (one transaction per finished cell)."""

from __future__ import annotations

from robustact.experiments.cell import execute_cell, run_cell
from robustact.experiments.records import (
    CellRecord,
    MetricRow,
    canonical_json,
    cell_id,
    write_records_csv,
)
from robustact.experiments.runner import RunSummary, run_spec
from robustact.experiments.spec import Cell, Spec, SpecError, load_spec, parse_spec, spec_summary
from robustact.experiments.store import CellWriter, ResultStore, StoreError

__all__ = [
    "Cell",
    "CellRecord",
    "CellWriter",
    "MetricRow",
    "ResultStore",
    "RunSummary",
    "Spec",
    "SpecError",
    "StoreError",
    "canonical_json",
    "cell_id",
    "execute_cell",
    "load_spec",
    "parse_spec",
    "run_cell",
    "run_spec",
    "spec_summary",
    "write_records_csv",
]
