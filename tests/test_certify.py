"""robustact.certify: IBP and CROWN bounds against exact MILP answers, sampling and PGD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from _milp import exact_margins
from conftest import train_quick
from robustact.activations import BReLU, DReLU, SReLU
from robustact.attacks import PGD
from robustact.certify import (
    SUPPORTED,
    certified_accuracy,
    clip_relaxation,
    margin_bounds,
    maxpool_relaxation,
)
from robustact.models._common import Normalize
from robustact.models.cnn import ShallowCNN
from robustact.models.mlp import MLP

TOL = 1e-5


def _act(kind: str, width: int, gen: torch.Generator) -> nn.Module:
    if kind == "relu":
        return nn.ReLU()
    if kind == "srelu":
        return SReLU(0.2 + 1.3 * float(torch.rand(1, generator=gen)))
    d = DReLU(width)
    with torch.no_grad():
        d.max_value.copy_(0.1 + 1.4 * torch.rand(width, generator=gen))
    return d


def tiny_net(seed: int, n_in: int, hidden: list[int], kind: str, classes: int = 3) -> nn.Sequential:
    """A random dense net n_in - hidden... - classes; weights large enough that units straddle."""
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    prev = n_in
    for w in [*hidden, classes]:
        lin = nn.Linear(prev, w)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(w, prev, generator=gen) * 1.5)
            lin.bias.copy_(torch.randn(w, generator=gen) * 0.5)
        layers.append(lin)
        if w != classes:
            layers.append(_act(kind, w, gen))
        prev = w
    return nn.Sequential(*layers).eval()


def _all_bounds(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
) -> dict[str, torch.Tensor]:
    return {
        "ibp": margin_bounds(net, x, y, eps, method="ibp"),
        "crown": margin_bounds(net, x, y, eps, method="crown", intersect=False),
        "flat": margin_bounds(net, x, y, eps, intersect=False, slopes="flat"),
        "both": margin_bounds(net, x, y, eps, method="crown"),
    }


def _check_against_exact(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps: float) -> int:
    """Soundness of every bound, max(IBP, CROWN) >= IBP, and CROWN == exact when the MILP
    needs no binary variable (no unit straddles a kink). Returns binaries seen."""
    bounds = _all_bounds(net, x, y, eps)
    binaries = 0
    for i in range(len(y)):
        exact, nbin = exact_margins(net, x[i], int(y[i]), eps)
        binaries += nbin
        finite = np.isfinite(exact)
        for name, b in bounds.items():
            got = b[i].double().numpy()
            slack = TOL * (1 + np.abs(exact[finite]))
            assert (got[finite] <= exact[finite] + slack).all(), (name, got, exact)
        assert (bounds["both"][i] >= bounds["ibp"][i]).all()
        if nbin == 0:
            for name in ("crown", "flat", "both"):
                np.testing.assert_allclose(bounds[name][i].numpy()[finite], exact[finite], atol=TOL)
    return binaries


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_in=st.integers(2, 4),
    hidden=st.lists(st.integers(3, 6), min_size=1, max_size=2),
    kind=st.sampled_from(["relu", "srelu", "drelu"]),
    eps=st.floats(0.0, 0.5),
)
def test_bounds_sound_against_milp(
    seed: int, n_in: int, hidden: list[int], kind: str, eps: float
) -> None:
    net = tiny_net(seed, n_in, hidden, kind)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(2, n_in, generator=gen)
    y = torch.randint(0, 3, (2,), generator=gen)
    _check_against_exact(net, x, y, eps)


@pytest.mark.parametrize("kind", ["relu", "srelu", "drelu"])
def test_crown_exact_when_no_unit_straddles(kind: str) -> None:
    net = tiny_net(3, 3, [5, 4], kind)
    x = torch.rand(4, 3, generator=torch.Generator().manual_seed(7))
    y = torch.tensor([0, 1, 2, 0])
    assert _check_against_exact(net, x, y, 1e-4) == 0  # the exact branch really ran
    ibp = margin_bounds(net, x, y, 0.05, method="ibp")
    crown = margin_bounds(net, x, y, 0.05, method="crown", intersect=False)
    assert (crown[torch.isfinite(crown)] >= ibp[torch.isfinite(ibp)] - TOL).float().mean() > 0.5


def test_crown_usually_tighter_than_ibp_with_kinks_straddled() -> None:
    """Not a law (so measured, as relax.py documents): at eps 0.1 on random 4-6-6-3 nets,
    CROWN's own bound is >= IBP's on most ReLU margins; on capped nets the flat-side lines
    lose to IBP less often than the area rule. max(IBP, CROWN) is never below IBP."""
    rate: dict[str, dict[str, float]] = {}
    for kind in ("relu", "srelu", "drelu"):
        wins = {"crown": 0, "flat": 0}
        total = 0
        for seed in range(8):
            net = tiny_net(seed, 4, [6, 6], kind)
            x = torch.rand(8, 4, generator=torch.Generator().manual_seed(seed))
            y = torch.randint(0, 3, (8,), generator=torch.Generator().manual_seed(seed))
            b = _all_bounds(net, x, y, 0.1)
            keep = torch.isfinite(b["ibp"])
            for name in wins:
                wins[name] += int((b[name][keep] >= b["ibp"][keep] - 1e-6).sum())
            total += int(keep.sum())
            assert (b["both"][keep] >= b["ibp"][keep]).all()
        rate[kind] = {name: w / total for name, w in wins.items()}
    assert rate["relu"]["crown"] > 0.9
    for kind in ("srelu", "drelu"):
        assert rate[kind]["flat"] > rate[kind]["crown"]


def tiny_cnn(seed: int, kind: str) -> nn.Sequential:
    gen = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(1, 2, 3, padding=1)
    bn = nn.BatchNorm2d(2)
    lin = nn.Linear(2 * 2 * 2, 3)
    with torch.no_grad():
        for p in (conv.weight, conv.bias, lin.weight, lin.bias):
            assert p is not None
            p.copy_(torch.randn(p.shape, generator=gen))
        assert bn.running_mean is not None and bn.running_var is not None
        bn.running_mean.copy_(torch.randn(2, generator=gen) * 0.3)
        bn.running_var.copy_(torch.rand(2, generator=gen) + 0.5)
        bn.weight.copy_(torch.tensor([1.3, -0.7]))
        bn.bias.copy_(torch.randn(2, generator=gen) * 0.2)
    return nn.Sequential(
        Normalize(0.3, 0.5), conv, bn, _act(kind, 2, gen), nn.MaxPool2d(2), nn.Flatten(), lin
    ).eval()


@pytest.mark.parametrize("kind", ["relu", "srelu", "drelu"])
@pytest.mark.parametrize("eps", [1e-4, 0.05])
def test_conv_batchnorm_maxpool_against_milp(kind: str, eps: float) -> None:
    net = tiny_cnn(11, kind)
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2])
    _check_against_exact(net, x, y, eps)


def test_avgpool_and_l2_sound_by_sampling_and_attack() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 2 * 2, 6),
        SReLU(0.5),
        nn.Linear(6, 4),
    ).eval()
    x = torch.rand(6, 1, 6, 6)
    y = net(x).argmax(1)
    for norm, eps in (("linf", 0.03), ("l2", 0.3)):
        lower = margin_bounds(net, x, y, eps, norm=norm)
        d = torch.randn(1000, *x.shape)
        if norm == "l2":
            flat = d.flatten(2)
            d = (flat / flat.norm(dim=2, keepdim=True) * eps * torch.rand(1000, 6, 1)).reshape(
                d.shape
            )
        else:
            d = d.sign() * eps
        xs = (x + d).clamp(0, 1)
        out = net(xs.flatten(0, 1)).reshape(1000, 6, 4)
        seen = (out.gather(2, y.view(1, 6, 1).expand(1000, 6, 1)) - out).amin(0)
        assert (lower <= seen.scatter(1, y[:, None], math.inf) + TOL).all()
        assert (lower[torch.isfinite(lower)] > -1e3).all()


def test_linear_model_l2_bound_is_the_dual_norm() -> None:
    """For a linear model and a ball inside [0, 1], min margin = margin - eps ||w_y - w_j||."""
    lin = nn.Linear(5, 3)
    net = nn.Sequential(lin).eval()
    x, y, eps = torch.full((1, 5), 0.5), torch.tensor([1]), 0.2
    w = lin.weight.detach()
    expect = net(x)[0, 1] - net(x)[0] - eps * (w[1] - w).norm(dim=1)
    for method in ("ibp", "crown"):
        got = margin_bounds(net, x, y, eps, norm="l2", method=method)[0]
        torch.testing.assert_close(got[[0, 2]], expect[[0, 2]].detach(), atol=1e-5, rtol=0)


@given(
    lo=st.floats(-3, 3),
    width=st.floats(0, 4),
    cap=st.sampled_from([math.inf, 0.0, 0.4, 1.0, 2.5]),
    slopes=st.sampled_from(["flat", "area"]),
)
@settings(max_examples=100, deadline=None)
def test_clip_relaxation_is_sound(lo: float, width: float, cap: float, slopes: str) -> None:
    low, up = torch.tensor([lo]), torch.tensor([lo + width])
    r = clip_relaxation(low, up, cap, slopes)
    z = torch.linspace(lo, lo + width, 101)
    f = z.clamp(min=0).clamp(max=cap)
    assert (r.lower_slope * z + r.lower_bias <= f + 1e-6).all()
    assert (r.upper_slope * z + r.upper_bias >= f - 1e-6).all()


@given(seed=st.integers(0, 1000))
@settings(max_examples=30, deadline=None)
def test_maxpool_relaxation_is_sound(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    low = torch.randn(1, 1, 4, 4, generator=gen)
    up = low + torch.rand(1, 1, 4, 4, generator=gen) * 2
    r = maxpool_relaxation(low, up, (2, 2), (2, 2), (0, 0), (1, 1))
    xs = low + torch.rand(500, 1, 4, 4, generator=gen) * (up - low)
    y = torch.nn.functional.max_pool2d(xs, 2).flatten(2)[:, 0]  # (500, 4)
    chosen = xs.flatten(2)[:, 0][:, r.index[0, 0]]
    assert (chosen <= y + 1e-6).all()
    bound = torch.where(r.exact[0, 0], chosen, r.upper[0, 0].expand_as(chosen))
    assert (bound >= y - 1e-6).all()


def _certified_never_broken(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
    ibp = certified_accuracy(model, x, y, eps, method="ibp")
    crown = certified_accuracy(model, x, y, eps, method="crown", batch_size=16)
    assert int(crown.certified.sum()) > 0  # the check has teeth
    assert (crown.certified >= ibp.certified).all()  # crown is max(IBP, CROWN)
    assert (crown.certified <= crown.clean).all()
    x_adv = PGD(eps=eps, steps=20, loss="margin", restarts=2, seed=0)(model, x, y)
    with torch.no_grad():
        robust = model(x_adv).argmax(1) == y
    assert (robust[crown.certified]).all(), "a certified point was broken by PGD"
    assert crown.certified_accuracy <= float(robust.float().mean())


def test_certified_never_broken_digits_mlp(digits_mlp: nn.Module, digits: tuple) -> None:
    _, _, x, y = digits
    _certified_never_broken(digits_mlp, x[:64], y[:64], 0.02)


@pytest.fixture(scope="module")
def digits_cnn(digits: tuple) -> nn.Module:
    torch.manual_seed(0)
    model = ShallowCNN(
        input_size=8, channels=(4, 8), hidden=32, act_layer="srelu", mean=0.3, std=0.4
    )
    x, y, _, _ = digits
    return train_quick(model, x, y, epochs=8)


def test_certified_never_broken_shallow_cnn(digits_cnn: nn.Module, digits: tuple) -> None:
    _, _, x, y = digits
    _certified_never_broken(digits_cnn, x[:48], y[:48], 0.01)


def test_robustact_mlp_and_result_fields() -> None:
    model = MLP(hidden=(6, 5), input_size=3, act_layers=[None, "srelu"], mean=0.5, std=0.25).eval()
    x = torch.rand(5, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    y = model(x).argmax(1)
    res = certified_accuracy(model, x, y, 0.0)
    assert res.n == 5 and res.method == "crown" and res.norm == "linf"
    assert res.clean.all() and res.certified_accuracy == 1.0  # eps 0: the bound is the margin
    torch.testing.assert_close(
        res.lower.min(1).values,
        (model(x).gather(1, y[:, None]) - model(x))
        .scatter(1, y[:, None], math.inf)
        .min(1)
        .values.detach(),
    )
    assert res.to_dict()["certified"] == 5


def test_bad_inputs_fail_with_clear_errors() -> None:
    net = tiny_net(0, 3, [4], "relu")
    x, y = torch.rand(2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"GELU.*supported: Normalize"):
        margin_bounds(nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 3)), x, y, 0.1)
    with pytest.raises(ValueError, match="BReLU"):
        margin_bounds(nn.Sequential(nn.Linear(3, 4), BReLU(), nn.Linear(4, 3)), x, y, 0.1)
    with pytest.raises(ValueError, match="eps must be"):
        margin_bounds(net, x, y, -1.0)
    with pytest.raises(ValueError, match="norm must be"):
        margin_bounds(net, x, y, 0.1, norm="l1")
    with pytest.raises(ValueError, match="slopes must be"):
        margin_bounds(net, x, y, 0.1, slopes="tight")
    with pytest.raises(ValueError, match="method must be"):
        margin_bounds(net, x, y, 0.1, method="exact")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        margin_bounds(net, x + 2, y, 0.1)
    with pytest.raises(ValueError, match="labels must lie"):
        margin_bounds(net, x, torch.tensor([0, 3]), 0.1)

    class Residual(nn.Sequential):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + x[:, :3]

    with pytest.raises(ValueError, match="could not reproduce"):
        margin_bounds(Residual(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3)), x, y, 0.1)
    assert "MaxPool2d" in SUPPORTED


def test_dense_unit_rows_shortcut_equals_the_one_hot_rows() -> None:
    """Dense ``backward_units`` (weight rows) == the one-hot rows through ``backward``."""
    from robustact.certify.ops import Dense, Op

    dense = Dense("d", torch.randn(4, 5), torch.randn(4))
    idx, like = torch.tensor([0, 3, 1]), torch.zeros(2, 5)
    fast = dense.backward_units(idx, like, None)
    slow = Op.backward_units(dense, idx, like, None)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b)


def test_ibp_l2_uses_the_dual_norm_of_the_first_layer(digits_mlp: nn.Module, digits: tuple) -> None:
    """The L2 ball lies in the Linf box of the same eps and IBP's L2 intervals are the box's
    intersected with the first layer's dual-norm ones, so IBP-L2 >= IBP-Linf on every margin;
    on 64 pixels the dual norm (eps * ||W_i||_2, not eps * ||W_i||_1) makes it much tighter."""
    _, _, x, y = digits
    l2 = margin_bounds(digits_mlp, x[:32], y[:32], 0.1, norm="l2", method="ibp")
    linf = margin_bounds(digits_mlp, x[:32], y[:32], 0.1, norm="linf", method="ibp")
    keep = torch.isfinite(l2)
    assert (l2[keep] >= linf[keep] - 1e-5).all()
    assert (l2[keep] - linf[keep]).mean() > 1.0
