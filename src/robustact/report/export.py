"""The measurements in long format: one row per measured number, a dozen columns.

``records.csv`` of a report holds every number of the store once, with what it measures
(cell, method, dataset, seed, kind, protocol, attack, item, eps, norm, metric) and its
``value`` (a fraction for accuracies, as stored) and ``n`` (points behind it). The cells'
configs and extras are not repeated on every row (the store has them: ``robustact
report`` reads it, ``ResultStore.to_csv`` writes the wide table). ``records.parquet``
holds the same rows when pandas and pyarrow are installed (``pip install pandas
pyarrow``); without them it is not written.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from robustact.report.tables import method_label

__all__ = [
    "LONG_COLUMNS",
    "has_parquet",
    "long_csv_text",
    "long_rows",
    "write_parquet",
]

#: Columns of the long format, in order.
LONG_COLUMNS = (
    "cell_id",
    "method",
    "dataset",
    "seed",
    "kind",
    "protocol",
    "attack",
    "item",
    "eps",
    "norm",
    "metric",
    "value",
    "n",
)
_DATASET_KEYS = ("cfg.dataset.name", "cfg.dataset", "dataset")


def long_rows(
    records: Sequence[Mapping[str, Any]], method_key: str | Sequence[str]
) -> list[dict[str, Any]]:
    """One dict per record with exactly `LONG_COLUMNS` (None where a record has no value);
    ``method`` is the record's method label (``method_key`` as in the rank tables)."""
    out = []
    for r in records:
        dataset = next((r[k] for k in _DATASET_KEYS if r.get(k) is not None), None)
        row = {k: r.get(k) for k in LONG_COLUMNS}
        row["method"] = method_label(r, method_key)
        row["dataset"] = dataset if isinstance(dataset, (str, int, float)) else None
        row["kind"] = r.get("kind", "result")
        out.append(row)
    return out


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        # 7 significant digits: a float32 measurement's own precision, without its noise
        # (0.9637883305549622 is 0.9637883); exact for accuracies k / n with n < 10^6
        return f"{v:.7g}"
    return v


def long_csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV text of `long_rows` output: the header, then one line per measurement."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LONG_COLUMNS)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in LONG_COLUMNS])
    return buf.getvalue()


def has_parquet() -> bool:
    """True when pandas and a Parquet engine (pyarrow) can be imported."""
    return all(importlib.util.find_spec(m) is not None for m in ("pandas", "pyarrow"))


def write_parquet(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path | None:
    """Writes `long_rows` output as Parquet (atomically: temp file + rename) and returns
    the path, or None when pandas or pyarrow is not installed."""
    if not has_parquet():
        return None
    import pandas as pd

    dest = Path(path)
    frame = pd.DataFrame([{c: r.get(c) for c in LONG_COLUMNS} for r in rows],
                         columns=list(LONG_COLUMNS))  # fmt: skip
    for col in ("eps", "value"):
        frame[col] = frame[col].astype("float64")
    frame["n"] = frame["n"].astype("Int64")
    frame["seed"] = frame["seed"].astype("Int64")
    for col in ("cell_id", "method", "dataset", "kind", "protocol", "attack", "item", "norm",
                "metric"):  # fmt: skip
        frame[col] = frame[col].astype("string")
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        frame.to_parquet(tmp, index=False)  # a plain open(): the user's umask applies
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest
