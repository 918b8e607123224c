"""Diagnostics: layer distances, sensitivity map (eq. 4.3), negative-unit ratio, caps."""

from __future__ import annotations

import math

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from robustact.activations import BReLU, DReLU, SReLU
from robustact.evaluate.diagnostics import (
    cap_snapshot,
    cap_trajectories,
    layer_distances,
    negative_unit_ratio,
    sensitivity_map,
    zero_gradient_distance,
)
from robustact.report.plots import plot_cap_trajectories, plot_layer_growth, plot_sensitivity_map


def _linear(weight: list[list[float]], bias: list[float] | None = None) -> nn.Linear:
    w = torch.tensor(weight)
    lin = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(w)
        if bias is not None:
            lin.bias.copy_(torch.tensor(bias))
    return lin


def test_layer_distances_hand_computed() -> None:
    # x -> 3x -> ReLU -> cap at 0.5
    model = nn.Sequential(_linear([[3.0, 0.0], [0.0, 3.0]]), nn.ReLU(), SReLU(0.5))
    x = torch.tensor([[0.1, 0.0], [0.0, 0.0]])
    x_adv = torch.tensor([[0.2, 0.0], [0.0, 0.3]])
    d = layer_distances(model, x, x_adv)
    assert [e.name for e in d] == ["input", "1", "2"]
    assert d[0].linf == pytest.approx((0.1 + 0.3) / 2)
    # ReLU outputs: [0.3,0]->[0.6,0] (diff 0.3); [0,0]->[0,0.9] (diff 0.9)
    assert d[1].linf == pytest.approx((0.3 + 0.9) / 2)
    assert d[1].l2 == pytest.approx((0.3 + 0.9) / 2)
    # capped at 0.5: [0.3,0]->[0.5,0] (0.2); [0,0]->[0,0.5] (0.5)
    assert d[2].linf == pytest.approx((0.2 + 0.5) / 2)
    lin = layer_distances(model, x, x_adv, where="linear")
    assert [e.name for e in lin] == ["input", "0"]
    fig = plot_layer_growth({"toy": {"l2": [e.l2 for e in d]}}, layer_names=[e.name for e in d])
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    with pytest.raises(ValueError, match="must match"):
        layer_distances(model, x, x_adv[:1])


def test_sensitivity_map_of_a_linear_model() -> None:
    w = [[1.0, -2.0, 0.5], [2.0, 1.0, 0.0], [1.0, 1.0, -1.0]]
    model = nn.Sequential(_linear(w))
    x = torch.rand(2, 3)
    y = torch.tensor([0, 2])
    smap, score = sensitivity_map(model, x, y)
    wt = torch.tensor(w)
    # class 0: W0 * (W1 + W2) = [1*3, -2*2, 0.5*-1] -> clamp -> [3, 0, 0]
    assert smap[0].tolist() == pytest.approx([3.0, 0.0, 0.0])
    # class 2: W2 * (W0 + W1) = [3, -1, -0.5] -> [3, 0, 0]
    expected2 = (wt[2] * (wt[0] + wt[1])).clamp_min(0)
    assert smap[1].tolist() == pytest.approx(expected2.tolist())
    assert score.tolist() == pytest.approx([3.0, 3.0])
    fig = plot_sensitivity_map(torch.rand(1, 8, 8), image=torch.rand(1, 8, 8))
    assert isinstance(fig, Figure) and "sum =" in fig.axes[1].get_title()


def test_sensitivity_map_shrinks_with_a_low_cap() -> None:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    capped = nn.Sequential(base[0], base[1], SReLU(0.01), base[3])
    x = torch.rand(8, 1, 4, 4)
    y = torch.randint(0, 4, (8,))
    _, s_relu = sensitivity_map(base, x, y)
    _, s_cap = sensitivity_map(capped, x, y)
    assert float(s_cap.sum()) < float(s_relu.sum())
    # with BPDA the cap passes gradient again: same map as the uncapped network
    _, s_bpda = sensitivity_map(capped, x, y, bpda=True)
    assert s_bpda.tolist() == pytest.approx(s_relu.tolist())


def test_negative_unit_ratio() -> None:
    x = torch.tensor([[-1.0, -2.0, 3.0, 4.0]])
    relu = negative_unit_ratio(nn.Sequential(nn.Identity(), nn.ReLU()), x)
    assert [(r.pre, r.post) for r in relu] == [(0.5, 0.0)]
    leaky = negative_unit_ratio(nn.Sequential(nn.LeakyReLU(0.1)), x)
    assert (leaky[0].pre, leaky[0].post) == (0.5, 0.5)
    torch.manual_seed(0)
    xb = torch.randn(2000, 8)
    b = negative_unit_ratio(nn.Sequential(BReLU()), xb)[0]
    assert b.kind == "BReLU" and abs(b.pre - 0.5) < 0.03
    # negatives survive with prob sigmoid(x) < 1/2: E ~= 0.5 * E[sigmoid(x) | x<0] ~ 0.15
    assert 0.08 < b.post < 0.25


def test_cap_history_and_plot() -> None:
    cap = DReLU(3, init_max=2.0)
    model = nn.Sequential(nn.Linear(4, 3), cap, nn.Linear(3, 2), SReLU(0.5))
    with torch.no_grad():
        cap.max_value.copy_(torch.tensor([1.0, 2.0, 3.0]))
    snap = cap_snapshot(model, epoch=0)
    assert snap == {
        "epoch": 0,
        "caps": {
            "1": {"min": 1.0, "mean": 2.0, "max": 3.0},
            "3": {"min": 0.5, "mean": 0.5, "max": 0.5},
        },
    }
    hist = [snap, {"epoch": 1, "caps": {"1": {"min": 0.5, "mean": 1.0, "max": 1.5}}}]
    traj = cap_trajectories(hist)
    assert traj["1"]["mean"] == [2.0, 1.0] and traj["1"]["epoch"] == [0.0, 1.0]
    assert traj["3"]["max"] == [0.5]
    fig = plot_cap_trajectories(cap_trajectories(hist), logy=True)
    assert isinstance(fig, Figure) and fig.axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match="'min', 'mean' and 'max'"):
        cap_trajectories([{"epoch": 0, "caps": {"a": {"min": 1.0}}}])
    with pytest.raises(ValueError, match="non-empty"):
        cap_trajectories([])


def test_zero_gradient_distance_with_a_saturating_cap() -> None:
    # every hidden unit far above a tiny cap: the gradient is zero at x itself
    model = nn.Sequential(
        nn.Flatten(),
        _linear([[5.0, 5.0]] * 3, [1.0] * 3),
        SReLU(0.01),
        _linear([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]),
    )
    x = torch.rand(4, 1, 2)
    res = zero_gradient_distance(
        model, x, torch.zeros(4, dtype=torch.long), eps=1.0, steps=5, step_size=0.1
    )
    assert res.found_fraction == 1.0 and res.mean_distance == 0.0
    relu_model = nn.Sequential(nn.Flatten(), _linear([[1.0, -1.0], [-1.0, 1.0]]))
    res2 = zero_gradient_distance(
        relu_model, x, torch.zeros(4, dtype=torch.long), eps=1.0, steps=3, step_size=0.1
    )
    assert res2.found_fraction == 0.0 and math.isnan(res2.mean_distance)
