"""Experiment tracking callbacks: training curves and evaluation numbers reach the backend."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from robustact.tracking import MLflowTracker, TensorBoardTracker, make_tracker, numeric_items
from robustact.train import TrainConfig, fit


def test_numeric_items_flattens_and_drops_non_numbers() -> None:
    rec = {"loss": 0.5, "ok": True, "name": "x", "caps": {"a": {"mean": 1}}, "bad": float("nan")}
    assert numeric_items(rec, "t/") == {"t/loss": 0.5, "t/caps/a/mean": 1.0}


def _tiny_fit(callback: object) -> None:
    torch.manual_seed(0)
    x = torch.rand(64, 1, 4, 4)
    y = (x.flatten(1).mean(1) > 0.5).long()
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    cfg = TrainConfig(epochs=3, batch_size=16, progress=False, lr=1e-2)
    fit(model, "natural", (x, y), cfg, on_epoch_end=callback)  # type: ignore[arg-type]


def test_tensorboard_receives_every_epoch(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with TensorBoardTracker(str(tmp_path)) as tb:
        _tiny_fit(tb.epoch_callback())
        tb.log_evaluation({"clean": 0.9, "worst": {"accuracy": 0.4}})
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "train/loss" in tags and "eval/worst/accuracy" in tags
    assert [e.step for e in acc.Scalars("train/loss")] == [0, 1, 2]
    assert acc.Scalars("eval/worst/accuracy")[0].value == pytest.approx(0.4)


def test_mlflow_receives_every_epoch(tmp_path: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    uri = (tmp_path / "mlruns").as_uri()
    tracker = MLflowTracker(run_name="t", tracking_uri=uri)
    with tracker as tr:
        _tiny_fit(tr.epoch_callback())
        run_id = tracker._run.info.run_id
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    assert len(client.get_metric_history(run_id, "train/loss")) == 3


def test_make_tracker_errors_are_one_line() -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        make_tracker("wandb:x")
    with pytest.raises(ValueError, match="needs a folder"):
        make_tracker("tensorboard")
