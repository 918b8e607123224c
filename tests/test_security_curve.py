"""FAB at a fixed radius and in minimum-norm mode, the security curve, the AutoAttack
protocols and RobustBench entries."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import Tensor, nn

from robustact.attacks import APGD, FAB, PGD
from robustact.attacks.fab import fab
from robustact.evaluate import evaluate, get_protocol
from robustact.evaluate.robustbench import format_eps, robustbench_entry
from robustact.evaluate.security import curve_from_norms, minimal_norms, security_curve

Digits = tuple[Tensor, Tensor, Tensor, Tensor]

# Measured on 150 digits test points (natural 64-64-10 MLP), against APGD-CE + PGD-margin
# (3 restarts, 50 steps each): the one-run FAB curve was at most 1.33 pp (2 points) above it
# at any Linf radius and 0.67 pp in L2, so 3 pp; FMN (100 steps) at most 4.0 pp (Linf, in
# the tail, eps 0.15) and 3.3 pp (L2), so 5 pp. Each allows that noise, no more.
CURVE_TOL = {"fab": 0.03, "fmn": 0.05}
GRIDS = {
    "Linf": [0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 1.0],
    "L2": [0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5, 8.0],
}


def _acc(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _strong_pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, norm: str) -> float:
    r = model(APGD(eps=eps, norm=norm, steps=50, seed=0)(model, x, y)).argmax(1) == y
    pgd = PGD(eps=eps, norm=norm, loss="margin", steps=50, step_size=eps / 4, restarts=3, seed=0)
    keep = r.clone()
    keep[r] = model(pgd(model, x[r], y[r])).argmax(1) == y[r]
    return float(keep.float().mean())


@pytest.mark.slow
@pytest.mark.parametrize("attack", ["fab", "fmn"])
@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_security_curve_is_a_sound_accuracy_curve(
    norm: str, attack: str, digits: Digits, digits_mlp: nn.Module
) -> None:
    _, _, xte, yte = digits
    x, y = xte[:150], yte[:150]
    grid = GRIDS[norm]
    eps, acc = security_curve(digits_mlp, x, y, norm, grid, attack=attack)
    assert eps.tolist() == grid and acc.shape == (len(grid),)
    assert float(acc[0]) == pytest.approx(_acc(digits_mlp, x, y))  # eps 0: clean accuracy
    assert bool((acc[1:] <= acc[:-1]).all())  # never increases
    assert float(acc[-1]) == 0.0  # a large radius breaks every point
    assert 0.2 < float(acc[5]) < 0.9  # the middle of the grid is where it matters
    for i in (2, 4, 5):
        pgd = _strong_pgd(digits_mlp, x, y, grid[i], norm)
        print(f"{norm} eps {grid[i]}: curve {float(acc[i]):.3f} PGD {pgd:.3f}")
        assert float(acc[i]) <= pgd + CURVE_TOL[attack]


def test_minimal_norms_are_adversarial_and_minimal_in_order(
    digits: Digits, digits_mlp: nn.Module
) -> None:
    _, _, xte, yte = digits
    x, y = xte[:40], yte[:40]
    res = fab(digits_mlp, x, y, norm="L2", steps=30)
    found = res.success & (res.norms > 0)
    assert float(found.float().mean()) > 0.8
    with torch.no_grad():
        assert bool((digits_mlp(res.x_adv[found]).argmax(1) != y[found]).all())
    dist = (res.x_adv - x).flatten(1).norm(dim=1)
    torch.testing.assert_close(dist[found], res.norms[found])
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    assert bool((res.queries[found] > 0).all())
    # a fixed radius below the median norm breaks about half, none beyond eps
    eps = float(res.norms[found].median())
    out = FAB(eps=eps, norm="L2", steps=30).run(digits_mlp, x, y)
    x_adv = out.x_adv
    broken = (digits_mlp(x_adv).argmax(1) != y) & (digits_mlp(x).argmax(1) == y)
    assert 0.2 < float(broken.float().mean()) < 0.8
    assert torch.equal(out.success, digits_mlp(x_adv).argmax(1) != y)
    assert float((x_adv - x).flatten(1).norm(dim=1).max()) <= eps + 1e-5
    assert torch.equal(x_adv[~out.success], x[~out.success])  # AutoAttack: no partial example
    assert bool((out.info["norms"][out.success] <= eps + 1e-6).all())
    # eps = inf is the minimum-norm mode of the attack API: the same norms as fab()
    unbounded = FAB(eps=math.inf, norm="L2", steps=30).run(digits_mlp, x, y)
    torch.testing.assert_close(unbounded.info["norms"], res.norms)
    assert FAB(eps=math.inf).describe()["eps"] is None


def test_minimal_norms_validates_and_accepts_a_callable(
    digits: Digits, digits_mlp: nn.Module
) -> None:
    _, _, xte, yte = digits
    x, y = xte[:8], yte[:8]
    with pytest.raises(ValueError, match="unknown minimum-norm attack"):
        minimal_norms(digits_mlp, x, y, attack="cw")
    with pytest.raises(ValueError, match="need \\(N,\\)"):
        minimal_norms(digits_mlp, x, y, attack=lambda m, a, b, n: torch.zeros(3))
    with pytest.raises(ValueError, match="eps_grid"):
        curve_from_norms(torch.ones(4), [-0.1])
    norms = minimal_norms(digits_mlp, x, y, attack=lambda m, a, b, n: torch.full((len(b),), 0.5))
    _, acc = curve_from_norms(norms, [0.4, 0.5, 0.6])
    assert acc.tolist() == [1.0, 0.0, 0.0]  # robust at eps iff the norm exceeds it
    targeted = minimal_norms(digits_mlp, x, y, "L2", attack="fab-t", steps=20, batch_size=3)
    plain = minimal_norms(digits_mlp, x, y, "L2", attack="fab", steps=20)
    assert targeted.shape == (8,) and bool(torch.isfinite(targeted).all())
    assert float(targeted.median()) <= 1.5 * float(plain.median())  # same scale of norms
    digits_mlp.train()
    minimal_norms(digits_mlp, x, y, attack=lambda m, a, b, n: torch.ones(len(b)))
    assert digits_mlp.training  # the model's mode is restored


def test_autoattack_protocols_are_the_official_lists() -> None:
    aa = get_protocol("autoattack", eps=8 / 255)
    assert [e.label for e in aa.entries] == ["APGD-CE", "APGD-T", "FAB-T", "Square"]
    fab_t = aa.entries[2]
    assert fab_t.attack == "fab" and fab_t.kwargs["targeted"]
    assert fab_t.kwargs["n_target_classes"] == 9 and fab_t.kwargs["steps"] == 100
    assert aa.entries[3].kwargs["queries"] == 5000 and aa.cascade
    rand = get_protocol("autoattack-rand", eps=0.1)
    assert [e.attack for e in rand.entries] == ["apgd", "apgd"]
    assert all(e.eot == 20 for e in rand.entries)
    fast = get_protocol("autoattack", eps=0.1, fast=True)
    assert fast.fast and "QUICK" in str(fast)


def test_robustbench_entry(digits: Digits, digits_mlp: nn.Module) -> None:
    _, _, xte, yte = digits
    x, y = xte[:30], yte[:30]
    # a radius where APGD-CE breaks every point: the full protocol then costs seconds
    res = evaluate(digits_mlp, x, y, protocol="autoattack", eps=0.5, seed=0)
    entry = robustbench_entry(res, name="digits MLP", architecture="MLP-64", dataset="digits")
    json.dumps(entry)
    assert entry["eps"] == "0.5" and entry["additional_data"] is False
    assert entry["clean_acc"] == f"{100 * res.clean_accuracy:.2f}"
    assert entry["autoattack_acc"] == f"{100 * res.robust_accuracy:.2f}"
    assert float(entry["autoattack_acc"]) <= float(entry["clean_acc"])
    assert entry["n_examples"] == 30 and entry["threat_model"] == "Linf"
    assert list(entry)[:12] == [
        "link", "name", "authors", "additional_data", "number_forward_passes", "dataset",
        "venue", "architecture", "eps", "clean_acc", "reported", "autoattack_acc",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="fast=True"):
        robustbench_entry(dataclasses.replace(res, fast=True))
    with pytest.raises(ValueError, match="needs an AutoAttack evaluation"):
        robustbench_entry(dataclasses.replace(res, protocol="seed"))
    assert format_eps(8 / 255, "Linf") == "8/255" and format_eps(0.3, "Linf") == "0.3"
    assert format_eps(0.5, "L2") == "0.5"


def test_autoattack_rand_runs_eot_on_a_noisy_model(digits: Digits, digits_mlp: nn.Module) -> None:
    class Noise(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x + 0.05 * torch.randn_like(x)

    _, _, xte, yte = digits
    x, y = xte[:20], yte[:20]
    noisy = nn.Sequential(Noise(), digits_mlp).eval()
    res = evaluate(noisy, x, y, protocol="autoattack-rand", eps=0.3, fast=True, seed=0, repeats=1)
    assert [a.label for a in res.attacks] == ["APGD-CE+EOT", "APGD-DLR+EOT"]
    assert res.attacks[0].describe["eot"] == 8  # fast: 8 passes per gradient (full: 20)
    assert res.robust_accuracy < 0.5 * res.clean_accuracy
