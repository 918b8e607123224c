"""FAB's pieces: the hyperplane-box projection, the Jacobian, validation, edge cases."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from robustact.attacks import FAB, FMN, get_attack
from robustact.attacks.fab import _jacobian, project_hyperplane_box

Digits = tuple[Tensor, Tensor, Tensor, Tensor]


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    norm=st.sampled_from(["Linf", "L2"]),
    dim=st.integers(1, 40),
    scale=st.floats(0.01, 5.0),
)
def test_projection_lands_on_the_hyperplane_inside_the_box(
    seed: int, norm: str, dim: int, scale: float
) -> None:
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(16, dim, generator=g, dtype=torch.float64)
    w = torch.randn(16, dim, generator=g, dtype=torch.float64)
    b = (w * torch.rand(16, dim, generator=g, dtype=torch.float64)).sum(1) * scale
    d = project_hyperplane_box(t, w, b, norm)
    z = t + d
    assert float(z.min()) >= -1e-9 and float(z.max()) <= 1 + 1e-9
    # reachable rows land on the hyperplane; any random feasible point is no closer
    lo, hi = torch.where(w > 0, -t, 1 - t), torch.where(w > 0, 1 - t, -t)
    reach = ((w * torch.where(w > 0, hi, lo)).sum(1) >= b - (w * t).sum(1)) & (
        (w * torch.where(w > 0, lo, hi)).sum(1) <= b - (w * t).sum(1)
    )
    resid = ((w * z).sum(1) - b).abs()
    assert bool((resid[reach] < 1e-7 * (1 + b.abs()[reach])).all())
    size = d.abs().amax(1) if norm == "Linf" else d.norm(dim=1)
    for _ in range(20):  # random feasible points: a box point pushed onto the plane
        u = torch.rand(16, dim, generator=g, dtype=torch.float64)
        other = project_hyperplane_box(u, w, b, norm) + u - t
        ok = reach & (((w * (t + other)).sum(1) - b).abs() < 1e-7 * (1 + b.abs()))
        o_size = other.abs().amax(1) if norm == "Linf" else other.norm(dim=1)
        assert bool((size[ok] <= o_size[ok] + 1e-9).all())


def test_fab_validates_and_registers() -> None:
    fab_t = get_attack("fab-t", eps=0.1)
    assert isinstance(fab_t, FAB) and fab_t.targeted
    with pytest.raises(ValueError, match="beta"):
        FAB(eps=0.1, beta=1.5)
    with pytest.raises(ValueError, match="alpha_max"):
        FAB(eps=0.1, alpha_max=2.0)
    with pytest.raises(ValueError, match="steps"):
        FAB(eps=0.1, steps=0)
    d = FAB(eps=0.1, targeted=True).describe()
    assert d["n_target_classes"] == 9 and d["eta"] == 1.05


def test_jacobian_matches_autograd() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64, 5),
    ).eval()  # fmt: skip
    x = torch.rand(6, 1, 8, 8)
    z, jac = _jacobian(net, x)
    full = torch.autograd.functional.jacobian(net, x)  # (6, 5, 6, 1, 8, 8)
    ref = torch.stack([full[i, :, i].flatten(1) for i in range(6)])
    torch.testing.assert_close(jac, ref)
    torch.testing.assert_close(z, net(x))


@pytest.mark.parametrize("targeted", [False, True])
def test_edge_cases(targeted: bool) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 2)).eval()  # two classes
    x = torch.rand(5, 1, 8, 8)
    y = net(x).argmax(1)
    out = FAB(eps=0.5, steps=10, targeted=targeted, restarts=2, seed=0).run(net, x, y)
    assert out.queries is not None
    assert bool(out.success.all()) and bool((out.queries > 1).all())  # a linear model
    wrong = FAB(eps=0.5, steps=10, targeted=targeted).run(net, x, 1 - y)
    assert wrong.queries is not None
    assert bool(wrong.success.all()) and wrong.queries.tolist() == [1] * 5  # clean pass only
    assert torch.equal(wrong.x_adv, x)
    one = FAB(eps=0.5, steps=10, targeted=targeted).run(net, x[:1], y[:1])
    assert one.success.shape == (1,) and bool(one.success[0])


def test_fmn_finds_adversarial_examples_and_validates(
    digits: Digits, digits_mlp: nn.Module
) -> None:
    _, _, xte, yte = digits
    x, y = xte[:30], yte[:30]
    for norm in ("Linf", "L2"):
        out = FMN(norm=norm, steps=50).run(digits_mlp, x, y)
        assert float(out.success.float().mean()) > 0.9
        assert torch.equal(out.success, digits_mlp(out.x_adv).argmax(1) != y)
        dist = (out.x_adv - x).flatten(1)
        dist = dist.abs().amax(1) if norm == "Linf" else dist.norm(dim=1)
        torch.testing.assert_close(dist[out.success], out.info["norms"][out.success])
        eps = float(out.info["norms"][out.success].median())
        fixed = FMN(eps=eps, norm=norm, steps=50).run(digits_mlp, x, y)
        assert float(dist.max()) > eps and float(fixed.success.float().mean()) < 0.8
        d2 = (fixed.x_adv - x).flatten(1)
        d2 = d2.abs().amax(1) if norm == "Linf" else d2.norm(dim=1)
        assert float(d2.max()) <= eps + 1e-5
    with pytest.raises(ValueError, match="gamma"):
        FMN(gamma_init=0.01, gamma_final=0.1)
    assert isinstance(get_attack("fmn"), FMN)
