"""Results store: round trip, resume, crash safety (real kill -9), concurrent writers, CSV."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import robustact
from robustact.experiments import MetricRow, ResultStore, cell_id
from robustact.experiments.records import canonical_json, flatten

CFG = {"model": "mlp", "activation": {"name": "srelu", "cap": 0.01}, "dataset": "mnist", "seed": 3}
ROWS: list[MetricRow | tuple[Any, ...] | dict[str, Any]] = [
    MetricRow("seed", "clean", "accuracy", 97.88),
    MetricRow("seed", "PGD", "accuracy", 89.61, 0.1, "linf"),
    ("adaptive", "PGD", "accuracy", 16.25, 0.1, "linf"),
    {
        "protocol": "adaptive",
        "attack": "worst",
        "metric": "accuracy",
        "value": 15.5,
        "eps": 0.1,
        "norm": "linf",
    },
]


def test_cell_id_is_stable_and_canonical() -> None:
    a = {"b": [1, 2.5], "a": {"y": 1, "x": "s"}}
    b = {"a": {"x": "s", "y": 1}, "b": (1, np.float64(2.5))}
    assert canonical_json(a) == '{"a":{"x":"s","y":1},"b":[1,2.5]}'
    assert cell_id(a) == cell_id(b)
    assert len(cell_id(a)) == 16 and int(cell_id(a), 16) >= 0
    assert cell_id({"lr": 1}) != cell_id({"lr": 1.0})  # as in JSON
    with pytest.raises(ValueError, match=r"config\['lr'\] is nan"):
        cell_id({"lr": float("nan")})

    @dataclasses.dataclass
    class Rep:
        verdict: str
        curve: tuple[tuple[float, float], ...]

    assert canonical_json({"r": Rep("masked", ((0.1, 0.5),))}) == (
        '{"r":{"curve":[[0.1,0.5]],"verdict":"masked"}}'
    )
    with pytest.raises(TypeError, match="unsupported type object"):
        cell_id({"x": object()})


def test_round_trip(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as store:
        assert not store.is_done(CFG)
        cid = store.put_cell(
            CFG,
            ROWS,
            started_at=1000.0,
            finished_at=1012.5,
            checkpoint=tmp_path / "m.st",
            extra={"history": [2.3, 0.4], "masking": {"verdict": "masked", "zero_grad": 0.88}},
        )
        assert cid == cell_id(CFG) and store.is_done(cid) and store.is_done(CFG)
        assert len(store) == 1 and store.done_ids() == {cid}
    with ResultStore(tmp_path / "r.sqlite") as store:  # reopen: everything persisted
        rec = store.cell(cid)
        assert rec is not None
        assert rec.config == CFG and rec.status == "done" and rec.seed == 3
        assert (rec.started_at, rec.finished_at, rec.seconds) == (1000.0, 1012.5, 12.5)
        assert rec.checkpoint == str(tmp_path / "m.st")
        assert rec.extra["masking"]["verdict"] == "masked" and rec.extra["history"] == [2.3, 0.4]
        assert rec.robustact_version == robustact.__version__
        assert rec.git_commit is None or len(rec.git_commit) == 40
        ms = store.metrics(cid)
        assert [m.value for m in ms] == [97.88, 89.61, 16.25, 15.5]
        assert ms[0] == MetricRow("seed", "clean", "accuracy", 97.88, None, None)
        recs = store.records(include_extra=True)
        assert len(recs) == 4
        r = recs[2]
        assert (r["protocol"], r["attack"], r["value"], r["eps"], r["norm"]) == (
            "adaptive",
            "PGD",
            16.25,
            0.1,
            "linf",
        )
        assert r["cfg.activation.name"] == "srelu" and r["cfg.activation.cap"] == 0.01
        assert r["cfg.model"] == "mlp" and r["seconds"] == 12.5
        assert r["extra.masking.verdict"] == "masked" and "extra.history" not in r
        assert "extra.masking.verdict" not in store.records()[0]
        assert store.integrity_check() == "ok"


def test_reput_replaces_metrics_and_validation(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as store:
        cid = store.put_cell(CFG, ROWS)
        store.put_cell(CFG, ROWS[:2])
        assert len(store.metrics(cid)) == 2 and len(store.records()) == 2
        with pytest.raises(ValueError, match="duplicate metric"):
            store.put_cell(CFG, [ROWS[0], ROWS[0]])
        with pytest.raises(ValueError, match="finite"):
            store.put_cell(CFG, [("seed", "clean", "accuracy", float("inf"))])
        with pytest.raises(TypeError, match="must be a number"):
            store.put_cell(CFG, [("seed", "clean", "accuracy", "97")])
        with pytest.raises(ValueError, match="eps must be None or a number >= 0"):
            store.put_cell(CFG, [("seed", "PGD", "accuracy", 1.0, -0.1)])
        # A failed validation never touches the stored cell.
        assert len(store.metrics(cid)) == 2


def test_skip_finished_and_failed_cells(tmp_path: Path) -> None:
    grid: list[dict[str, Any]] = [{"act": a, "seed": s} for a in ("relu", "srelu") for s in (0, 1)]
    computed: list[str] = []

    def run(store: ResultStore, crash_on: str | None) -> None:
        for cfg in grid:
            if store.is_done(cfg):
                continue
            with store.recording(cfg) as w:
                computed.append(f"{cfg['act']}{cfg['seed']}")
                if cfg["act"] == crash_on:
                    raise RuntimeError("diverged")
                w.add("seed", "clean", "accuracy", 90.0 + cfg["seed"])

    with ResultStore(tmp_path / "r.sqlite") as store:
        with pytest.raises(RuntimeError, match="diverged"):
            run(store, crash_on="srelu")
        assert computed == ["relu0", "relu1", "srelu0"]
        failed = store.cells("failed")
        assert [c.config for c in failed] == [grid[2]]
        assert failed[0].error == "RuntimeError: diverged"
        run(store, crash_on=None)  # resume: only the unfinished cells run
        assert computed == ["relu0", "relu1", "srelu0", "srelu0", "srelu1"]
        assert len(store) == 4 and store.cells("failed") == []
        run(store, crash_on=None)
        assert len(computed) == 5  # nothing left to do
        seconds = [c.seconds for c in store.cells()]
        assert all(s is not None and 0 <= s < 5 for s in seconds)


def test_claim(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as store:
        assert store.claim(CFG, owner="run1")
        assert not store.claim(CFG, owner="run1")  # same run: another worker has it
        assert not store.claim(CFG, owner="run2")  # another run: its owner (us) is alive
        assert store.claim_state(CFG) == ("live", None)
        # the owner died (a pid that no longer exists): a new run takes the cell over
        store.conn.execute("UPDATE cells SET owner_pid = ?", (_dead_pid(),))
        assert store.claim_state(CFG) == ("stale", None)
        assert store.claim(CFG, owner="run2")
        assert store.cell(cell_id(CFG)).attempts == 2  # type: ignore[union-attr]
        assert not store.is_done(CFG) and store.records() == []
        store.put_cell(CFG, ROWS)
        assert not store.claim(CFG, owner="run3")


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


_WRITER = textwrap.dedent(
    """
    import sys
    from robustact.experiments import ResultStore
    path, worker, n_cells, n_metrics = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = ResultStore(path, timeout=30)
    for i in range(n_cells):
        cfg = {"worker": worker, "i": i}
        rows = [("seed", f"a{j}", "accuracy", i + j / 1000.0, 0.1, "linf")
                for j in range(n_metrics)]
        store.put_cell(cfg, rows, extra={"blob": "x" * 2000})
        print(i, flush=True)
    """
)


def _spawn(path: Path, worker: str, n_cells: int, n_metrics: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), worker, str(n_cells), str(n_metrics)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _check_complete(path: Path, n_metrics: int) -> int:
    """Every stored cell has all its metrics with the right values; returns the cell count."""
    with ResultStore(path) as store:
        assert store.integrity_check() == "ok"
        cells = store.cells(None)
        for c in cells:
            assert c.status == "done"
            ms = store.metrics(c.cell_id)
            assert len(ms) == n_metrics
            assert [m.value for m in ms] == [c.config["i"] + j / 1000.0 for j in range(n_metrics)]
        return len(cells)


def test_kill_9_never_leaves_half_a_cell(tmp_path: Path) -> None:
    n_metrics = 300  # a long transaction, so the kill often lands inside one
    for trial, delay in enumerate((0.0, 0.15, 0.4, 0.9)):
        path = tmp_path / f"kill{trial}.sqlite"
        proc = _spawn(path, "w", 100_000, n_metrics)
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one cell committed (and the import finished)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        assert _check_complete(path, n_metrics) >= 1
        # Raw SQL too: no metric row without a done cell, and the same count per cell.
        con = sqlite3.connect(path)
        counts = con.execute(
            "SELECT c.status, COUNT(m.cell_id) FROM cells c LEFT JOIN metrics m "
            "USING (cell_id) GROUP BY c.cell_id"
        ).fetchall()
        orphans = con.execute(
            "SELECT COUNT(*) FROM metrics WHERE cell_id NOT IN (SELECT cell_id FROM cells)"
        ).fetchone()[0]
        con.close()
        assert orphans == 0 and set(counts) == {("done", n_metrics)}


def test_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "conc.sqlite"
    ResultStore(path).close()  # create the schema first, as a runner would
    procs = [_spawn(path, w, 40, 20) for w in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert _check_complete(path, 20) == 80
    with ResultStore(path) as store:
        assert {r["cfg.worker"] for r in store.records()} == {"a", "b"}


def test_store_refuses_forked_use(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.sqlite")
    store._pid = -1  # what a forked child would see
    with pytest.raises(RuntimeError, match="inside each worker process"):
        store.is_done(CFG)
    store._pid = os.getpid()
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.is_done(CFG)


def test_csv_export_exact(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.put_cell(
            {"act": "relu", "opt": {"lr": 0.001}},
            [("seed", "clean", "accuracy", 0.1)],
            seed=0,
            started_at=10.0,
            finished_at=12.25,
        )
        store.put_cell(
            {"act": "s,relu", "tags": ["a", "b"]},
            [("seed", "PGD", "accuracy", 1 / 3, 0.1, "linf")],
            finished_at=20.0,
        )
        out = store.to_csv(tmp_path / "out" / "r.csv")
    text = out.read_text(encoding="utf-8")
    v = robustact.__version__
    commit = ResultStore(tmp_path / "r.sqlite")._commit or ""
    ids = [
        cell_id({"act": "relu", "opt": {"lr": 0.001}}),
        cell_id({"act": "s,relu", "tags": ["a", "b"]}),
    ]
    head = (
        "cell_id,spec,seed,kind,protocol,attack,item,metric,value,eps,norm,n,robustact_version,"
        "git_commit,started_at,finished_at,seconds,checkpoint,cfg.act,cfg.opt.lr,cfg.tags\n"
    )
    assert text == (
        head
        + f"{ids[0]},,0,result,seed,clean,,accuracy,0.1,,,,{v},{commit},10.0,12.25,2.25,,relu,"
        + "0.001,\n"
        + f"{ids[1]},,,result,seed,PGD,,accuracy,0.3333333333333333,0.1,linf,,{v},{commit},,"
        + "20.0,,,"
        + '"s,relu",,"[""a"",""b""]"\n'
    )
    rows = list(csv.DictReader(text.splitlines()))
    assert float(rows[1]["value"]) == 1 / 3  # bit-exact round trip
    assert json.loads(rows[1]["cfg.tags"]) == ["a", "b"]
    assert [p.name for p in out.parent.iterdir()] == ["r.csv"]  # no temp file left


def test_flatten() -> None:
    assert flatten({"a": {"b": {"c": 1}}, "l": [1, {"x": 2}], "n": None}, "cfg.") == {
        "cfg.a.b.c": 1,
        "cfg.l": '[1,{"x":2}]',
        "cfg.n": None,
    }
