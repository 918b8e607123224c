"""run_spec end to end on a tiny spec: rows written, re-runs skip, a failing cell is recorded
while the others finish, and worker processes give the same results as one process."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from robustact.experiments.cell import run_cell
from robustact.experiments.runner import RAY_HINT, run_spec
from robustact.experiments.spec import parse_spec
from robustact.experiments.store import ResultStore
from robustact.train import load_checkpoint


def tiny(masking: bool = False, datasets: list[Any] | None = None) -> dict[str, Any]:
    return {
        "name": "tiny",
        "grid": {
            "datasets": datasets or ["digits"],
            "models": [{"name": "mlp_general", "hidden": [16]}],
            "activations": ["relu", {"name": "srelu", "max_value": 0.5, "where": 0}],
            "seeds": [0],
        },
        "training": {"epochs": 1, "batch_size": 64, "lr": 0.01},
        "evaluation": {
            "protocols": [{"name": "mini", "attacks": [{"attack": "fgsm"}]}],
            "eps": [0.1],
            "n": 60,
            "fast": True,
            "masking": masking,
        },
    }


def test_local_run_writes_rows_and_rerun_skips(tmp_path: Path) -> None:
    spec = parse_spec(tiny(masking=True))
    db = tmp_path / "res.sqlite"
    first = run_spec(spec, db, workers=1, progress=False, output_dir=tmp_path / "ck")
    assert (first.total, first.already_done, first.done, first.failed) == (2, 0, 2, [])
    with ResultStore(db) as store:
        cells = store.cells()
        assert [c.cell_id for c in cells] == [c.cell_id for c in spec.cells()]
        for c in cells:
            rows = {
                (r.protocol, r.attack, r.metric, r.eps, r.norm): r.value
                for r in store.metrics(c.cell_id)
            }
            clean = rows[("mini", "clean", "accuracy", None, None)]
            worst = rows[("mini", "worst", "accuracy", 0.1, "Linf")]
            fgsm = rows[("mini", "fgsm", "cumulative_accuracy", 0.1, "Linf")]
            assert 0.3 < clean <= 1.0  # one epoch on digits learns something
            assert worst <= clean and worst == fgsm  # one attack: it is the worst case
            typed = {(r.kind, r.attack, r.item, r.metric, r.eps) for r in store.metrics(c.cell_id)}
            assert ("masking", "verdict", None, "level", 0.1) in typed
            assert ("masking", "check", "zero_gradient", "flagged", 0.1) in typed
            assert rows[("training", "final", "epochs", None, None)] == 1.0
            assert len(c.extra["history"]) == 1
            assert c.extra["masking"]["verdict"] in ("no evidence", "suspect", "masked")
            assert {"data", "train", "evaluate", "masking"} <= set(c.extra["timings"])
            assert c.checkpoint is not None and Path(c.checkpoint).is_file()
        # the checkpoint holds the trained weights (the surgery-placed S-ReLU included)
        assert cells[1].checkpoint is not None
        model, meta = load_checkpoint(cells[1].checkpoint)
        assert type(model.act1).__name__ == "SReLU" and meta["extra"]["cell_id"] == cells[1].cell_id
        x = torch.rand(5, 1, 8, 8)
        assert model(x).shape == (5, 10)
        n_rows = {c.cell_id: len(store.metrics(c.cell_id)) for c in cells}
    again = run_spec(spec, db, workers=1, progress=False, output_dir=tmp_path / "ck")
    assert (again.already_done, again.results) == (2, [])
    with ResultStore(db) as store:
        assert {c.cell_id: len(store.metrics(c.cell_id)) for c in store.cells()} == n_rows


def test_failed_cell_is_recorded_and_others_finish(tmp_path: Path) -> None:
    # mnist is looked for in an empty data_root only: that cell raises, the others run
    spec = parse_spec(tiny(datasets=["digits", "mnist"]))
    db = tmp_path / "res.sqlite"
    out = run_spec(spec, db, progress=False, data_root=tmp_path / "nodata")
    assert out.done == 2 and len(out.failed) == 2
    assert all("mnist" in r.label and "DatasetError" in (r.error or "") for r in out.failed)
    with ResultStore(db) as store:
        failed = store.cells("failed")
        assert len(failed) == 2 and all("DatasetError" in (c.error or "") for c in failed)
        assert len(store.cells("done")) == 2
    # a re-run retries only the failed cells
    again = run_spec(spec, db, progress=False, data_root=tmp_path / "nodata")
    assert again.already_done == 2 and len(again.failed) == 2 and again.done == 0
    assert "2 failed" in again.lines()[0] and again.lines()[1].startswith("  FAILED")


@pytest.mark.slow
def test_two_worker_processes_match_one(tmp_path: Path) -> None:
    spec = parse_spec(tiny(datasets=["digits", "mnist"]))
    db = tmp_path / "res.sqlite"
    out = run_spec(spec, db, workers=2, progress=False, data_root=tmp_path / "nodata")
    assert out.done == 2 and len(out.failed) == 2
    with ResultStore(db) as store:
        got = {c.cell_id: store.metrics(c.cell_id) for c in store.cells()}
    # the same cell in this process gives the same numbers (seeded, one thread or not)
    cell = spec.cells()[0]
    ref = run_cell(cell.config)
    by_key = {r.key(): r.value for r in got[cell.cell_id]}
    for r in ref.metrics:
        if r.metric != "seconds" and r.protocol != "training":
            assert by_key[r.key()] == pytest.approx(r.value, abs=1e-6), r.key()


def test_bad_arguments_fail_before_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = parse_spec(tiny())
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        run_spec(spec, tmp_path / "r.sqlite", workers=0)
    with pytest.raises(ValueError, match="backend must be one of local, ray"):
        run_spec(spec, tmp_path / "r.sqlite", backend="dask")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ImportError) as info:
        run_spec(spec, tmp_path / "r.sqlite", backend="ray")
    assert str(info.value) == RAY_HINT and 'pip install "robustact[ray]"' in RAY_HINT
    assert not (tmp_path / "r.sqlite").exists()


def test_defences_diagnostics_and_shared_training(tmp_path: Path) -> None:
    doc = tiny(masking=True)
    doc["grid"]["activations"] = [{"name": "srelu", "max_value": 0.5, "where": 0}]
    doc["grid"]["swaps"] = ["none", {"name": "cap", "max_value": 0.05}]
    doc["grid"]["include"] = [
        {"preprocess": [{"name": "bit_depth", "bits": 1}], "swaps": ["none"]},
        {"transforms": [{"name": "spectral_norm"}], "swaps": ["none"]},
    ]
    doc["evaluation"]["diagnostics"] = [
        "cap_trajectory", {"name": "layer_growth", "n": 20, "steps": 3},
        {"name": "sensitivity_map", "n": 20}, {"name": "negative_unit_ratio", "n": 20},
        {"name": "zero_gradient", "n": 10, "steps": 10, "step_size": 0.05},
        {"name": "input_gradient_norm", "n": 20}, {"name": "pgd_steps", "n": 20, "steps": [1, 3]},
    ]  # fmt: skip
    spec = parse_spec(doc)
    db, ck = tmp_path / "res.sqlite", tmp_path / "ck"
    out = run_spec(spec, db, progress=False, output_dir=ck)
    assert (out.done, out.failed) == (4, [])
    with ResultStore(db) as store:
        labels = {c.cell_id: c.label.split("/")[-2] for c in spec.cells()}
        cells = {labels[c.cell_id]: c for c in store.cells()}
        rows = {
            k: {(r.protocol, r.attack, r.item, r.metric): r.value for r in store.metrics(c.cell_id)}
            for k, c in cells.items()
        }
    plain, cap = rows["natural"], rows["swap=cap(max_value=0.05)"]
    # the swap cell evaluated the same trained classifier with its cap lowered: the
    # trajectory (training) is shared, the clean accuracy (evaluation) is not
    assert cells["swap=cap(max_value=0.05)"].extra.get("shared_training") is True
    cap_mean = ("diagnostics", "cap_trajectory", "act1", "mean")
    assert plain[cap_mean] == cap[cap_mean] == 0.5
    assert plain[("mini", "clean", None, "accuracy")] != cap[("mini", "clean", None, "accuracy")]
    # S-ReLU caps at 0.5: the capped layer's output moves by at most 0.5 per unit
    assert 0 < plain[("diagnostics", "layer_growth", "act1", "linf")] <= 0.5 + 1e-6
    # the input row is the perturbation itself: inside the eps ball (points stop at their
    # first fooling iterate, so the mean may sit below eps)
    assert 0.05 < plain[("diagnostics", "layer_growth", "input", "linf")] <= 0.1 + 1e-6
    assert ("diagnostics", "layer_growth_adaptive", "act1", "l2") in plain
    assert plain[("diagnostics", "negative_unit_ratio", "act1", "post")] == 0.0
    assert 0 < plain[("diagnostics", "negative_unit_ratio", "act1", "pre")] < 1
    assert 0 <= plain[("diagnostics", "zero_gradient", None, "found_fraction")] <= 1
    assert plain[("diagnostics", "sensitivity_map", None, "score_mean")] >= 0
    clean = plain[("mini", "clean", None, "accuracy")]
    assert plain[("diagnostics", "pgd_steps", "3", "accuracy")] <= clean
    # 1-bit input quantisation: a masked-looking defence, its verdict is stored
    prep = cells["preprocess=bit_depth(bits=1)"]
    assert prep.extra["masking"]["verdict"] in ("suspect", "masked")
    # the spectral-norm cell's checkpoint loads back with its parametrisation
    saved = cells["transform=spectral_norm"].checkpoint
    assert saved is not None
    model, _ = load_checkpoint(saved)
    assert hasattr(model.fc1, "parametrizations") and model(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    assert len(list((ck / "_trained").iterdir())) == 2  # srelu and srelu+spectral_norm
