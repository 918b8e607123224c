"""evaluate enforces the pixel contract on every point, not only the ones it attacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustact.evaluate import evaluate


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda x, y: (x.clone().index_fill_(0, torch.tensor([0]), float("nan")), y),
         ValueError, "NaN"),
        (lambda x, y: (x * 255, y), ValueError, "divide by 255"),
        (lambda x, y: (x, y.float() + 0.5), TypeError, "int64"),
        (lambda x, y: (x.double(), y), TypeError, r"x.float\(\)"),
    ],
)  # fmt: skip
def test_bad_points_are_refused_even_if_misclassified(mutate, error, match) -> None:
    x = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(8, dtype=torch.long)
    xb, yb = mutate(x, y)
    with pytest.raises(error, match=match):
        evaluate(_model(), xb, yb, protocol="seed", eps=0.1, fast=True)


def test_integer_labels_of_other_widths_are_widened() -> None:
    x = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(8, dtype=torch.int32)
    res = evaluate(_model(), x, y, protocol="seed", eps=0.0, fast=True, seed=0)
    assert res.n == 8
