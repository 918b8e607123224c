"""One progress display per run, shared by everything that runs inside it.

Long work — epochs and batches in training, attacks × batches in an evaluation, checks in
the masking report, cells in a grid — opens a :func:`task`; tasks opened while another is
open become rows of the same rich display, so a command shows one display with the
overall ETA on its top row. Nothing is shown when the display is off:

* ``progress_enabled(False)`` (``--no-progress``), or ``ROBUSTACT_PROGRESS=0``;
* standard error is not a terminal (a pipe, a file, CI) — unless ``ROBUSTACT_PROGRESS=1``.

The library never prints from a worker process (cells in worker processes report to the
parent's grid display through the runner). Updates are cheap: :meth:`Task.advance` is a
counter; rich redraws from its own thread a few times a second.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

__all__ = ["REFRESH_PER_SECOND", "Task", "progress_enabled", "task"]

#: Redraws per second of the live display (from rich's own thread).
REFRESH_PER_SECOND = 2

_DISPLAY: ContextVar[Any] = ContextVar("robustact_progress_display", default=None)
_FORCED: ContextVar[bool | None] = ContextVar("robustact_progress_forced", default=None)


def _wanted() -> bool:
    forced = _FORCED.get()
    if forced is not None:
        return forced
    env = os.environ.get("ROBUSTACT_PROGRESS", "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    return sys.stderr.isatty()


@contextmanager
def progress_enabled(enabled: bool | None) -> Iterator[None]:
    """Force the display on (True) or off (False) inside the block; None keeps the default
    (on only when standard error is a terminal)."""
    token = _FORCED.set(enabled)
    try:
        yield
    finally:
        _FORCED.reset(token)


@dataclass
class Task:
    """A row of the display (or a silent counter when the display is off).

    Attributes:
        description: the row's label.
        total: units of work, or None when unknown.
        completed: units done so far.
    """

    description: str
    total: float | None
    completed: float = 0.0
    _display: Any = field(default=None, repr=False)
    _id: Any = field(default=None, repr=False)

    def advance(self, n: float = 1.0, **fields: Any) -> None:
        """Count ``n`` more units done; ``fields`` update the row's status text."""
        self.completed += n
        if self._display is not None:
            self._display.update(
                self._id, advance=n, **({"status": _status(fields)} if fields else {})
            )

    def status(self, **fields: Any) -> None:
        """Replace the row's status text (e.g. ``loss=0.31 acc=0.92``)."""
        if self._display is not None:
            self._display.update(self._id, status=_status(fields))

    def grow(self, n: float) -> None:
        """Add ``n`` units to the total (work discovered on the way)."""
        if self.total is not None:
            self.total += n
        if self._display is not None and self.total is not None:
            self._display.update(self._id, total=self.total)


def _status(fields: dict[str, Any]) -> str:
    parts = []
    for k, v in fields.items():
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def _new_display() -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    cols = (
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    # 2 redraws a second: a redraw costs ~2.6 ms of CPU (benchmarks/progress_overhead.py), so
    # the display takes ~0.5 % of a core, whatever the work does
    return Progress(*cols, console=Console(file=sys.stderr), refresh_per_second=REFRESH_PER_SECOND)


@contextmanager
def task(
    description: str, total: float | None = None, *, transient: bool = False
) -> Iterator[Task]:
    """Open a row for a piece of long work; nested calls share the outermost display.

    Args:
        description: what the work is ("training", "epoch 3", "adaptive eps=0.1").
        total: units of work (epochs, batches, attacks × batches), None if unknown.
        transient: remove the row when the work ends (inner loops such as batches).

    Yields:
        A :class:`Task` to :meth:`~Task.advance`.
    """
    display = _DISPLAY.get()
    owner = False
    if display is None and _wanted():
        display = _new_display()
        display.start()
        owner = True
    token = _DISPLAY.set(display) if owner else None
    row = Task(description, total)
    if display is not None:
        row._display = display
        row._id = display.add_task(description, total=total, status="")
    try:
        yield row
    finally:
        if display is not None:
            if transient and not owner:
                display.remove_task(row._id)
            else:
                display.refresh()
        if owner:
            display.stop()
            assert token is not None
            _DISPLAY.reset(token)
