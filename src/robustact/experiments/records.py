"""Plain-data side of the results store: metric rows, cell records, canonical JSON and ids,
flattening for records, and atomic CSV writing (no SQLite here).

:class:`MetricRow` (the typed row, defined in :mod:`robustact.evaluate.rows`) is re-exported
here: the store validates and writes it, the records and the CSV carry its fields.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import numbers
import os
import secrets
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import robustact
from robustact.evaluate.rows import KINDS, MetricRow

#: Record columns that come from the cell and metric rows (before the `cfg.*` columns).
BASE_COLUMNS = (
    "cell_id",
    "spec",
    "seed",
    "kind",
    "protocol",
    "attack",
    "item",
    "metric",
    "value",
    "eps",
    "norm",
    "n",
    "robustact_version",
    "git_commit",
    "started_at",
    "finished_at",
    "seconds",
    "checkpoint",
)


@dataclass(frozen=True)
class CellRecord:
    """A cell as stored (see the module docstring); `config` and `extra` are decoded JSON."""

    cell_id: str
    config: dict[str, Any]
    status: str
    spec: str | None = None
    seed: int | None = None
    robustact_version: str | None = None
    git_commit: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    seconds: float | None = None
    checkpoint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    owner: str | None = None
    attempts: int = 0


# --------------------------------------------------------------------------- JSON helpers


def to_jsonable(obj: Any, where: str = "config", *, allow_nan: bool = False) -> Any:
    """Normalises a config-like value to plain JSON types (dict/list/str/int/float/bool/None).

    NumPy and torch scalars/arrays become Python numbers/lists, tuples become lists and
    paths become strings. Raises a clear error naming the offending entry otherwise.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        val = float(obj)
        if not allow_nan and not math.isfinite(val):
            raise ValueError(f"{where} is {val}; configs must hold finite numbers")
        return val
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} has a non-string key {k!r}; use string keys")
            out[k] = to_jsonable(v, f"{where}[{k!r}]", allow_nan=allow_nan)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]", allow_nan=allow_nan) for i, v in enumerate(obj)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # e.g. robustact.evaluate.masking.MaskingReport stored in a cell's extra
        return to_jsonable(dataclasses.asdict(obj), where, allow_nan=allow_nan)
    if hasattr(obj, "tolist"):  # numpy arrays/scalars, torch tensors
        return to_jsonable(obj.tolist(), where, allow_nan=allow_nan)
    raise TypeError(
        f"{where} has unsupported type {type(obj).__name__}; use dict/list/str/number/bool/None"
    )


def canonical_json(config: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, finite numbers only (so hashes are stable).

    Note that ``1`` and ``1.0`` differ, as in JSON.
    """
    return json.dumps(
        to_jsonable(config), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def cell_id(config: Mapping[str, Any]) -> str:
    """Stable 16-hex-digit id of a cell: SHA-256 of `canonical_json(config)`."""
    if not isinstance(config, Mapping):
        raise TypeError(f"a cell config must be a mapping, got {type(config).__name__}")
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()[:16]


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flattens nested dicts into dotted keys; lists become canonical JSON strings.

    ``{"model": {"name": "mlp"}, "eps": [0.1]}`` with prefix "cfg." gives
    ``{"cfg.model.name": "mlp", "cfg.eps": "[0.1]"}``.
    """
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list):
            out[key] = json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        else:
            out[key] = v
    return out


def git_commit(start: str | os.PathLike[str] | None = None) -> str | None:
    """The git HEAD commit of the source tree holding robustact, or None when not in git."""
    cwd = Path(start) if start is not None else Path(robustact.__file__).resolve().parent
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = res.stdout.strip()
    return sha if res.returncode == 0 and len(sha) == 40 else None


# --------------------------------------------------------------------------- metric rows


