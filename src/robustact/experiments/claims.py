"""Who computes a cell: claims held by a live owner, heartbeats, and stale claims.

A worker that starts a cell *claims* it in the store (``ResultStore.claim``): the row goes
to ``running`` with the run's ``owner`` id, the worker's pid and host, and a ``heartbeat``
time. While the cell runs, :class:`Heartbeat` (a daemon thread with its own SQLite
connection) refreshes the heartbeat every :data:`HEARTBEAT_SECONDS`. Another run takes the
cell over only when the claim is *stale*:

* the owner's pid no longer exists (or is a zombie) on this host, or
* its heartbeat is older than ``stale_after`` seconds (default :data:`STALE_AFTER`; the
  only test possible for an owner on another host, and the fallback for a reused pid).

So two runs on one store share the work (each cell is computed once) and a run killed
with ``kill -9`` leaves claims that the next run on the same host takes over at once.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = ["HEARTBEAT_SECONDS", "STALE_AFTER", "Claim", "Heartbeat", "pid_alive"]

#: Seconds between two heartbeats of a running cell.
HEARTBEAT_SECONDS = 10.0
#: A claim whose heartbeat is older than this (seconds) is stale, whatever its pid.
STALE_AFTER = 120.0


def this_host() -> str:
    """The host name recorded with a claim (pids are only comparable on the same host)."""
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists on this host and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:  # a killed child not yet reaped by its parent still answers kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


@dataclass(frozen=True)
class Claim:
    """The owner of a ``running`` cell as stored (pid/host/heartbeat are None in stores
    written before claims recorded them; such claims count as stale)."""

    owner: str | None
    pid: int | None
    host: str | None
    heartbeat: float | None

    def is_live(self, stale_after: float = STALE_AFTER, now: float | None = None) -> bool:
        """True while the owner may still be computing the cell (see the module docstring)."""
        now = time.time() if now is None else now
        if self.heartbeat is None or now - self.heartbeat > stale_after:
            return False
        if self.pid is not None and self.host == this_host():
            return pid_alive(self.pid)
        return True


class Heartbeat:
    """Refreshes the heartbeat of cell ``cid`` claimed by ``owner`` in this process, from a
    daemon thread, until the ``with`` block ends.

    It only touches a row that is still ``running`` under this owner and pid, so starting
    it around a claim that failed (the cell was done or held elsewhere) changes nothing.
    A failed write (database busy) is retried at the next beat.

    Example:
        >>> with Heartbeat("results.db", cid, owner="host:123:ab12"):  # doctest: +SKIP
        ...     run_the_cell()
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        cid: str,
        *,
        owner: str,
        interval: float = HEARTBEAT_SECONDS,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"heartbeat interval must be > 0 seconds, got {interval}")
        self.path, self.cid, self.owner, self.interval = os.fspath(path), cid, owner, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beats = 0

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, name="robustact-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        pid = os.getpid()
        try:
            conn = sqlite3.connect(self.path, timeout=self.interval, isolation_level=None)
        except sqlite3.Error:
            return  # the store vanished: nothing to keep alive
        try:
            while not self._stop.wait(self.interval):
                try:
                    conn.execute(
                        "UPDATE cells SET heartbeat = ? WHERE cell_id = ? AND owner = ? "
                        "AND owner_pid = ? AND status = 'running'",
                        (time.time(), self.cid, self.owner, pid),
                    )
                    self.beats += 1
                except sqlite3.Error:
                    continue
        finally:
            conn.close()
