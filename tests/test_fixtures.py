"""The shared fixtures are what other tests assume they are."""

from __future__ import annotations

import torch


def test_digits_mlp_is_accurate(digits, digits_mlp) -> None:
    _, _, xt, yt = digits
    acc = (digits_mlp(xt).argmax(1) == yt).float().mean().item()
    assert acc > 0.93, acc
    assert xt.min() >= 0 and xt.max() <= 1 and xt.shape[1:] == (1, 8, 8)
    assert not digits_mlp.training
    assert torch.isfinite(next(digits_mlp.parameters())).all()
