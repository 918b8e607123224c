"""Count how robustact answers bad input: one-line errors versus tracebacks and internal errors.

Usage:
    PYTHONPATH=src .venv/bin/python benchmarks/bad_inputs.py [--kill-trials 2]
        [--out benchmarks/results/bad_inputs.json] [--skip-runs]

1. ``cli``: ~170 bad ``robustact`` command lines, run in this process through
   ``robustact.cli.main`` (stdout/stderr captured). *Handled* = exit code 2 and every stderr
   line a ``robustact ...: error:`` line (a spec with several problems lists one per line),
   no traceback, no "internal error". Anything else (exit 0 = bad input accepted, exit 1,
   an exception escaping ``main``, a multi-line message) is *not handled*.
2. ``api``: ~100 bad calls into the library. *Handled* = an exception of a documented type
   (ValueError and its subclasses DatasetError/SpecError/ConfigError/CheckpointError,
   TypeError, LookupError, StoreError, FloatingPointError, FileNotFoundError) with a
   one-line message; no exception, another type or a multi-line message is not handled.
3. ``kill9``: ``robustact run`` of a 4-cell grid with 2 workers killed with SIGKILL (the
   whole process group) after its first committed cell, then resumed; checks that no cell
   is lost or duplicated and the numbers equal an uninterrupted run's.
4. ``concurrent``: two ``robustact run --workers 2`` on one store at once: each cell
   computed once (attempts == 1), numbers equal an uninterrupted run's.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from robustact import _validate as V
from robustact.attacks import get_attack
from robustact.cli import main
from robustact.data import ImageDataset, load_dataset, train_val_split
from robustact.data.idx import read_idx
from robustact.data.splits import BatchLoader
from robustact.experiments import ResultStore, load_spec, parse_spec, run_spec
from robustact.models import create_model
from robustact.report import build_report
from robustact.stats import compare_methods, friedman, mcnemar, nemenyi_q, wilson_interval
from robustact.surgery import replace_activations
from robustact.train import TrainConfig, fit, get_objective, load_checkpoint
from robustact.train import load_checkpoint as load_cell_model

Case = tuple[str, Callable[[], Any]]
CliCase = tuple[str, list[str]]

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

TINY_SPEC = """
name: tiny
grid:
  datasets: [digits]
  models: [{name: mlp_general, hidden: [16]}]
  activations: [relu, {name: srelu, max_value: 0.5, where: 0}]
  seeds: [0, 1]
training: {epochs: 1, batch_size: 64, lr: 0.01}
evaluation:
  protocols: [{name: mini, attacks: [{attack: fgsm}]}]
  eps: [0.1]
  n: 60
  fast: true
