"""Two runs on one store share the work (each cell computed once, the same numbers as one
run), a claim held by a live run is waited for, a dead run's claim is taken over, and the
thread policy makes ``--workers`` irrelevant to the numbers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from robustact.experiments.claims import Heartbeat, pid_alive
from robustact.experiments.records import cell_id
from robustact.experiments.runner import run_spec
from robustact.experiments.spec import parse_spec
from robustact.experiments.store import ResultStore

SRC = Path(__file__).resolve().parents[1] / "src"


def tiny_doc(n_seeds: int = 2) -> dict[str, Any]:
    return {
        "name": "tiny",
        "grid": {
            "datasets": ["digits"],
            "models": [{"name": "mlp_general", "hidden": [16]}],
            "activations": ["relu", {"name": "srelu", "max_value": 0.5, "where": 0}],
            "seeds": list(range(n_seeds)),
        },
        "training": {"epochs": 1, "batch_size": 64, "lr": 0.01},
        "evaluation": {
            "protocols": [{"name": "mini", "attacks": [{"attack": "fgsm"}]}],
            "eps": [0.1],
            "n": 60,
            "fast": True,
            "masking": False,
        },
    }


def numbers(db: Path) -> dict[str, dict[tuple[Any, ...], float]]:
    """cell id -> metric key -> value, timings left out."""
    with ResultStore(db, read_only=True) as store:
        return {
            c.cell_id: {
                r.key(): r.value for r in store.metrics(c.cell_id) if "seconds" not in r.metric
            }
            for c in store.cells()
        }


def _cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen(
        [sys.executable, "-m", "robustact.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.slow
@pytest.mark.heavy
def test_two_concurrent_runs_compute_each_cell_once(tmp_path: Path) -> None:
    spec_file = tmp_path / "b.yaml"
    spec_file.write_text(yaml.safe_dump(tiny_doc()))
    db = tmp_path / "c.db"
    run = ("run", str(spec_file), "--store", str(db), "--workers", "2", "--no-progress",
           "--output-dir", str(tmp_path / "ck"))  # fmt: skip
    procs = [_cli(*run), _cli(*run)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    with ResultStore(db, read_only=True) as store:
        cells = store.cells(None)
        assert len(cells) == 4 and {c.status for c in cells} == {"done"}
        assert [c.attempts for c in cells] == [1, 1, 1, 1]  # each cell computed once
        assert {c.extra["threads"] for c in cells} == {1}
    # both report every cell: what one computed, the other counts as done by another run
    done_now = [int(o.split(" done now")[0].rsplit(" ", 1)[1]) for o, _ in outs]
    by_other = [int(o.split(" done by another run")[0].rsplit(" ", 1)[1]) for o, _ in outs]
    assert sum(done_now) == 4 and [d + b for d, b in zip(done_now, by_other, strict=True)] == [4, 4]
    # the same numbers, bit for bit, as one in-process run (--workers 1) -- even with this
    # process on 2 torch threads, since every cell runs on the same thread policy
    ref = tmp_path / "ref.db"
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        one = run_spec(parse_spec(tiny_doc()), ref, workers=1, progress=False,
                       output_dir=tmp_path / "ck_ref")  # fmt: skip
    finally:
        torch.set_num_threads(before)
    assert one.done == 4 and torch.get_num_threads() == before
    assert numbers(ref) == numbers(db)


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def _fake_claim(db: Path, config: dict[str, Any], pid: int, beat: float) -> None:
    with ResultStore(db) as store:
        assert store.claim(config, owner="other-run")
        store.conn.execute(
            "UPDATE cells SET owner_pid = ?, heartbeat = ?", (pid, beat)
        )  # as if another process held it


def test_runner_waits_for_a_live_claim_and_takes_over_a_dead_one(tmp_path: Path) -> None:
    spec = parse_spec(tiny_doc(n_seeds=1))
    cells = spec.cells()
    db = tmp_path / "r.db"
    other = _sleeper()
    try:
        _fake_claim(db, cells[0].config, other.pid, time.time())
        with ResultStore(db) as store:
            assert store.claim_state(cells[0].cell_id) == ("live", None)
        # the other run dies while we wait: its claim goes stale and we compute the cell
        threading.Timer(1.0, other.kill).start()
        t0 = time.perf_counter()
        out = run_spec(spec, db, progress=False, poll=0.2, output_dir=tmp_path / "ck")
        assert time.perf_counter() - t0 >= 1.0  # it did wait
    finally:
        other.kill()
        other.wait()
    assert (out.done, out.failed, out.count("skipped")) == (2, [], 0)
    with ResultStore(db, read_only=True) as store:
        assert store.cell(cells[0].cell_id).attempts == 2  # type: ignore[union-attr]


def test_runner_counts_a_cell_finished_by_another_run(tmp_path: Path) -> None:
    spec = parse_spec(tiny_doc(n_seeds=1))
    cells = spec.cells()
    db = tmp_path / "r.db"
    _fake_claim(db, cells[0].config, os.getpid(), time.time())  # live: this very process

    def finish() -> None:
        with ResultStore(db) as store:
            store.put_cell(cells[0].config, [("mini", "clean", "accuracy", 0.5)])

    threading.Timer(1.0, finish).start()
    out = run_spec(spec, db, progress=False, poll=0.2, output_dir=tmp_path / "ck")
    assert (out.done, out.count("skipped"), out.failed) == (1, 1, [])
    assert "1 done now, 0 failed, 1 done by another run" in out.lines()[0]
    with ResultStore(db, read_only=True) as store:
        assert store.metrics(cells[0].cell_id)[0].value == 0.5  # not recomputed


def test_expired_heartbeat_is_stale_and_heartbeat_keeps_a_claim_alive(tmp_path: Path) -> None:
    cfg = {"cell": 1}
    db = tmp_path / "r.db"
    other = _sleeper()
    try:
        assert pid_alive(other.pid)
        _fake_claim(db, cfg, other.pid, time.time() - 200)  # alive, but silent for 200 s
        with ResultStore(db) as store:
            assert store.claim_state(cfg)[0] == "stale"
            assert store.claim(cfg, owner="us")
        with ResultStore(db, stale_after=0.5) as store:
            with Heartbeat(db, cell_id(cfg), owner="us", interval=0.1) as beat:
                time.sleep(1.0)
                assert store.claim_state(cfg)[0] == "live"  # refreshed past stale_after
            assert beat.beats >= 3
            time.sleep(0.7)
            assert store.claim_state(cfg)[0] == "stale"  # no beat for longer than 0.5 s
    finally:
        other.kill()
        other.wait()
    assert not pid_alive(other.pid)


def test_a_store_written_before_claims_had_owners_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "old.db"
    with ResultStore(db) as store:
        store.put_cell({"cell": 1}, [("p", "a", "accuracy", 0.5)])
        store.claim({"cell": 2}, owner="dead-run")
    con = sqlite3.connect(db)  # drop the claim columns, as the first schema had none
    for col in ("owner_pid", "owner_host", "heartbeat"):
        con.execute(f"ALTER TABLE cells DROP COLUMN {col}")
    con.commit()
    con.close()
    with ResultStore(db, read_only=True) as store:  # reading needs no migration
        assert len(store) == 1
    with ResultStore(db) as store:
        assert store.claim_state({"cell": 2}) == ("stale", None)  # no heartbeat: stale
        assert store.claim({"cell": 2}, owner="new-run")
        assert store.claim_state({"cell": 2}) == ("live", None)
        assert store.metrics(cell_id({"cell": 1}))[0].value == 0.5
