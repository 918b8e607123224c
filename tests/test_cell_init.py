"""Ch.5's framing: start from a user's trained weights (a plain state_dict or a robustact
checkpoint), insert a D-ReLU layer before the output and fine-tune, as spec configuration."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from robustact.data import load_dataset
from robustact.experiments.cell import prepare_cell, run_cell
from robustact.experiments.spec import parse_spec
from robustact.loading import ModelLoadError
from robustact.models import create_model
from robustact.train import Natural, TrainConfig, fit, save_checkpoint


def _doc(init: str | None, epochs: int = 1, hidden: int = 32) -> dict[str, Any]:
    training: dict[str, Any] = {"epochs": epochs, "batch_size": 64, "lr": 1e-3, "val_fraction": 0}
    if init is not None:
        training["init"] = {"weights": init}
    return {
        "name": "finetune",
        "grid": {
            "datasets": ["digits"],
            "models": [{"name": "mlp_general", "hidden": [hidden]}],
            "activations": [{"name": "drelu", "init_max": 100.0, "insert": "before_output"}],
            "objectives": [{"name": "drelu_penalty", "lam": 0.01}],
        },
        "training": training,
        "evaluation": {"protocols": [{"name": "m", "attacks": [{"attack": "fgsm"}]}],
                       "eps": [0.05], "n": 300, "fast": True, "masking": False},
    }  # fmt: skip


def _clean(rows: list[Any]) -> float:
    return next(r.value for r in rows if r.metric == "accuracy" and r.attack == "clean")


@pytest.mark.slow  # trains a base model, then two cells
def test_finetune_from_a_state_dict_keeps_the_trained_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    base = create_model(
        "mlp_general", num_classes=10, in_channels=1, input_size=(8, 8), hidden=[32]
    )
    cfg = TrainConfig(epochs=6, batch_size=64, lr=3e-3, progress=False)
    fit(base, Natural(), load_dataset("digits", split="train"), cfg)
    torch.save(base.state_dict(), tmp_path / "user.pt")
    prep = prepare_cell(parse_spec(_doc("user.pt")).cells()[0].config, data_root=tmp_path)
    # the user's layers are in the model unchanged; the D-ReLU layer is new
    own = prep.model.state_dict()
    shared = [k for k in base.state_dict() if k in own]
    assert len(shared) >= 2
    for k in shared:
        assert torch.equal(own[k], base.state_dict()[k]), k
    assert any("cap" in k or "max" in k for k in own if k not in base.state_dict())
    tuned = _clean(
        run_cell(parse_spec(_doc("user.pt")).cells()[0].config, data_root=tmp_path).metrics
    )
    scratch = _clean(run_cell(parse_spec(_doc(None)).cells()[0].config).metrics)
    assert tuned > scratch + 0.05, (tuned, scratch)  # one epoch from trained weights wins
    assert tuned > 0.5


def test_init_from_a_checkpoint_and_clear_errors(tmp_path: Path) -> None:
    torch.manual_seed(1)
    base = create_model(
        "mlp_general", num_classes=10, in_channels=1, input_size=(8, 8), hidden=[32]
    )
    save_checkpoint(tmp_path / "ck" / "model.safetensors", base)
    side = next((tmp_path / "ck").glob("*.json"))
    prep = prepare_cell(parse_spec(_doc(str(side))).cells()[0].config)
    for k, v in base.state_dict().items():
        if k in prep.model.state_dict():
            assert torch.equal(prep.model.state_dict()[k], v)
    other = create_model(
        "mlp_general", num_classes=10, in_channels=1, input_size=(8, 8), hidden=[8]
    )
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(ModelLoadError, match="do not fit the model"):
        prepare_cell(parse_spec(_doc("other.pt")).cells()[0].config, data_root=tmp_path)
    with pytest.raises(ModelLoadError, match="no such file"):
        prepare_cell(parse_spec(_doc("nope.pt")).cells()[0].config, data_root=tmp_path)


def test_example_finetunes_a_users_own_model(tmp_path: Path) -> None:
    path = Path(__file__).resolve().parents[1] / "examples" / "finetune_drelu.py"
    spec = importlib.util.spec_from_file_location("finetune_drelu", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mini = [{"name": "mini", "attacks": [{"attack": "fgsm"}]}]
    cwd = os.getcwd()
    os.chdir(path.parents[1])  # MODEL is relative to the repository root
    try:
        out = mod.main(epochs=1, n_test=100, protocols=mini)
    finally:
        os.chdir(cwd)
    clean = next(r.value for r in out["rows"] if r.attack == "clean")
    assert out["before"] > 0.8 and clean > 0.7  # the inserted D-ReLU layer keeps the accuracy
