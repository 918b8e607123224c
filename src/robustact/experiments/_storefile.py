"""Opening a results file safely: refuse folders, non-SQLite files, other applications'
databases and unwritable files with one line (:class:`StoreError`) before anything is
written, and open read-only stores with SQLite's ``mode=ro`` (``immutable=1`` on read-only
media), so reading never creates or changes a file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["CLAIM_COLUMNS", "StoreError", "check_tables", "check_version", "connect"]

#: Columns naming a claim's live owner (added to stores written before they existed).
CLAIM_COLUMNS = (("owner_pid", "INTEGER"), ("owner_host", "TEXT"), ("heartbeat", "REAL"))

#: Columns robustact reads from ``cells``; a ``cells`` table without them is not ours.
_CELL_COLUMNS = frozenset({"cell_id", "config", "status", "extra", "owner", "attempts"})

_SQLITE_HEADER = b"SQLite format 3\x00"


class StoreError(RuntimeError):
    """A results file that cannot be used: a folder, not SQLite, another application's
    database, unwritable, or of another schema version (one line naming the file and the
    fix)."""


def _check_header(path: Path) -> bool:
    """True when ``path`` is an empty file; raises when it is not a SQLite database."""
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_HEADER))
    except OSError as e:
        raise StoreError(f"cannot read results store {path}: {e.strerror or e}") from None
    if head and head != _SQLITE_HEADER:
        raise StoreError(
            f"{path} is not a results store (not a SQLite file: wrong header); pass the "
            "--store of a robustact run, or a new file name"
        )
    return not head


def connect(path: Path, timeout: float, read_only: bool) -> sqlite3.Connection:
    """A connection to the store file, after checking the path (see :class:`StoreError`).

    Read-only connections use SQLite's ``mode=ro`` URI, so nothing is created or written;
    when even that needs a write (a WAL file on read-only media), ``immutable=1``.
    """
    if path.is_dir():
        raise StoreError(
            f"results store {path} is a folder; pass a file, e.g. {path / 'results.db'}"
        )
    exists = path.exists()
    if read_only and not exists:
        raise StoreError(f"no results store at {path}; run robustact run SPEC --store {path} first")
    if exists and _check_header(path) and read_only:
        raise StoreError(f"{path} is an empty file, not a results store")
    try:
        if read_only:
            uri = path.resolve().as_uri()
            try:
                conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout,
                                       isolation_level=None)  # fmt: skip
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:
                conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True,
                                       timeout=timeout, isolation_level=None)  # fmt: skip
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each cell is exactly
        # one transaction and nothing is left open implicitly.
        conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
        try:  # before anything writes: another application's database is left as it was
            check_tables(conn, path, writing=True)
        except StoreError:
            conn.close()
            raise
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a committed cell survives even a power cut; the fsync per cell is cheap
        # next to the seconds-to-hours a cell takes to compute.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN IMMEDIATE")  # fails now, not after a cell, when unwritable
        conn.execute("ROLLBACK")
        return conn
    except OSError as e:
        raise StoreError(f"cannot create results store {path}: {e.strerror or e}") from None
    except sqlite3.DatabaseError as e:
        what = "read" if read_only else "write"
        raise StoreError(
            f"cannot {what} results store {path} ({e}); pass a "
            f"{'readable' if read_only else 'writable'} file"
        ) from None


def check_tables(conn: sqlite3.Connection, path: Path, *, writing: bool) -> None:
    """Refuses a database that is not robustact's (so nothing is added to it)."""
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        cols = {r[1] for r in conn.execute("PRAGMA table_info(cells)")}
    except sqlite3.DatabaseError as e:
        if writing:
            raise StoreError(
                f"cannot write results store {path} ({e}); pass a writable file"
            ) from None
        raise StoreError(f"cannot read results store {path} ({e})") from None
    if "cells" in tables and not cols >= _CELL_COLUMNS:
        raise StoreError(
            f"{path} has a 'cells' table that is not robustact's (no "
            f"{', '.join(sorted(_CELL_COLUMNS - cols))} column); pass a robustact results store"
        )
    if "cells" not in tables and (tables or not writing):
        listed = ", ".join(sorted(tables)[:5]) or "none"
        raise StoreError(
            f"{path} is a SQLite file but not a robustact results store (tables: {listed}); "
            + ("pass a new --store file" if writing else "pass the --store of a robustact run")
        )


def check_version(conn: sqlite3.Connection, path: Path, version: int) -> None:
    """Refuses a store of another schema version."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError:
        row = None  # no meta table: a store of the first robustact versions reads the same
    if row is not None and str(row[0]) == "1" and version == 2:
        raise StoreError(
            f"{path} has results schema 1 (before typed rows); open it once for writing to "
            'migrate it in place, e.g. python -c "from robustact.experiments import '
            f"ResultStore; ResultStore('{path}')\""
        )
    if row is not None and str(row[0]) != str(version):
        raise StoreError(
            f"{path} has results schema {row[0]}, this robustact writes "
            f"{version}; use a new results file"
        )
