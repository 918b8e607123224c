"""Notebook and scripting helpers of the result objects: a one-line ``repr``, an HTML
view (``_repr_html_``, what Jupyter shows), ``to_records()`` (plain dicts) and
``to_pandas()`` where pandas is installed, and JSON numbers without float32 noise."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "JSON_DIGITS",
    "NotebookMixin",
    "display_protocol",
    "html_table",
    "pct",
    "records_to_pandas",
    "round_floats",
]

#: Kept for callers that want a fixed precision (``round_floats(obj, digits=4)``); by
#: default only float32 noise is removed and float64 values are written exactly.
JSON_DIGITS: int | None = None

#: Protocol ids -> the names people read (``seed`` is the source papers' protocol).
_SHOWN = {"seed": "paper", "seed-brelu": "paper-brelu"}


def display_protocol(name: str) -> str:
    """The user-facing name of a protocol id: ``seed`` -> ``paper``; others unchanged."""
    return _SHOWN.get(name, name)


def _short(v: float, digits: int | None) -> float:
    if digits is not None:
        return float(f"{v:.{digits}g}")
    import numpy as np

    f32 = np.float32(v)
    # a value that is exactly a float32 (a tensor's .item()) gets float32's shortest repr:
    # 0.9200000166893005 -> 0.92; float64 values (8/255, k/n) are kept exactly
    return float(str(f32)) if float(f32) == v else v


def round_floats(obj: Any, digits: int | None = JSON_DIGITS) -> Any:
    """A copy of a JSON-like structure without float32 noise (every float that is exactly
    a float32 written with float32's shortest digits; with ``digits``, every float rounded
    to that many significant digits); NaN and inf become None (strict JSON)."""
    if isinstance(obj, float):
        return _short(obj, digits) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [round_floats(v, digits) for v in obj]
    return obj


def pct(v: float | None, digits: int = 1) -> str:
    """A fraction as a percentage for people (``0.9234`` -> ``"92.3"``; None -> ``"–"``)."""
    return "–" if v is None or not math.isfinite(v) else f"{100 * v:.{digits}f}"


def records_to_pandas(records: Sequence[dict[str, Any]], owner: str) -> Any:
    """``pandas.DataFrame`` of ``records`` (one row per record).

    Raises:
        ImportError: pandas is not installed (the message names the pip command).
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(
            f"{owner}.to_pandas() needs pandas, which is not installed: pip install pandas "
            "(or use to_records(), a list of dicts)"
        ) from None
    return pd.DataFrame.from_records(list(records))


def html_table(header: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "") -> str:
    """A small HTML table (every cell escaped); numbers right-aligned."""

    def cell(tag: str, v: Any) -> str:
        align = ' style="text-align:right"' if isinstance(v, int | float) else ""
        return f"<{tag}{align}>{html.escape(str(v))}</{tag}>"

    head = "".join(cell("th", h) for h in header)
    body = "".join("<tr>" + "".join(cell("td", v) for v in r) + "</tr>" for r in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class NotebookMixin:
    """``to_pandas()`` from the class's ``to_records()``; subclasses define both
    ``to_records()`` and their own ``__repr__`` / ``_repr_html_``."""

    def to_records(self) -> list[dict[str, Any]]:
        """Plain dicts, one per row (see the subclass)."""
        raise NotImplementedError

    def to_pandas(self) -> Any:
        """``pandas.DataFrame`` of :meth:`to_records` (needs pandas: pip install pandas)."""
        return records_to_pandas(self.to_records(), type(self).__name__)
