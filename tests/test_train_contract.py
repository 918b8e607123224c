"""The pixel contract on the training side: fit refuses data outside [0, 1], NaN images,
float labels and labels beyond the model's classes with one-line errors, casts other float
precisions, and a diverging run is a DivergenceError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from robustact.train import DivergenceError, Natural, TrainConfig, fit

Digits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


CFG = TrainConfig(epochs=1, batch_size=64, progress=False)


class Pairs(torch.utils.data.Dataset[Any]):
    """A map-style dataset of (image, label) pairs, labels as given."""

    def __init__(self, x: torch.Tensor, labels: list[Any]) -> None:
        self.x, self.labels = x, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        return self.x[i], self.labels[i]


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(
    ("mutate", "error", "says"),
    [
        (lambda x, y: (x * 255, y), ValueError, "got values in [0, 255]; divide by 255"),
        (lambda x, y: (x - 0.5, y), ValueError, "must lie in [0, 1]"),
        (lambda x, y: (x.index_fill(0, torch.tensor([3]), float("nan")), y), ValueError,
         "contains NaN or inf"),
        (lambda x, y: (x, y.float() + 0.5), TypeError, "int64 class labels, got torch.float32"),
        (lambda x, y: (x, y.int()), TypeError, "use y.long()"),
        (lambda x, y: (x, y.index_fill(0, torch.tensor([0]), 10)), ValueError,
         "labels must be in [0, 10) (the model's classes), got [0, 10]"),
        (lambda x, y: (x, y - 1), ValueError, "labels must be >= 0, got [-1, 8]"),
    ],
)  # fmt: skip
def test_tensor_data_outside_the_contract_is_refused(
    digits: Digits, mutate: Any, error: type[Exception], says: str
) -> None:
    x, y, _, _ = digits
    bx, by = mutate(x[:128].clone(), y[:128].clone())
    with pytest.raises(error) as info:
        fit(mlp(), Natural(), (bx, by), CFG)
    assert says in _one_line(info)


def test_dataset_and_loader_batches_are_checked_too(digits: Digits) -> None:
    x, y, _, _ = digits
    x, y = x[:128], y[:128]
    fractional = [float(v) + 0.7 for v in y.tolist()]  # used to be truncated by int()
    with pytest.raises(TypeError, match=r"int64 class labels, got torch\.float"):
        fit(mlp(), Natural(), Pairs(x, fractional), CFG)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        fit(mlp(), Natural(), Pairs(x, [v + 10 for v in y.tolist()]), CFG)
    nan = x.clone()
    nan[70] = float("nan")
    loader = [(nan[i : i + 64], y[i : i + 64]) for i in range(0, 128, 64)]
    with pytest.raises(ValueError, match=r"training data: x contains NaN"):
        fit(mlp(), Natural(), loader, CFG)
    with pytest.raises(ValueError, match=r"val data: x must lie in \[0, 1\]"):
        fit(mlp(), Natural(), (x, y), CFG, val_data=(x * 255, y))


def test_other_float_precisions_are_cast_to_the_models(digits: Digits) -> None:
    x, y, _, _ = digits
    x, y = x[:128], y[:128]
    ref = mlp()
    h32 = fit(ref, Natural(), (x, y), CFG)
    m64 = mlp()
    h64 = fit(m64, Natural(), (x.double(), y), CFG)
    assert h64["loss"] == h32["loss"]  # float64 holds float32 data exactly: same run
    h16 = fit(mlp(), Natural(), (x.half(), y), CFG)
    assert abs(h16["loss"][0] - h32["loss"][0]) < 1e-2


def test_a_diverging_run_is_a_divergence_error_and_saves_nothing(
    digits: Digits, tmp_path: Path
) -> None:
    x, y, _, _ = digits
    cfg = CFG.replace(optimizer="sgd", lr=1e30)
    with pytest.raises(DivergenceError) as info:
        fit(mlp(), Natural(), (x[:256], y[:256]), cfg, checkpoint_dir=tmp_path)
    assert _one_line(info).startswith("training diverged: the loss became nan in epoch 0")
    assert isinstance(info.value, FloatingPointError)
    assert not list(tmp_path.glob("epoch_*.json"))  # no NaN state to resume from
