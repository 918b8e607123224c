"""SQLite results store: one row per (experiment cell, metric), written atomically per cell.

A *cell* is one point of an experiment grid (model x activation x dataset x training x seed
...), identified by `cell_id(config)`, a stable hash of the canonical JSON of its config.
When a cell finishes, its config, code version, seed, timings, checkpoint path, free-form
`extra` JSON and all its metric rows are written in ONE `BEGIN IMMEDIATE ... COMMIT`
transaction, so a run killed at any moment (even `kill -9`) loses at most the cells in
flight, never half of a cell; re-running skips every cell for which `is_done` is True.

The database uses WAL journaling and a busy timeout so several worker processes can write
to one file at once; open one `ResultStore` per process (connections are not shared
across `fork`). A cell is claimed by a live owner only (pid, host and heartbeat; see
:mod:`robustact.experiments.claims`), so two runs on one store compute each cell once.

``ResultStore(path, read_only=True)`` (what ``robustact report`` uses) opens the file with
SQLite's ``mode=ro`` and never creates or changes anything: an empty file, a foreign SQLite
file or a read-only store is read or refused, never written. Every unusable file (a folder,
not SQLite, another application's database, unwritable) raises :class:`StoreError` with
one line naming the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import robustact
from robustact._validate import is_int
from robustact.experiments._storefile import (
    CLAIM_COLUMNS,
    StoreError,
    check_tables,
    check_version,
    connect,
)
from robustact.experiments.claims import STALE_AFTER, Claim, this_host
from robustact.experiments.records import (
    BASE_COLUMNS,
    CellRecord,
    MetricRow,
    canonical_json,
    cell_id,
    flatten,
    git_commit,
    is_list_leaf,
    metric_rows,
    to_jsonable,
    write_records_csv,
)

__all__ = [
    "STATUSES",
    "CellRecord",
    "CellWriter",
    "MetricRow",
    "ResultStore",
    "StoreError",
    "cell_id",
]

SCHEMA_VERSION = 2

#: Cell states: "running" (claimed by a worker), "done" (committed with its metrics),
#: "failed" (raised; its error message is kept, and a re-run retries it).
STATUSES = ("running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    cell_id TEXT PRIMARY KEY,
    spec TEXT,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    seed INTEGER,
    robustact_version TEXT,
    git_commit TEXT,
    started_at REAL,
    finished_at REAL,
    seconds REAL,
    checkpoint TEXT,
    extra TEXT,
    error TEXT,
    owner TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS metrics (
    cell_id TEXT NOT NULL REFERENCES cells (cell_id) ON DELETE CASCADE,
    protocol TEXT NOT NULL,
    attack TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    eps REAL,
    norm TEXT,
    kind TEXT NOT NULL DEFAULT 'result',
    item TEXT,
    n INTEGER
);
-- NULL eps/norm (clean accuracy) must still collide, hence the IFNULL expressions.
CREATE UNIQUE INDEX IF NOT EXISTS metrics_key2 ON metrics (
    cell_id, kind, protocol, attack, IFNULL(item, ''), metric, IFNULL(eps, -1.0),
    IFNULL(norm, '')
);
"""

#: Schema 1 -> 2: the typed-row columns (kind, item, n). Old rows get the kind their
#: protocol implies and keep their attack/metric strings.
_MIGRATE_1_2 = (
    "ALTER TABLE metrics ADD COLUMN kind TEXT NOT NULL DEFAULT 'result'",
    "ALTER TABLE metrics ADD COLUMN item TEXT",
    "ALTER TABLE metrics ADD COLUMN n INTEGER",
    "UPDATE metrics SET kind = CASE protocol WHEN 'masking' THEN 'masking' "
    "WHEN 'diagnostics' THEN 'diagnostic' WHEN 'training' THEN 'training' ELSE 'result' END",
    "DROP INDEX IF EXISTS metrics_key",
)