"""


# --------------------------------------------------------------------------- CLI


def run_cli(argv: list[str]) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    code: int | str
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse
            code = e.code if isinstance(e.code, int) else 2
        except BaseException as e:  # escaped main: a traceback for the user
            code = f"raised {type(e).__name__}"
    lines = [ln for ln in err.getvalue().strip().splitlines() if ln.strip()]
    good = (
        code == 2
        and bool(lines)
        and all(ln.startswith("robustact") and ": error: " in ln for ln in lines)
        and not any("Traceback" in ln or "internal error" in ln for ln in lines)
    )
    if good:
        outcome = "one-line error" if len(lines) == 1 else "one line per problem"
    elif code == 0:
        outcome = "accepted"
    elif isinstance(code, str):
        outcome = code
    elif any("internal error" in ln for ln in lines):
        outcome = "internal error"
    else:
        outcome = f"exit {code}, {len(lines)} stderr lines"
    return {
        "argv": argv,
        "handled": good,
        "outcome": outcome,
        "message": lines[0][:300] if lines else "",
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _files(d: Path) -> dict[str, Path]:
    """Bad files to feed the commands."""
    f: dict[str, Path] = {}
    f["text"] = d / "text.txt"
    f["text"].write_text("hello\n")
    f["empty"] = d / "empty.db"
    f["empty"].touch()
    f["junk_db"] = d / "junk.db"
    f["junk_db"].write_bytes(os.urandom(4096))
    f["foreign"] = d / "foreign.db"
    con = sqlite3.connect(f["foreign"])
    con.execute("CREATE TABLE customers (id INTEGER)")
    con.commit()
    con.close()
    f["foreign_cells"] = d / "foreign_cells.db"
    con = sqlite3.connect(f["foreign_cells"])
    con.execute("CREATE TABLE cells (x INTEGER)")
    con.commit()
    con.close()
    f["folder"] = d / "folder"
    f["folder"].mkdir()
    specs = {
        "spec_binary": os.urandom(600),
        "spec_empty": b"",
        "spec_list": b"- 1\n- 2\n",
        "spec_bad_yaml": b"name: [unclosed\n",
        "spec_python_tag": b"name: !!python/object/apply:os.system ['true']\n",
        "spec_unknown_key": TINY_SPEC.encode() + b"colour: blue\n",
        "spec_bad_model": TINY_SPEC.replace("mlp_general", "mlpx").encode(),
        "spec_bad_act": TINY_SPEC.replace("srelu", "srelux").encode(),
        "spec_bad_eps": TINY_SPEC.replace("eps: [0.1]", "eps: [-1]").encode(),
        "spec_bad_epochs": TINY_SPEC.replace("epochs: 1", "epochs: 0").encode(),
        "spec_bad_seed": TINY_SPEC.replace("seeds: [0, 1]", "seeds: [a]").encode(),
        "spec_bad_attack": TINY_SPEC.replace("fgsm", "fgsmx").encode(),
        "spec_bad_dataset": TINY_SPEC.replace("[digits]", "[digitz]").encode(),
        "spec_no_grid": b"name: x\n",
        "spec_nan_lr": TINY_SPEC.replace("lr: 0.01", "lr: .nan").encode(),
        "spec_n_zero": TINY_SPEC.replace("n: 60", "n: 0").encode(),
        "spec_bomb": b"name: b\ngrid:\n  seeds: &a [1, 1]\n"
        + b"".join(f"  x{i}: &a{i} [*a, *a]\n".encode() for i in range(2)),
    }
    for name, data in specs.items():
        f[name] = d / f"{name}.yaml"
        f[name].write_bytes(data)
    f["spec"] = d / "tiny.yaml"
    f["spec"].write_text(TINY_SPEC)
    f["ckpt_junk"] = d / "junk_ckpt"
    f["ckpt_junk"].mkdir()
    (f["ckpt_junk"] / "model.safetensors").write_bytes(os.urandom(256))
    (f["ckpt_junk"] / "model.json").write_text("{not json")
    f["ckpt_sidecar"] = d / "bad_sidecar"
    f["ckpt_sidecar"].mkdir()
    (f["ckpt_sidecar"] / "model.safetensors").write_bytes(
        b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "
    )
    (f["ckpt_sidecar"] / "model.json").write_text('{"format": 1, "model": "abc"}')
    f["ckpt_nosidecar"] = d / "nosidecar.safetensors"
    f["ckpt_nosidecar"].write_bytes(b"x")
    return f


def _paths(d: Path, f: dict[str, Path]) -> SimpleNamespace:
    """Output folder, a text file, a folder and a path under a file, as strings."""
    return SimpleNamespace(out=str(d / "o"), text=str(f["text"]), folder=str(f["folder"]),
                           under=str(f["text"] / "x"))  # fmt: skip


def _cli_argparse_level(d: Path, ck: Path, f: dict[str, Path]) -> list[CliCase]:
    p = _paths(d, f)
    c: list[tuple[str, list[str]]] = []
    add = c.append
    for argv in ([], ["nosuch"], ["--nosuch"], ["train"], ["attack"], ["evaluate"],
                 ["diagnose"], ["run"], ["report"], ["list"], ["list", "nosuch"],
                 ["train", "--out"], ["train", "--out", p.out, "--epochs", "x"],
                 ["train", "--out", p.out, "--lr", "fast"],
                 ["train", "--out", p.out, "--seed", "1.5"],
                 ["train", "--out", p.out, "--batch-size", "many"],
                 ["train", "--out", p.out, "--insert", "middle"],
                 ["train", "--out", p.out, "--where", "act1", "--insert", "before_output"],
                 ["train", "--out", p.out, "--preset", "nosuch"],
                 ["train", "--out", p.out, "--val-fraction", "half"],
                 ["attack", str(ck)], ["attack", str(ck), "--eps", "x"],
                 ["evaluate", str(ck)], ["evaluate", str(ck), "--eps"],
                 ["evaluate", str(ck), "--eps", "0.1", "--n", "1.5"],
                 ["diagnose", str(ck), "--eps", "0.1"],
                 ["run", str(f["spec"]), "--workers", "two"],
                 ["run", str(f["spec"]), "--backend", "dask"],
                 ["report", str(f["empty"]), "--formats", "pdf"],
                 ["demo", "--seed", "x"], ["demo", "--workers", "x"]):  # fmt: skip
        add(("argparse", list(argv)))
    return c


def _cli_train(d: Path, ck: Path, f: dict[str, Path]) -> list[CliCase]:
    p = _paths(d, f)
    c: list[tuple[str, list[str]]] = []
    add = c.append
    t = ["train", "--out", p.out, "--quick", "--no-progress", "--model-arg", "hidden=[8]"]
    for extra in (["--dataset", "nosuch"], ["--dataset", "mnist", "--data-root", p.folder],
                  ["--model", "nosuch"], ["--model-arg", "hiden=[8]"], ["--model-arg", "nokey"],
                  ["--model-arg", "hidden=[0]"], ["--model-arg", "hidden=abc"],
                  ["--activation", "nosuch"],
                  ["--activation", "srelu", "--act-arg", "max_value=-1"],
                  ["--activation", "srelu", "--act-arg", "max_valu=1"],
                  ["--activation", "srelu", "--act-arg", "max_value=abc"],
                  ["--activation", "brelu", "--act-arg", "alpha=.nan"],
                  ["--objective", "nosuch"], ["--objective", "pgd_at", "--objective-arg", "eps=-1"],
                  ["--objective", "pgd_at", "--objective-arg", "steps=0"],
                  ["--objective", "trades", "--objective-arg", "beta=abc"],
                  ["--epochs", "0"], ["--epochs", "-3"], ["--batch-size", "0"],
                  ["--lr", "-1"], ["--lr", "nan"], ["--lr", "inf"], ["--lr", "1e30"],
                  ["--optimizer", "nosuch"], ["--schedule", "nosuch"],
                  ["--train-arg", "nosuch=1"], ["--train-arg", "weight_decay=-1"],
                  ["--train-arg", "seed=3"], ["--train-arg", "early_stopping=abc"],
                  ["--val-fraction", "0"], ["--val-fraction", "1"], ["--val-fraction", "nan"],
                  ["--where", "nosuch_layer"], ["--where", "[99]"], ["--where", "re:("],
                  ["--insert", "before_output", "--width", "0"], ["--width", "4"],
                  ["--device", "meta"], ["--device", "cuda"], ["--device", "fpga"],
                  ["--device", ""], ["--device", "cuda:99"],
                  ["--dataset-arg", "size=0"], ["--dataset-arg", "nosuch=1"],
                  ["--dataset-arg", "size=abc"]):  # fmt: skip
        add(("train", [*t, *extra]))
    add(("train", ["train", "--out", p.text, "--quick"]))
    add(("train", ["train", "--out", p.under, "--quick"]))
    add(("train", ["train", "--out", str(ck.parent), "--quick"]))  # holds a run, no --resume
    return c


def _cli_attack_evaluate_diagnose(d: Path, ck: Path, f: dict[str, Path]) -> list[CliCase]:
    p = _paths(d, f)
    c: list[tuple[str, list[str]]] = []
    add = c.append
    a = ["attack", str(ck), "--eps", "0.1", "--n", "20"]
    for extra in (["--attack", "nosuch"], ["--norm", "L3"], ["--eps", "-1"], ["--eps", "nan"],
                  ["--eps", "inf"], ["--eot", "0"], ["--batch-size", "0"], ["--n", "0"],
                  ["--n", "-5"], ["--split", "nosuch"], ["--dataset", "nosuch"],
                  ["--dataset", "mnist", "--data-root", p.folder],
                  ["--dataset", "digits", "--dataset-arg", "size=16"],
                  ["--attack-arg", "steps=0"], ["--attack-arg", "nosuch=1"],
                  ["--attack-arg", "steps=abc"], ["--attack-arg", "novalue"],
                  ["--json", p.folder], ["--json", p.under], ["--out", p.folder],
                  ["--device", "meta"], ["--n", "abc"]):  # fmt: skip
        add(("attack", [*a, *extra]))
    for bad in (str(d / "missing"), p.folder, str(f["ckpt_junk"]), str(f["ckpt_sidecar"]),
                str(f["ckpt_nosidecar"]), p.text):  # fmt: skip
        add(("checkpoint", ["attack", bad, "--eps", "0.1"]))
        add(("checkpoint", ["evaluate", bad, "--eps", "0.1"]))
        add(("checkpoint", ["diagnose", bad, "--eps", "0.1", "--out", p.out]))
    e = ["evaluate", str(ck), "--n", "20", "--fast"]
    for extra in (["--eps", "-0.1"], ["--eps", "nan"], ["--eps", "0.1", "--protocol", "nosuch"],
                  ["--eps", "0.1", "--norm", "linfinity"], ["--eps", "0.1", "--n", "0"],
                  ["--eps", "0.1", "--batch-size", "0"], ["--eps", "0.1", "--masking-n", "0"],
                  ["--eps", "0.1", "--json", p.folder], ["--eps", "0.1", "--json", p.under],
                  ["--eps", "0.1", "--split", "validation"],
                  ["--eps", "0.1", "--dataset", "nosuch"], ["--eps", "0.1", "--device", "meta"],
                  ["--eps", "0.1", "--dataset-arg", "x"]):  # fmt: skip
        add(("evaluate", [*e, *extra]))
    g = ["diagnose", str(ck), "--n", "20", "--fast"]
    for extra in (["--eps", "-1", "--out", p.out], ["--eps", "0.1", "--out", p.text],
                  ["--eps", "0.1", "--out", p.under],
                  ["--eps", "0.1", "--out", p.out, "--zg-steps", "0"],
                  ["--eps", "0.1", "--out", p.out, "--zg-step-size", "-1"],
                  ["--eps", "0.1", "--out", p.out, "--norm", "l7"],
                  ["--eps", "0.1", "--out", p.out, "--n", "0"],
                  ["--eps", "0.1", "--out", p.out, "--device", "meta"]):  # fmt: skip
        add(("diagnose", [*g, *extra]))
    return c


def _cli_run(d: Path, ck: Path, f: dict[str, Path]) -> list[CliCase]:
    p = _paths(d, f)
    c: list[tuple[str, list[str]]] = []
    add = c.append
    r = ["run", "--no-progress", "--store", str(d / "s.db"), "--output-dir", str(d / "ck")]
    for name in sorted(k for k in f if k.startswith("spec_")):
        add(("run spec", ["run", str(f[name]), "--dry-run"]))
    for extra in ([str(d / "missing.yaml")], ["nosuch_recipe"], [p.folder],
                  [str(f["spec"]), "--workers", "0"], [str(f["spec"]), "--workers", "-2"],
                  [str(f["spec"]), "--threads", "0"], [str(f["spec"]), "--device", "meta"],
                  [str(f["spec"]), "--device", "cuda:3"]):  # fmt: skip
        add(("run", [*r, *extra]))
    s = ["run", str(f["spec"]), "--no-progress", "--output-dir", str(d / "ck2")]
    for store in (p.folder, str(f["junk_db"]), str(f["foreign"]), str(f["foreign_cells"]), p.text,
                  p.under):  # fmt: skip
        add(("run store", [*s, "--store", store]))
    add(("run", ["run", str(f["spec"]), "--store", str(d / "s2.db"), "--output-dir", p.text]))
    add(("run", ["run", str(f["spec"]), "--store", str(d / "s2.db"), "--output-dir", p.under]))
    return c


def _cli_report(d: Path, ck: Path, f: dict[str, Path]) -> list[CliCase]:
    p = _paths(d, f)
    c: list[tuple[str, list[str]]] = []
    add = c.append
    for db in (str(d / "missing.db"), str(f["empty"]), str(f["junk_db"]), str(f["foreign"]),
               str(f["foreign_cells"]), p.folder, p.text, p.under):  # fmt: skip
        add(("report", ["report", db, "--out", str(d / "rep")]))
    add(("report", ["report", str(d / "good.db"), "--out", p.text]))
    add(("report", ["report", str(d / "good.db"), "--out", p.under]))
    add(("report", ["report", str(d / "good.db"), "--out", str(d / "rep"), "--metric", "nosuch"]))
    add(("report", ["report", str(d / "good.db"), "--out", str(d / "rep"), "--protocol", "nosuch"]))
    add(("report", ["report", str(d / "good.db"), "--out", str(d / "rep"),
                    "--method-key", "cfg.nosuch"]))  # fmt: skip
    add(("demo", ["demo", "--device", "meta"]))
    add(("demo", ["demo", "--out", p.text]))
    add(("demo", ["demo", "--workers", "0", "--out", str(d / "demo")]))
    return c


def cli_cases(d: Path, ck: Path, f: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """About 190 bad command lines, by command."""
    groups = (_cli_argparse_level, _cli_train, _cli_attack_evaluate_diagnose, _cli_run, _cli_report)
    return [case for group in groups for case in group(d, ck, f)]


# --------------------------------------------------------------------------- API


def _api_context(d: Path, ck: Path, f: dict[str, Path]) -> SimpleNamespace:
    """The model, tensors, spec and files the API cases use."""
    model = load_cell_model(ck)[0]
    x = torch.rand(4, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    nan_x = x.clone()
    nan_x[0, 0, 0, 0] = float("nan")
    pgd = get_attack("pgd", eps=0.1)
    s = {"a": 1}
    good = {"name": "t", "grid": {"datasets": ["digits"], "models": ["mlp_general"],
                                   "activations": ["relu"], "seeds": [0]},
            "evaluation": {"eps": [0.1]}}  # fmt: skip

    def spec(**kw: Any) -> dict[str, Any]:
        doc = json.loads(json.dumps(good))
        for k, v in kw.items():
            sect, _, key = k.partition("__")
            doc[sect][key] = v
        return doc

    idx_over = d / "over-idx3-ubyte"
    idx_over.write_bytes(bytes([0, 0, 8, 3]) + (b"\xff\xff\xff\xff" * 3))
    idx_trunc = d / "trunc-idx1-ubyte"
    idx_trunc.write_bytes(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + b"\x00" * 5)
    return SimpleNamespace(
        model=model,
        x=x,
        y=y,
        nan_x=nan_x,
        pgd=pgd,
        s=s,
        good=good,
        spec=spec,
        idx_over=idx_over,
        idx_trunc=idx_trunc,
        d=d,
        f=f,
        ck=ck,
    )


def _api_store(c: SimpleNamespace) -> list[Case]:
    return [
        ("ResultStore(folder)", lambda: ResultStore(c.f["folder"])),
        ("ResultStore(junk)", lambda: ResultStore(c.f["junk_db"])),
        ("ResultStore(foreign)", lambda: ResultStore(c.f["foreign"])),
        ("ResultStore(foreign cells)", lambda: ResultStore(c.f["foreign_cells"])),
        ("ResultStore(under a file)", lambda: ResultStore(c.f["text"] / "x.db")),
        ("ResultStore(text)", lambda: ResultStore(c.f["text"])),
        ("ResultStore(ro, missing)", lambda: ResultStore(c.d / "nope.db", read_only=True)),
        ("ResultStore(ro, empty)", lambda: ResultStore(c.f["empty"], read_only=True)),
        ("ResultStore(ro, foreign)", lambda: ResultStore(c.f["foreign"], read_only=True)),
        ("ResultStore(timeout=0)", lambda: ResultStore(c.d / "t.db", timeout=0)),
        ("ResultStore(stale_after=-1)", lambda: ResultStore(c.d / "t.db", stale_after=-1)),
        (
            "put_cell(nan metric)",
            lambda: ResultStore(c.d / "p.db").put_cell(c.s, [("a", "b", "c", math.nan)]),
        ),
        ("put_cell(bad row)", lambda: ResultStore(c.d / "p.db").put_cell(c.s, [("a",)])),
        ("put_cell(config set)", lambda: ResultStore(c.d / "p.db").put_cell({"a": {1, 2}}, [])),
        ("cells(status=bad)", lambda: ResultStore(c.d / "p.db").cells("nosuch")),
        ("ro store write", lambda: ResultStore(c.d / "p.db", read_only=True).put_cell(c.s, [])),
    ]


def _api_runner(c: SimpleNamespace) -> list[Case]:
    return [
        ("run_spec(workers=0)", lambda: run_spec(parse_spec(c.good), c.d / "r.db", workers=0)),
        (
            "run_spec(workers=True)",
            lambda: run_spec(parse_spec(c.good), c.d / "r.db", workers=True),
        ),
        ("run_spec(threads=0)", lambda: run_spec(parse_spec(c.good), c.d / "r.db", threads=0)),
        ("run_spec(backend)", lambda: run_spec(parse_spec(c.good), c.d / "r.db", backend="dask")),
        ("run_spec(poll=0)", lambda: run_spec(parse_spec(c.good), c.d / "r.db", poll=0)),
        (
            "run_spec(output under file)",
            lambda: run_spec(parse_spec(c.good), c.d / "r.db", output_dir=c.f["text"] / "x"),
        ),
        ("run_spec(store folder)", lambda: run_spec(parse_spec(c.good), c.f["folder"])),
        ("run_spec(missing spec)", lambda: run_spec(c.d / "nope.yaml", c.d / "r.db")),
    ]


def _api_specs(c: SimpleNamespace) -> list[Case]:
    return [
        ("load_spec(binary)", lambda: load_spec(c.f["spec_binary"])),
        ("load_spec(empty)", lambda: load_spec(c.f["spec_empty"])),
        ("load_spec(python tag)", lambda: load_spec(c.f["spec_python_tag"])),
        ("load_spec(bad yaml)", lambda: load_spec(c.f["spec_bad_yaml"])),
        ("load_spec(folder)", lambda: load_spec(c.f["folder"])),
        ("parse_spec(list)", lambda: parse_spec([1, 2])),  # type: ignore[arg-type]
        ("parse_spec(unknown model)", lambda: parse_spec(c.spec(grid__models=["x"]))),
        ("parse_spec(seeds str)", lambda: parse_spec(c.spec(grid__seeds="abc"))),
        ("parse_spec(eps nan)", lambda: parse_spec(c.spec(evaluation__eps=[math.nan]))),
        ("parse_spec(eps neg)", lambda: parse_spec(c.spec(evaluation__eps=[-1]))),
        ("parse_spec(empty grid)", lambda: parse_spec(c.spec(grid__activations=[]))),
    ]


def _api_data(c: SimpleNamespace) -> list[Case]:
    return [
        ("ImageDataset(NaN)", lambda: ImageDataset(c.nan_x, c.y, list("0123"), "t")),
        ("ImageDataset(0..255 floats)", lambda: ImageDataset(c.x * 255, c.y, list("0123"), "t")),
        ("ImageDataset(negative)", lambda: ImageDataset(c.x - 1, c.y, list("0123"), "t")),
        ("ImageDataset(frac labels)", lambda: ImageDataset(c.x, c.y + 0.5, list("0123"), "t")),
        ("ImageDataset(labels >= classes)", lambda: ImageDataset(c.x, c.y + 5, list("0123"), "t")),
        ("ImageDataset(labels count)", lambda: ImageDataset(c.x, c.y[:2], list("0123"), "t")),
        ("ImageDataset(3-D)", lambda: ImageDataset(c.x[:, 0], c.y, list("0123"), "t")),
        (
            "ImageDataset(float64 lossy)",
            lambda: ImageDataset(c.x.double() / 3, c.y, list("0123"), "t"),
        ),
        ("ImageDataset(int 300)", lambda: ImageDataset((c.x * 300).int(), c.y, list("0123"), "t")),
        ("ImageDataset(bool)", lambda: ImageDataset(c.x > 0.5, c.y, list("0123"), "t")),
        ("ImageDataset(list)", lambda: ImageDataset([[1]], c.y, list("0123"), "t")),  # type: ignore[arg-type]
        ("ImageDataset(no classes)", lambda: ImageDataset(c.x, c.y, [], "t")),
        ("ImageDataset(complex labels)", lambda: ImageDataset(c.x, c.y * 1j, list("0123"), "t")),
        ("load_dataset(unknown)", lambda: load_dataset("nosuch")),
        ("load_dataset(mnist, empty root)", lambda: load_dataset("mnist", root=c.f["folder"])),
        ("load_dataset(split)", lambda: load_dataset("digits", split="validation")),
        ("load_dataset(size=0)", lambda: load_dataset("digits", size=0)),
        ("load_dataset(size=True)", lambda: load_dataset("digits", size=True)),
        ("load_dataset(kwarg)", lambda: load_dataset("digits", nosuch=1)),
        ("read_idx(overflow)", lambda: read_idx(c.idx_over)),
        ("read_idx(truncated)", lambda: read_idx(c.idx_trunc)),
        ("read_idx(text)", lambda: read_idx(c.f["text"])),
        ("read_idx(missing)", lambda: read_idx(c.d / "missing-idx")),
        ("train_val_split(0)", lambda: train_val_split(load_dataset("digits"), 0.0)),
        ("train_val_split(nan)", lambda: train_val_split(load_dataset("digits"), math.nan)),
        ("train_val_split(tensor)", lambda: train_val_split(c.x, 0.2)),  # type: ignore[arg-type]
        ("BatchLoader(batch 0)", lambda: BatchLoader(load_dataset("digits"), 0)),
        ("BatchLoader(batch True)", lambda: BatchLoader(load_dataset("digits"), True)),
    ]


def _api_attacks(c: SimpleNamespace) -> list[Case]:
    return [
        ("attack(NaN x)", lambda: c.pgd(c.model, c.nan_x, c.y)),
        ("attack(0..255 x)", lambda: c.pgd(c.model, c.x * 255, c.y)),
        ("attack(float y)", lambda: c.pgd(c.model, c.x, c.y.float())),
        ("attack(y too long)", lambda: c.pgd(c.model, c.x, torch.tensor([0, 1, 2, 3, 4]))),
        ("attack(y >= classes)", lambda: c.pgd(c.model, c.x, c.y + 20)),
        ("attack(float64 x)", lambda: c.pgd(c.model, c.x.double(), c.y)),
        ("attack(numpy x)", lambda: c.pgd(c.model, c.x.numpy(), c.y)),  # type: ignore[arg-type]
        ("attack(unbatched)", lambda: c.pgd(c.model, c.x[0, 0, 0], c.y[:1])),
        ("get_attack(unknown)", lambda: get_attack("nosuch")),
        ("get_attack(eps -1)", lambda: get_attack("pgd", eps=-1)),
        ("get_attack(eps nan)", lambda: get_attack("pgd", eps=math.nan)),
        ("get_attack(steps 0)", lambda: get_attack("pgd", eps=0.1, steps=0)),
        ("get_attack(steps True)", lambda: get_attack("pgd", eps=0.1, steps=True)),
        ("get_attack(norm)", lambda: get_attack("pgd", eps=0.1, norm="L7")),
        ("get_attack(kwarg)", lambda: get_attack("pgd", eps=0.1, nosuch=1)),
    ]


def _api_training(c: SimpleNamespace) -> list[Case]:
    return [
        (
            "fit(0..255)",
            lambda: fit(c.model, get_objective("natural"), (c.x * 255, c.y), TrainConfig(epochs=1)),
        ),
        (
            "fit(NaN)",
            lambda: fit(c.model, get_objective("natural"), (c.nan_x, c.y), TrainConfig(epochs=1)),
        ),
        (
            "fit(labels >= classes)",
            lambda: fit(c.model, get_objective("natural"), (c.x, c.y + 20), TrainConfig(epochs=1)),
        ),
        (
            "fit(float labels)",
            lambda: fit(
                c.model, get_objective("natural"), (c.x, c.y.float()), TrainConfig(epochs=1)
            ),
        ),
        (
            "fit(float64)",
            lambda: fit(
                c.model, get_objective("natural"), (c.x.double(), c.y), TrainConfig(epochs=1)
            ),
        ),
        (
            "fit(lr 1e30)",
            lambda: fit(
                create_model("mlp_general", num_classes=10, hidden=[8]),
                get_objective("natural"),
                (c.x, c.y),
                TrainConfig(epochs=1, lr=1e30),
            ),
        ),
        ("TrainConfig(epochs=0)", lambda: TrainConfig(epochs=0)),
        ("TrainConfig(lr=nan)", lambda: TrainConfig(lr=math.nan)),
        ("TrainConfig(optimizer)", lambda: TrainConfig(optimizer="nosuch")),
        ("get_objective(unknown)", lambda: get_objective("nosuch")),
        ("load_checkpoint(missing)", lambda: load_checkpoint(c.d / "missing.safetensors")),
        ("load_checkpoint(junk)", lambda: load_checkpoint(c.f["ckpt_junk"] / "model.safetensors")),
        (
            "load_checkpoint(bad sidecar)",
            lambda: load_checkpoint(c.f["ckpt_sidecar"] / "model.safetensors"),
        ),
    ]


def _api_models_surgery(c: SimpleNamespace) -> list[Case]:
    return [
        ("create_model(unknown)", lambda: create_model("nosuch")),
        ("create_model(num_classes=1)", lambda: create_model("mlp_general", num_classes=1)),
        ("create_model(num_classes=True)", lambda: create_model("mlp_general", num_classes=True)),
        ("create_model(kwarg)", lambda: create_model("mlp_general", nosuch=1)),
        ("replace_activations(unknown act)", lambda: replace_activations(c.model, "nosuch")),
    ]


def _api_stats(c: SimpleNamespace) -> list[Case]:
    return [
        ("friedman(1-D)", lambda: friedman([1.0, 2.0])),
        ("friedman(NaN)", lambda: friedman([[1.0, math.nan], [2.0, 3.0]])),
        ("friedman(strings)", lambda: friedman([["a", "b"], ["c", "d"]])),
        ("friedman(alpha=2)", lambda: friedman([[1.0, 2.0], [2.0, 3.0]], alpha=2)),
        ("friedman(alpha=True)", lambda: friedman([[1.0, 2.0], [2.0, 3.0]], alpha=True)),
        ("nemenyi_q(k=1)", lambda: nemenyi_q(1)),
        ("mcnemar(length)", lambda: mcnemar([True, False], [True])),
        ("wilson_interval(n=0)", lambda: wilson_interval(1, 0)),
        ("wilson_interval(k>n)", lambda: wilson_interval(5, 3)),
        ("compare_methods(names)", lambda: compare_methods(np.ones((3, 2)), names=["a"])),
    ]


def _api_report(c: SimpleNamespace) -> list[Case]:
    return [
        ("build_report(missing)", lambda: build_report(c.d / "missing.db", c.d / "rep")),
        ("build_report(foreign)", lambda: build_report(c.f["foreign"], c.d / "rep")),
        ("build_report(empty)", lambda: build_report(c.f["empty"], c.d / "rep")),
        ("build_report(formats)", lambda: build_report([], c.d / "rep", formats=["pdf"])),
    ]


def _api_toolkit(c: SimpleNamespace) -> list[Case]:
    return [
        ("check_int(True)", lambda: V.check_int("k", True, 0)),
        ("check_float(inf)", lambda: V.check_float("e", math.inf)),
        ("check_choice(typo)", lambda: V.check_choice("norm", "lnf", ["linf", "l2"])),
        ("writable_dir(file)", lambda: V.writable_dir(c.f["text"])),
        ("writable_file(folder)", lambda: V.writable_file(c.f["folder"])),
    ]


def api_cases(d: Path, ck: Path, f: dict[str, Path]) -> list[Case]:
    """About 110 bad library calls, by area."""
    c = _api_context(d, ck, f)
    groups = (
        _api_store,
        _api_runner,
        _api_specs,
        _api_data,
        _api_attacks,
        _api_training,
        _api_models_surgery,
        _api_stats,
        _api_report,
        _api_toolkit,
    )
    return [case for group in groups for case in group(c)]


DOCUMENTED = (ValueError, TypeError, LookupError, FloatingPointError, FileNotFoundError)


def run_api(label: str, call: Callable[[], Any]) -> dict[str, Any]:
    from robustact.experiments.store import StoreError

    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            call()
    except BaseException as e:
        text = str(e).strip()
        one = bool(text) and "\n" not in text
        typed = isinstance(e, (*DOCUMENTED, StoreError))
        outcome = "one-line error" if one and typed else (
            f"{type(e).__name__}" + ("" if one else ", multi-line or empty message")
        )  # fmt: skip
        return {"call": label, "handled": one and typed, "outcome": outcome,
                "type": type(e).__name__, "message": text.splitlines()[0][:300] if text else "",
                "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
    return {"call": label, "handled": False, "outcome": "accepted", "type": None, "message": "",
            "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip


# --------------------------------------------------------------------------- kill -9, concurrency


def _cli_proc(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "robustact.cli", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)},
        start_new_session=True,
    )  # fmt: skip


def _numbers(db: Path) -> dict[str, dict[str, float]]:
    from robustact.experiments import ResultStore

    with ResultStore(db, read_only=True) as store:
        return {
            c.cell_id: {
                repr(r.key()): r.value
                for r in store.metrics(c.cell_id)
                if "seconds" not in r.metric
            }
            for c in store.cells()
        }


def _row_counts(db: Path) -> tuple[int, int, list[int]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    cells = con.execute("SELECT COUNT(*) FROM cells WHERE status='done'").fetchone()[0]
    rows = con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    attempts = [a for (a,) in con.execute("SELECT attempts FROM cells ORDER BY rowid")]
    con.close()
    return cells, rows, attempts


def reference(d: Path) -> tuple[Path, dict[str, dict[str, float]]]:
    import yaml

    from robustact.experiments import parse_spec, run_spec

    ref = d / "ref.db"
    run_spec(parse_spec(yaml.safe_load(TINY_SPEC)), ref, workers=1, progress=False,
             output_dir=d / "ck_ref")  # fmt: skip
    return ref, _numbers(ref)


def kill_trial(d: Path, i: int, ref: dict[str, dict[str, float]], ref_rows: int) -> dict[str, Any]:
    spec = d / "tiny.yaml"
    db = d / f"kill{i}.db"
    args = ("run", str(spec), "--store", str(db), "--workers", "2", "--no-progress",
            "--output-dir", str(d / f"ck_kill{i}"))  # fmt: skip
    proc = _cli_proc(*args)
    t0 = time.time()
    done_at_kill = 0
    while time.time() - t0 < 600:
        time.sleep(0.5)
        if db.exists():
            with contextlib.suppress(sqlite3.Error):
                done_at_kill = _row_counts(db)[0]
        if done_at_kill >= 1 + (i % 2) or proc.poll() is not None:
            break
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = _row_counts(db)[0]
    resume = _cli_proc(*args)
    out, _ = resume.communicate(timeout=900)
    cells, rows, attempts = _row_counts(db)
    got = _numbers(db)
    return {
        "killed": killed, "cells_done_at_kill": done_at_kill, "resume_exit": resume.returncode,
        "cells_done_after_resume": cells, "metric_rows": rows,
        "reference_metric_rows": ref_rows,
        "attempts": attempts, "lost": len(ref) - cells,
        "equal_to_uninterrupted": got == ref, "resume_summary": out.strip().splitlines()[1:2],
    }  # fmt: skip


def concurrent_trial(d: Path, ref: dict[str, dict[str, float]]) -> dict[str, Any]:
    db = d / "conc.db"
    args = ("run", str(d / "tiny.yaml"), "--store", str(db), "--workers", "2", "--no-progress",
            "--output-dir", str(d / "ck_conc"))  # fmt: skip
    t0 = time.perf_counter()
    procs = [_cli_proc(*args), _cli_proc(*args)]
    outs = [p.communicate(timeout=900) for p in procs]
    cells, _, attempts = _row_counts(db)
    return {
        "exit_codes": [p.returncode for p in procs], "cells_done": cells, "attempts": attempts,
        "computations": sum(attempts), "equal_to_single_run": _numbers(db) == ref,
        "summaries": [o.strip().splitlines()[1] if len(o.strip().splitlines()) > 1 else o
                      for o, _ in outs],
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip


# --------------------------------------------------------------------------- main


def _tally(results: list[dict[str, Any]]) -> dict[str, Any]:
    outcomes: dict[str, int] = {}
    for r in results:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    return {"tried": len(results), "handled": sum(r["handled"] for r in results),
            "outcomes": dict(sorted(outcomes.items()))}  # fmt: skip


def main_(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bad_inputs.json"))
    p.add_argument("--kill-trials", type=int, default=2)
    p.add_argument("--skip-runs", action="store_true", help="no kill -9 / concurrency trials")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    d = Path(tempfile.mkdtemp(prefix="robustact-bad-"))
    f = _files(d)
    ck_dir = d / "ckpt"
    assert main(["train", "--out", str(ck_dir), "--model-arg", "hidden=[8]", "--epochs", "1",
                 "--quick", "--no-progress"]) == 0  # fmt: skip
    ck = ck_dir / "model.safetensors"
    from robustact.experiments import ResultStore

    with ResultStore(d / "good.db") as store:
        for act in ("relu", "srelu"):
            store.put_cell({"activation": act, "seed": 0}, [("seed", "clean", "accuracy", 0.9)])
    t0 = time.perf_counter()
    cli = [{"group": g, **run_cli(a)} for g, a in cli_cases(d, ck, f)]
    api = [run_api(label, call) for label, call in api_cases(d, ck, f)]
    result: dict[str, Any] = {
        "command": "PYTHONPATH=src python benchmarks/bad_inputs.py",
        "torch": torch.__version__, "python": sys.version.split()[0],
        "cli": _tally(cli), "api": _tally(api),
        "cases_seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    if not args.skip_runs:
        ref_db, ref = reference(d)
        ref_rows = _row_counts(ref_db)[1]
        result["kill9"] = [kill_trial(d, i, ref, ref_rows) for i in range(args.kill_trials)]
        result["concurrent"] = concurrent_trial(d, ref)
    result["cli_cases"] = cli
    result["api_cases"] = api
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    short = {k: v for k, v in result.items() if not k.endswith("_cases")}
    print(json.dumps(short, indent=1))
    return result


if __name__ == "__main__":
    main_()
