"""Hostile inputs to the CLI: store files that are folders, not SQLite, another
application's, read-only or empty; unwritable output paths found before any work; a
diverging training; non-compute devices; and an escaped report caption. Each is one line
on stderr with exit code 2 (or the right behaviour), and a report never writes its input."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from robustact.cli import main
from robustact.experiments import ResultStore
from robustact.experiments.store import StoreError

SRC = Path(__file__).resolve().parents[1] / "src"
ROWS = [("seed", "clean", "accuracy", 0.9), ("seed", "PGD", "accuracy", 0.5, 0.1, "linf")]


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    assert main(argv) == 2
    line = _error_line(capsys)
    for n in needles:
        assert n in line, line
    return line


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _store(path: Path, protocol: str = "seed") -> Path:
    with ResultStore(path) as store:
        for act in ("relu", "srelu"):
            for ds in ("a", "b"):
                clean, pgd = (0.9, 0.1) if act == "relu" else (0.8, 0.4)
                rows = [(protocol, "clean", "accuracy", clean),
                        (protocol, "PGD", "accuracy", pgd, 0.1, "linf")]  # fmt: skip
                store.put_cell({"activation": act, "dataset": ds, "seed": 0}, rows)
    return path


# --------------------------------------------------------------------------- report is read-only


def test_report_leaves_an_empty_file_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    _fails(["report", str(empty), "--out", str(tmp_path / "r")], capsys, "empty file")
    assert empty.stat().st_size == 0 and sorted(os.listdir(tmp_path)) == ["empty.db"]


def test_report_adds_nothing_to_a_foreign_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "app.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    con.commit()
    con.close()
    before = _digest(other)
    _fails(["report", str(other), "--out", str(tmp_path / "r")], capsys,
           "not a robustact results store", "customers")  # fmt: skip
    assert _digest(other) == before
    # ... nor does run: another application's database is refused, not extended
    spec = tmp_path / "s.yaml"
    spec.write_text("name: x\n")
    with pytest.raises(StoreError, match="pass a new --store file"):
        ResultStore(other)
    assert _digest(other) == before
    tables = sqlite3.connect(other).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("customers",)]


def test_report_on_a_foreign_cells_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "cells.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE cells (x INTEGER)")
    con.commit()
    con.close()
    before = _digest(other)
    _fails(["report", str(other), "--out", str(tmp_path / "r")], capsys, "not robustact's")
    with pytest.raises(StoreError, match="not robustact's"):
        ResultStore(other)  # and run refuses it too, before writing anything
    assert _digest(other) == before


def test_report_on_not_sqlite_and_on_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("not a database at all\n" * 10)
    _fails(["report", str(junk), "--out", str(tmp_path / "r")], capsys, "not a SQLite file")
    _fails(["report", str(tmp_path), "--out", str(tmp_path / "r")], capsys, "is a folder")
    assert junk.read_text() == "not a database at all\n" * 10


def test_report_reads_without_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _store(tmp_path / "r.db")
    before = _digest(db)
    with ResultStore(db, read_only=True) as store:
        assert len(store) == 4
        with pytest.raises(StoreError, match="read_only=True"):
            store.put_cell({"x": 1}, ROWS)
    assert main(["report", str(db), "--out", str(tmp_path / "rep"), "--formats", "md"]) == 0
    assert _digest(db) == before and (tmp_path / "rep" / "report.md").is_file()


def test_report_escapes_the_protocol_caption(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    db = _store(tmp_path / "r.db", protocol=evil)
    assert main(["report", str(db), "--out", str(tmp_path / "rep")]) == 0
    for name in ("report.md", "report.html"):
        text = (tmp_path / "rep" / name).read_text()
        assert "alert(1)" in text and "<script>alert" not in text, name


# --------------------------------------------------------------------------- read-only media

_NO_OVERRIDE = [
    "setpriv",
    "--bounding-set=-dac_override,-fowner",
    "--inh-caps=-dac_override,-fowner",
]


@pytest.fixture
def read_only_dir() -> Iterator[Path]:
    """A folder (and its files) this test's subprocesses cannot write: modes 0555/0444, and
    root's permission override dropped with setpriv."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a folder read-only")
    d = Path(tempfile.mkdtemp(prefix="robustact-ro-"))
    yield d
    for p in [d, *d.rglob("*")]:
        p.chmod(0o755)
    shutil.rmtree(d)


