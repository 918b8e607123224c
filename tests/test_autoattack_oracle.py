"""Oracles: our FAB, FAB-T and the ``autoattack`` protocol against the official AutoAttack.

Same models (a natural and a PGD-trained MLP), same points of the shared MNIST test split
(scikit-learn digits when it is absent, as in ``test_attacks_oracle.py``): robust accuracy
must agree within 0.5 percentage points. FAB and FAB-T start from the clean point with one
run per target, so they are deterministic and must also agree point by point.
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch import Tensor, nn

from robustact.attacks import FAB, PGD
from robustact.attacks.fab import project_hyperplane_box
from robustact.evaluate import evaluate

official = pytest.importorskip("pyautoattack")
fab_pt = pytest.importorskip("pyautoattack.fab_pt")
fab_proj = pytest.importorskip("pyautoattack.fab_projections")

pytestmark = [pytest.mark.oracle]

N_POINTS = 100  # 0.5 pp is under one point: the counts must be equal (measured: they are)
Data = tuple[Tensor, Tensor, Tensor, Tensor, str]


def _mnist() -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
    try:
        from robustact.data import load_dataset

        xtr, ytr = load_dataset("mnist-t10k", split="train").tensors()
        xte, yte = load_dataset("mnist-t10k", split="test").tensors()
    except (ImportError, FileNotFoundError, OSError, KeyError, ValueError):
        return None
    return xtr, ytr, xte, yte


@pytest.fixture(scope="module")
def data(digits: tuple[Tensor, Tensor, Tensor, Tensor]) -> Data:
    mnist = _mnist()
    if mnist is not None:
        xtr, ytr, xte, yte = mnist
        return xtr, ytr, xte[:N_POINTS], yte[:N_POINTS], "mnist"
    xtr, ytr, xte, yte = digits
    return xtr, ytr, xte[:N_POINTS], yte[:N_POINTS], "digits"


def _eps(data: Data, norm: str) -> float:
    mnist = data[4] == "mnist"
    return {"Linf": 0.1, "L2": 1.5 if mnist else 0.6}[norm]


def _train(data: Data, adversarial: bool) -> nn.Module:
    """784-128-10 MLP (64-64-10 on digits), Adam; PGD-5 adversarial training if asked."""
    xtr, ytr, _, _, _ = data
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    d = xtr[0].numel()
    net = nn.Sequential(nn.Flatten(), nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    eps = _eps(data, "Linf")
    pgd = PGD(eps=eps, steps=5, step_size=eps / 2, random_start=True, seed=0)
    for _ in range(4 if d > 100 else 30):
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr), 64):
            idx = perm[i : i + 64]
            xb, yb = xtr[idx], ytr[idx]
            if adversarial:
                xb = pgd(net, xb, yb)
                net.train()
            opt.zero_grad()
            nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@pytest.fixture(scope="module")
def natural(data: Data) -> nn.Module:
    return _train(data, adversarial=False)


@pytest.fixture(scope="module")
def trained(data: Data) -> nn.Module:
    return _train(data, adversarial=True)


def _robust(model: nn.Module, x_adv: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def _agree(model: nn.Module, y: Tensor, ours: Tensor, ref: Tensor, tol_pp: float) -> float:
    r_ours, r_ref = _robust(model, ours, y), _robust(model, ref, y)
    acc_o, acc_r = 100 * float(r_ours.float().mean()), 100 * float(r_ref.float().mean())
    agree = 100 * float((r_ours == r_ref).float().mean())
    print(f"ours {acc_o:.2f}%  official {acc_r:.2f}%  per-point agreement {agree:.1f}%")
    assert abs(acc_o - acc_r) <= tol_pp
    return agree


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_projection_matches_official(norm: str) -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.rand(300, 50, generator=g)
    w = torch.randn(300, 50, generator=g)
    w[:, :3] = 0  # coordinates the hyperplane ignores must not move
    b = (w * torch.rand(300, 50, generator=g)).sum(1) * 3 * torch.rand(300, generator=g)
    ref = {"Linf": fab_proj.projection_linf, "L2": fab_proj.projection_l2}[norm]
    d = project_hyperplane_box(t, w, b, norm)
    torch.testing.assert_close(d, ref(t, w.clone(), b.clone()), atol=2e-6, rtol=0)
    assert float((t + d).min()) >= -1e-6 and float((t + d).max()) <= 1 + 1e-6  # rounding


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_fab_matches_official(norm: str, data: Data, natural: nn.Module) -> None:
    _, _, x, y, _ = data
    eps = _eps(data, norm)
    ours = FAB(eps=eps, norm=norm, steps=100)(natural, x, y)
    ref = fab_pt.FABAttack_PT(natural, norm=norm, eps=eps, n_iter=100, n_restarts=1)
    assert _agree(natural, y, ours, ref.perturb(x, y), tol_pp=0.5) >= 99.0
    dist = (ours - x).flatten(1).norm(p=float("inf") if norm == "Linf" else 2, dim=1)
    assert float(dist.max()) <= eps + 1e-5
    clean = float(_robust(natural, x, y).float().mean())
    assert float(_robust(natural, ours, y).float().mean()) < 0.8 * clean  # it is an attack


@pytest.mark.slow
@pytest.mark.parametrize("which", ["natural", "trained"])
def test_fab_t_matches_official(which: str, data: Data, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(which)
    _, _, x, y, _ = data
    eps = _eps(data, "Linf")
    ours = FAB(eps=eps, targeted=True, n_target_classes=9)(model, x, y)
    ref = fab_pt.FABAttack_PT(model, eps=eps, targeted=True, n_target_classes=9, n_restarts=1)
    assert _agree(model, y, ours, ref.perturb(x, y), tol_pp=0.5) >= 99.0


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.parametrize("which", ["natural", "trained"])
def test_autoattack_matches_official(
    which: str, data: Data, request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue(which)
    _, _, x, y, _ = data
    eps = _eps(data, "Linf")
    ours = evaluate(model, x, y, protocol="autoattack", eps=eps, seed=0)
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    aa = official.AutoAttack(model, eps=eps, norm="Linf", version="standard", seed=0)
    x_ref, _ = aa.run_standard_evaluation(x, y, batch_size=N_POINTS)
    ref_acc = 100 * float(_robust(model, x_ref, y).float().mean())
    ours_acc = 100 * ours.robust_accuracy
    print(f"{which}: ours {ours_acc:.2f}%  official {ref_acc:.2f}%  clean {ours.clean_accuracy}")
    assert 5.0 < ref_acc < 100 * ours.clean_accuracy  # a regime where the attacks matter
    assert abs(ours_acc - ref_acc) <= 0.5