def _as_metric(row: MetricRow | Mapping[str, Any] | Sequence[Any], i: int) -> MetricRow:
    if isinstance(row, MetricRow):
        m = row
    elif isinstance(row, Mapping):
        try:
            m = MetricRow(**row)
        except TypeError as err:
            raise TypeError(f"metrics[{i}] {dict(row)!r}: {err}") from None
    elif isinstance(row, Sequence) and not isinstance(row, str) and 4 <= len(row) <= 9:
        m = MetricRow(*row)
    else:
        raise TypeError(
            f"metrics[{i}] is {row!r}; pass MetricRow, a dict or "
            "(protocol, attack, metric, value[, eps[, norm[, kind[, item[, n]]]]])"
        )
    for name in ("protocol", "attack", "metric"):
        if not isinstance(getattr(m, name), str) or not getattr(m, name):
            raise ValueError(f"metrics[{i}].{name} must be a non-empty string, got {m!r}")
    if isinstance(m.value, bool) or not isinstance(m.value, numbers.Real):
        raise TypeError(f"metrics[{i}].value must be a number, got {m.value!r}")
    if not math.isfinite(float(m.value)):
        raise ValueError(
            f"metrics[{i}].value is {m.value} ({m.key()}); store finite numbers and put "
            "non-finite diagnostics in extra"
        )
    if m.eps is not None and (
        isinstance(m.eps, bool) or not isinstance(m.eps, numbers.Real) or not m.eps >= 0
    ):
        raise ValueError(f"metrics[{i}].eps must be None or a number >= 0, got {m.eps!r}")
    if m.norm is not None and not isinstance(m.norm, str):
        raise TypeError(f"metrics[{i}].norm must be None or a string, got {m.norm!r}")
    if m.kind not in KINDS:
        raise ValueError(f"metrics[{i}].kind is {m.kind!r}; use one of {', '.join(KINDS)}")
    if m.item is not None and (not isinstance(m.item, str) or not m.item):
        raise ValueError(f"metrics[{i}].item must be None or a non-empty string, got {m.item!r}")
    if m.n is not None and (isinstance(m.n, bool) or not isinstance(m.n, numbers.Integral)
                            or m.n < 0):  # fmt: skip
        raise ValueError(f"metrics[{i}].n must be None or an int >= 0, got {m.n!r}")
    return MetricRow(
        m.protocol, m.attack, m.metric, float(m.value), None if m.eps is None else float(m.eps),
        m.norm, m.kind, m.item, None if m.n is None else int(m.n),
    )  # fmt: skip


def metric_rows(metrics: Iterable[Any]) -> list[MetricRow]:
    rows = [_as_metric(r, i) for i, r in enumerate(metrics)]
    seen: set[tuple[Any, ...]] = set()
    for r in rows:
        if r.key() in seen:
            raise ValueError(
                f"duplicate metric {r.key()}; each (kind, protocol, attack, item, metric, "
                "eps, norm) may appear once per cell"
            )
        seen.add(r.key())
    return rows


def is_list_leaf(raw: Mapping[str, Any], dotted: str) -> bool:
    node: Any = raw
    for part in dotted.split(".")[1:]:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return isinstance(node, list)


def columns_of(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """CSV column order: the base columns present, then the other keys sorted."""
    keys: set[str] = set()
    for r in records:
        keys.update(r)
    base = [c for c in BASE_COLUMNS if c in keys]
    return base + sorted(keys - set(base))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Writes `text` (UTF-8) to `path` via a temp file in the same folder and os.replace.

    The file gets ``0666 & ~umask``, as any file the user creates: the temp file is opened
    with mode 0666 and the kernel applies the umask (``mkstemp`` would force 0600, and a
    fixed chmod would ignore a umask of 077 or 002).
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def records_to_csv_text(records: Sequence[Mapping[str, Any]]) -> str:
    """CSV text of records: header `columns_of(records)`, None as empty, floats as repr."""
    cols = columns_of(records)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in records:
        # repr of a float is the shortest string that reads back to the same float.
        w.writerow(
            [
                "" if r.get(c) is None else repr(r[c]) if isinstance(r[c], float) else r[c]
                for c in cols
            ]
        )
    return buf.getvalue()


def write_records_csv(records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Writes records as CSV atomically (see `records_to_csv_text`); returns the path."""
    return atomic_write_text(path, records_to_csv_text(records))