def _cli_denied(*args: str) -> subprocess.CompletedProcess[str]:
    prefix = _NO_OVERRIDE if os.geteuid() == 0 else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "robustact.cli", *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(SRC)},
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.heavy
def test_read_only_store_can_be_reported_and_is_refused_by_run(
    read_only_dir: Path, tmp_path: Path
) -> None:
    db = _store(read_only_dir / "r.db")
    assert not (read_only_dir / "r.db-wal").exists()  # closed cleanly: WAL checkpointed
    before = _digest(db)
    db.chmod(0o444)
    read_only_dir.chmod(0o555)
    out = tmp_path / "rep"
    rep = _cli_denied("report", str(db), "--out", str(out), "--formats", "md", "csv")
    assert rep.returncode == 0, rep.stderr
    assert "| a |" in (out / "report.md").read_text()
    spec = tmp_path / "s.yaml"
    spec.write_text(_TINY)
    run = _cli_denied("run", str(spec), "--store", str(db), "--no-progress",
                      "--output-dir", str(tmp_path / "ck"))  # fmt: skip
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "cannot write results store" in run.stderr and "Traceback" not in run.stderr
    # unwritable output paths are found before any work
    bad = _cli_denied("run", str(spec), "--store", str(tmp_path / "s.db"), "--no-progress",
                      "--output-dir", str(read_only_dir / "ck"))  # fmt: skip
    assert bad.returncode == 2 and "--output-dir" in bad.stderr and "cannot write" in bad.stderr
    assert not (tmp_path / "s.db").exists()
    assert _digest(db) == before and sorted(os.listdir(read_only_dir)) == ["r.db"]


# --------------------------------------------------------------------------- run and paths

_TINY = """
name: tiny
grid:
  datasets: [digits]
  models: [{name: mlp_general, hidden: [16]}]
  activations: [relu]
  seeds: [0]
training: {epochs: 1, batch_size: 64}
evaluation:
  protocols: [{name: mini, attacks: [{attack: fgsm}]}]
  eps: [0.1]
  n: 30
  fast: true
"""


def test_run_store_problems_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(_TINY)
    base = ["run", str(spec), "--no-progress", "--output-dir", str(tmp_path / "ck")]
    _fails([*base, "--store", str(tmp_path)], capsys, "is a folder")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00\x01garbage" * 100)
    _fails([*base, "--store", str(junk)], capsys, "not a SQLite file")
    under_file = junk / "x.db"  # a parent that is a file
    _fails([*base, "--store", str(under_file)], capsys, "cannot create results store")
    _fails([*base, "--store", str(tmp_path / "ok.db"), "--threads", "0"], capsys, "--threads")
    assert not (tmp_path / "ok.db").exists() and not (tmp_path / "ck").exists()


def test_output_paths_are_checked_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "file.txt"
    f.write_text("x")
    t0 = time.perf_counter()
    # the checkpoint does not exist either: the output path is checked first, at once
    _fails(
        ["evaluate", "nope", "--eps", "0.1", "--json", str(tmp_path)],
        capsys,
        "--json",
        "is a folder",
    )
    _fails(
        ["attack", "nope", "--eps", "0.1", "--json", str(f / "a.json")],
        capsys,
        "--json",
        "under the file",
    )
    _fails(["attack", "nope", "--eps", "0.1", "--out", str(f)], capsys, "--out", "is a file")
    _fails(["diagnose", "nope", "--eps", "0.1", "--out", str(f)], capsys, "--out", "is a file")
    _fails(["train", "--out", str(f / "sub")], capsys, "--out", "under the file")
    _fails(["report", "nope.db", "--out", str(f)], capsys, "--out", "is a file")
    spec = tmp_path / "s.yaml"
    spec.write_text(_TINY)
    _fails(["run", str(spec), "--store", str(tmp_path / "r.db"), "--output-dir", str(f)],
           capsys, "--output-dir", "is a file")  # fmt: skip
    assert time.perf_counter() - t0 < 20 and not (tmp_path / "r.db").exists()
    assert main(["run", str(spec), "--dry-run", "--output-dir", str(f)]) == 0  # nothing written


@pytest.mark.parametrize("device", ["meta", "cuda:99", "fpga", "mps"])
def test_non_compute_devices_are_refused(
    device: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if device == "mps":
        import torch

        if torch.backends.mps.is_available():
            pytest.skip("MPS is available here")
    _fails(["train", "--out", str(tmp_path / "o"), "--device", device], capsys, "--device")
    assert not (tmp_path / "o").exists()


def test_diverging_training_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--out", str(tmp_path / "o"), "--lr", "1e30", "--epochs", "1",
            "--model-arg", "hidden=[8]", "--no-progress", "--quick"]  # fmt: skip
    _fails(argv, capsys, "diverged", "lr")


def test_report_refuses_a_metric_or_protocol_the_store_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _store(tmp_path / "r.db")
    rep = ["report", str(db), "--out", str(tmp_path / "rep")]
    _fails([*rep, "--metric", "acuracy"], capsys, "--metric acuracy", "holds accuracy")
    _fails([*rep, "--protocol", "seed", "sead"], capsys, "--protocol sead", "holds seed")
    assert not (tmp_path / "rep").exists()