# --------------------------------------------------------------------------- the store


class ResultStore:
    """Results of experiment cells in one SQLite file (see the module docstring).

    Args:
        path: database file; created (with its parent folder) when missing.
        timeout: seconds a writer waits for another process's lock before failing.
        read_only: open for reading only (the file must exist; nothing is written).
        stale_after: seconds after its last heartbeat when another run's claim is stale.

    Raises:
        StoreError: the file is a folder, not SQLite, not robustact's, or unwritable.

    Example:
        >>> with ResultStore("results.sqlite") as store:          # doctest: +SKIP
        ...     if not store.is_done(cell_id(cfg)):
        ...         store.put_cell(cfg, [("seed", "PGD", "accuracy", 89.6, 0.1, "linf")])
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 60.0,
        read_only: bool = False,
        stale_after: float = STALE_AFTER,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if not stale_after > 0:
            raise ValueError(f"stale_after must be > 0 seconds, got {stale_after}")
        self.path = Path(path)
        self.read_only = bool(read_only)
        self.stale_after = float(stale_after)
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = connect(self.path, timeout, self.read_only)
        try:
            if self.read_only:
                check_tables(self._conn, self.path, writing=False)
                check_version(self._conn, self.path, SCHEMA_VERSION)
            else:
                self._create_schema()
        except BaseException:
            self._conn.close()
            self._conn = None
            raise
        self._version = robustact.__version__
        self._commit = git_commit()

    def _create_schema(self) -> None:
        with self._transaction() as c:
            row = None
            if c.execute("SELECT name FROM sqlite_master WHERE name = 'meta'").fetchone():
                row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None and int(row[0]) == 1:
                for stmt in _MIGRATE_1_2:
                    c.execute(stmt)
                c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                          (str(SCHEMA_VERSION),))  # fmt: skip
                row = (str(SCHEMA_VERSION),)
            # Statement by statement: executescript() would COMMIT our transaction.
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
            have = {r[1] for r in c.execute("PRAGMA table_info(cells)")}
            for name, kind in CLAIM_COLUMNS:  # stores written before claims had owners
                if name not in have:
                    c.execute(f"ALTER TABLE cells ADD COLUMN {name} {kind}")
            row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        check_version(self.conn, self.path, SCHEMA_VERSION)

    # -- plumbing -----------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection (raises when closed or used from a forked child)."""
        if self._conn is None:
            raise RuntimeError(f"ResultStore({self.path}) is closed; open a new one")
        if os.getpid() != self._pid:
            raise RuntimeError(
                "a ResultStore was used in a different process than the one that opened it; "
                "open a new ResultStore(path) inside each worker process"
            )
        return self._conn

    @contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        conn = self.conn
        if self.read_only and mode != "DEFERRED":
            raise StoreError(f"ResultStore({self.path}) was opened read_only=True; cannot write")
        conn.execute(f"BEGIN {mode}")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Closes the connection (idempotent)."""
        if self._conn is not None and os.getpid() == self._pid:
            self._conn.close()
        self._conn = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"

    # -- writing ------------------------------------------------------------------------

    def put_cell(
        self,
        config: Mapping[str, Any],
        metrics: Iterable[MetricRow | Mapping[str, Any] | Sequence[Any]],
        *,
        seed: int | None = None,
        spec: str | None = None,
        started_at: float | None = None,
        finished_at: float | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Commits a finished cell and all its metric rows in one transaction.

        Re-putting a cell replaces its metrics (never duplicates them).

        Args:
            config: the cell's config (JSON-able mapping); its hash is the cell id.
            metrics: MetricRow, dicts with its fields, or
                (protocol, attack, metric, value[, eps[, norm]]) tuples.
            seed: the cell's random seed (defaults to config["seed"] when present).
            spec: name of the experiment spec the cell belongs to.
            started_at, finished_at: Unix times; finished_at defaults to now.
            checkpoint: path of the trained model's checkpoint.
            extra: free-form JSON (training history, masking verdict and its checks, ...).

        Returns:
            The cell id.
        """
        cid = cell_id(config)
        cfg_json = canonical_json(config)
        rows = metric_rows(metrics)
        extra_json = json.dumps(
            to_jsonable(dict(extra or {}), "extra", allow_nan=True), sort_keys=True
        )
        seed = self._seed(config, seed)
        end = time.time() if finished_at is None else float(finished_at)
        start = None if started_at is None else float(started_at)
        seconds = None if start is None else end - start
        ckpt = None if checkpoint is None else os.fspath(checkpoint)
        with self._transaction() as c:
            c.execute(
                """INSERT INTO cells (cell_id, spec, config, status, seed, robustact_version,
                       git_commit, started_at, finished_at, seconds, checkpoint, extra, error,
                       attempts)
                   VALUES (?, ?, ?, 'done', ?, ?, ?, ?, ?, ?, ?, ?, NULL, 1)
                   ON CONFLICT (cell_id) DO UPDATE SET spec = excluded.spec,
                       config = excluded.config, status = 'done', seed = excluded.seed,
                       robustact_version = excluded.robustact_version,
                       git_commit = excluded.git_commit, started_at = excluded.started_at,
                       finished_at = excluded.finished_at, seconds = excluded.seconds,
                       checkpoint = excluded.checkpoint, extra = excluded.extra, error = NULL,
                       attempts = MAX(cells.attempts, 1)""",
                (
                    cid,
                    spec,
                    cfg_json,
                    seed,
                    self._version,
                    self._commit,
                    start,
                    end,
                    seconds,
                    ckpt,
                    extra_json,
                ),
            )
            c.execute("DELETE FROM metrics WHERE cell_id = ?", (cid,))
            values = [(cid, r.protocol, r.attack, r.metric, r.value, r.eps, r.norm, r.kind,
                       r.item, r.n) for r in rows]  # fmt: skip
            c.executemany(
                "INSERT INTO metrics (cell_id, protocol, attack, metric, value, eps, norm, kind, "
                "item, n) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
        return cid

    def claim(
        self,
        config: Mapping[str, Any],
        *,
        owner: str,
        spec: str | None = None,
        seed: int | None = None,
    ) -> bool:
        """Marks a cell "running" for `owner` (this process) unless it is done or held by a
        live claim (see :mod:`robustact.experiments.claims`). Returns True when the caller
        should compute the cell.

        Workers of one run share an `owner` (a run id), so two of them never both compute
        a cell; a cell "running" under another owner is taken over only when that claim is
        stale (its pid is gone on this host, or its heartbeat is older than
        ``stale_after``), so two runs on one store share the work. The claim records this
        process's pid and host and a heartbeat (refresh it with
        :class:`~robustact.experiments.claims.Heartbeat` while the cell runs).
        """
        cid = cell_id(config)
        with self._transaction() as c:
            row = c.execute(
                "SELECT status, owner, owner_pid, owner_host, heartbeat FROM cells "
                "WHERE cell_id = ?",
                (cid,),
            ).fetchone()
            if row is not None and (
                row[0] == "done"
                or (row[0] == "running" and (row[1] == owner or self._live(row[1:])))
            ):
                return False
            now = time.time()
            c.execute(
                """INSERT INTO cells (cell_id, spec, config, status, seed, robustact_version,
                       git_commit, started_at, owner, attempts, owner_pid, owner_host, heartbeat)
                   VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, 1, ?, ?, ?)
                   ON CONFLICT (cell_id) DO UPDATE SET status = 'running',
                       owner = excluded.owner, started_at = excluded.started_at,
                       owner_pid = excluded.owner_pid, owner_host = excluded.owner_host,
                       heartbeat = excluded.heartbeat, attempts = cells.attempts + 1""",
                (
                    cid,
                    spec,
                    canonical_json(config),
                    self._seed(config, seed),
                    self._version,
                    self._commit,
                    now,
                    owner,
                    os.getpid(),
                    this_host(),
                    now,
                ),
            )
        return True

    def _live(self, holder: Sequence[Any]) -> bool:
        owner, pid, host, beat = holder
        return Claim(owner, pid, host, beat).is_live(self.stale_after)

    def claim_state(self, cell: str | Mapping[str, Any]) -> tuple[str, str | None]:
        """``(state, error)`` of a cell for a run deciding whether to wait for it.

        state: "absent", "done", "failed" (error: its message), "live" (running under a
        live claim) or "stale" (running, but its owner is gone: claim it).
        """
        cid = cell if isinstance(cell, str) else cell_id(cell)
        row = self.conn.execute(
            "SELECT status, error, owner, owner_pid, owner_host, heartbeat FROM cells "
            "WHERE cell_id = ?",
            (cid,),
        ).fetchone()
        if row is None:
            return "absent", None
        if row[0] == "running":
            return ("live" if self._live(row[2:]) else "stale"), None
        return str(row[0]), row[1]

    def fail_cell(self, config: Mapping[str, Any], error: str, *, spec: str | None = None) -> str:
        """Records that a cell raised (`error` is kept; a re-run retries the cell)."""
        cid = cell_id(config)
        with self._transaction() as c:
            c.execute(
                """INSERT INTO cells (cell_id, spec, config, status, seed, robustact_version,
                       git_commit, finished_at, error, attempts)
                   VALUES (?, ?, ?, 'failed', ?, ?, ?, ?, ?, 1)
                   ON CONFLICT (cell_id) DO UPDATE SET status = 'failed',
                       error = excluded.error, finished_at = excluded.finished_at
                   WHERE cells.status != 'done'""",
                (
                    cid,
                    spec,
                    canonical_json(config),
                    self._seed(config, None),
                    self._version,
                    self._commit,
                    time.time(),
                    str(error),
                ),
            )
        return cid

    @contextmanager
    def recording(
        self,
        config: Mapping[str, Any],
        *,
        seed: int | None = None,
        spec: str | None = None,
    ) -> Iterator[CellWriter]:
        """Times a cell and commits what was added to the writer when the block ends.

        On an exception the cell is recorded as failed (with the error) and it re-raises.

        Example:
            >>> with store.recording(cfg) as w:                    # doctest: +SKIP
            ...     w.add("seed", "clean", "accuracy", 98.4)
            ...     w.extra["history"] = hist
        """
        writer = CellWriter()
        start = time.time()
        try:
            yield writer
        except Exception as err:
            self.fail_cell(config, f"{type(err).__name__}: {err}", spec=spec)
            raise
        self.put_cell(
            config,
            writer.metrics,
            seed=seed,
            spec=spec,
            started_at=start,
            checkpoint=writer.checkpoint,
            extra=writer.extra,
        )

    @staticmethod
    def _seed(config: Mapping[str, Any], seed: int | None) -> int | None:
        if seed is None and isinstance(config, Mapping):
            cand = config.get("seed")
            seed = cand if is_int(cand) else None
        return None if seed is None else int(seed)

    # -- reading ------------------------------------------------------------------------

    def is_done(self, cell: str | Mapping[str, Any]) -> bool:
        """True when the cell (an id or a config) is committed with its metrics."""
        cid = cell if isinstance(cell, str) else cell_id(cell)
        row = self.conn.execute("SELECT status FROM cells WHERE cell_id = ?", (cid,)).fetchone()
        return row is not None and row[0] == "done"

    def done_ids(self) -> set[str]:
        """Ids of all finished cells (one query, for skipping many cells at once)."""
        return {r[0] for r in self.conn.execute("SELECT cell_id FROM cells WHERE status='done'")}

    def cell(self, cid: str) -> CellRecord | None:
        """The stored cell with id `cid`, or None."""
        cells = self._cells("WHERE cell_id = ?", (cid,))
        return cells[0] if cells else None

    def cells(self, status: str | None = "done") -> list[CellRecord]:
        """All cells with `status` ("done", "running", "failed", or None for all)."""
        if status is None:
            return self._cells("", ())
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES} or None, got {status!r}")
        return self._cells("WHERE status = ?", (status,))

    def _cells(self, where: str, args: tuple[Any, ...]) -> list[CellRecord]:
        cols = [f.name for f in CellRecord.__dataclass_fields__.values()]
        rows = self.conn.execute(
            f"SELECT {', '.join(cols)} FROM cells {where} ORDER BY rowid", args
        ).fetchall()
        out = []
        for r in rows:
            d = dict(zip(cols, r, strict=True))
            d["config"] = json.loads(d["config"])
            d["extra"] = json.loads(d["extra"]) if d["extra"] else {}
            out.append(CellRecord(**d))
        return out

    def metrics(self, cid: str) -> list[MetricRow]:
        """Metric rows of cell `cid`, in insertion order."""
        rows = self.conn.execute(
            "SELECT protocol, attack, metric, value, eps, norm, kind, item, n FROM metrics "
            "WHERE cell_id = ? ORDER BY rowid",
            (cid,),
        )
        return [MetricRow(*r) for r in rows]

    def records(self, *, include_extra: bool = False) -> list[dict[str, Any]]:
        """One flat dict per (finished cell, metric), ready for `pandas.DataFrame(records)`.

        Columns: `BASE_COLUMNS`, then the config flattened as ``cfg.<key>`` (nested keys
        dotted, lists as JSON strings) and, with `include_extra`, the scalar leaves of
        `extra` as ``extra.<key>`` (lists, e.g. histories, are left out).
        """
        with self._transaction("DEFERRED") as c:  # one snapshot for both queries
            cells = {
                cid: (cfg, extra)
                for cid, cfg, extra in c.execute(
                    "SELECT cell_id, config, extra FROM cells WHERE status = 'done'"
                )
            }
            cols = ", ".join(f"c.{k}" if k == "cell_id" else k for k in BASE_COLUMNS)
            rows = c.execute(
                f"SELECT {cols} FROM metrics m JOIN cells c ON c.cell_id = m.cell_id "
                "WHERE c.status = 'done' ORDER BY c.rowid, m.rowid"
            ).fetchall()
        out = []
        for r in rows:
            rec = dict(zip(BASE_COLUMNS, r, strict=True))
            cfg, extra = cells[rec["cell_id"]]
            rec.update(flatten(json.loads(cfg), "cfg."))
            if include_extra and extra:
                flat = flatten(json.loads(extra), "extra.")
                raw = json.loads(extra)
                rec.update({k: v for k, v in flat.items() if not is_list_leaf(raw, k)})
            out.append(rec)
        return out

    def to_csv(self, path: str | os.PathLike[str], *, include_extra: bool = False) -> Path:
        """Writes `records()` as CSV (atomically: temp file + rename); returns the path."""
        return write_records_csv(self.records(include_extra=include_extra), path)

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` result ("ok" when the file is sound)."""
        return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])

    def __len__(self) -> int:
        row = self.conn.execute("SELECT COUNT(*) FROM cells WHERE status = 'done'").fetchone()
        return int(row[0])


@dataclass
class CellWriter:
    """Collects a cell's metrics, checkpoint and extra inside `ResultStore.recording`."""

    metrics: list[MetricRow] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None

    def add(
        self,
        protocol: str,
        attack: str,
        metric: str,
        value: float,
        eps: float | None = None,
        norm: str | None = None,
        *,
        kind: str = "result",
        item: str | None = None,
        n: int | None = None,
    ) -> None:
        """Adds one metric row (validated when the cell is committed)."""
        self.metrics.append(MetricRow(protocol, attack, metric, value, eps, norm, kind, item, n))
