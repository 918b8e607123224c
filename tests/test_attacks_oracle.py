"""Oracles: our FGSM/PGD against torchattacks, our APGD against the official AutoAttack code.

Same model, same 500 points of the shared MNIST test split (scikit-learn digits when the
split is absent): robust accuracy must agree within 1 percentage point for deterministic
attacks and within 2 points (mean over 3 seeds) for randomised ones.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from robustact.attacks import APGD, FGSM, PGD

torchattacks = pytest.importorskip("torchattacks")
autopgd = pytest.importorskip("pyautoattack.autopgd_base")

pytestmark = [pytest.mark.oracle, pytest.mark.slow]

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
N_POINTS = 500
SEEDS = (0, 1, 2)

Data = tuple[Tensor, Tensor, Tensor, Tensor, str]


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _mnist_t10k() -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
    """(x_train, y_train, x_test, y_test): first 8000 / last 2000 of t10k, or None if absent."""
    try:
        from robustact.data import load_dataset

        xtr, ytr = load_dataset("mnist-t10k", split="train").tensors()
        xte, yte = load_dataset("mnist-t10k", split="test").tensors()
        return xtr, ytr, xte, yte
    except (ImportError, FileNotFoundError, OSError, KeyError, ValueError):
        pass
    raw = SHARED / "MNIST" / "raw"
    if not (raw / "t10k-images-idx3-ubyte.gz").is_file():
        return None
    x = torch.tensor(_read_idx(raw / "t10k-images-idx3-ubyte.gz"), dtype=torch.float32) / 255
    y = torch.tensor(_read_idx(raw / "t10k-labels-idx1-ubyte.gz"), dtype=torch.int64)
    x = x.unsqueeze(1)
    return x[:8000], y[:8000], x[8000:], y[8000:]


@pytest.fixture(scope="module")
def data(digits: tuple[Tensor, Tensor, Tensor, Tensor]) -> Data:
    mnist = _mnist_t10k()
    if mnist is not None:
        xtr, ytr, xte, yte = mnist
        return xtr, ytr, xte[:N_POINTS], yte[:N_POINTS], "mnist"
    xtr, ytr, xte, yte = digits
    return xtr, ytr, xte, yte, "digits"


@pytest.fixture(scope="module")
def model(data: Data) -> nn.Module:
    """A natural MLP (784-128-10 on MNIST), 4 epochs of Adam: about a second on CPU."""
    xtr, ytr, _, _, _ = data
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    d = xtr[0].numel()
    net = nn.Sequential(nn.Flatten(), nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    epochs = 4 if d > 100 else 30
    for _ in range(epochs):
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(xtr[idx]), ytr[idx]).backward()
            opt.step()
    return net.eval()


def _eps(data: Data, norm: str) -> float:
    # radii where a natural model keeps 10-25 % accuracy: the attacks' differences show
    mnist = data[4] == "mnist"
    return {"Linf": 0.1, "L2": 1.5 if mnist else 0.6}[norm]


def _robust(model: nn.Module, x_adv: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def _compare(
    model: nn.Module, y: Tensor, ours: list[Tensor], ref: list[Tensor], tol_pp: float
) -> tuple[float, float, float]:
    """Mean robust accuracy (%) of ours and the reference, and mean per-point agreement."""
    r_ours = [_robust(model, a, y) for a in ours]
    r_ref = [_robust(model, a, y) for a in ref]
    acc_ours = 100 * float(torch.stack(r_ours).float().mean())
    acc_ref = 100 * float(torch.stack(r_ref).float().mean())
    agree = 100 * float(
        torch.stack([(a == b).float().mean() for a, b in zip(r_ours, r_ref, strict=True)]).mean()
    )
    print(f"ours {acc_ours:.2f}%  reference {acc_ref:.2f}%  per-point agreement {agree:.1f}%")
    assert abs(acc_ours - acc_ref) <= tol_pp
    assert agree >= 95.0
    return acc_ours, acc_ref, agree


def test_model_is_a_sensible_target(data: Data, model: nn.Module) -> None:
    _, _, x, y, _ = data
    assert x.shape[0] >= 300 and float(_robust(model, x, y).float().mean()) > 0.9


def test_fgsm_matches_torchattacks(data: Data, model: nn.Module) -> None:
    _, _, x, y, _ = data
    eps = _eps(data, "Linf")
    ours = FGSM(eps=eps)(model, x, y)
    ref = torchattacks.FGSM(model, eps=eps)(x, y)
    _compare(model, y, [ours], [ref], tol_pp=1.0)


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_pgd_matches_torchattacks(norm: str, data: Data, model: nn.Module) -> None:
    _, _, x, y, _ = data
    eps = _eps(data, norm)
    alpha = eps / 4
    ours, ref = [], []
    for s in SEEDS:
        ours.append(PGD(eps=eps, norm=norm, steps=10, step_size=alpha, seed=s)(model, x, y))
        torch.manual_seed(s)  # torchattacks draws its random start from the global RNG
        if norm == "Linf":
            ta = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=10, random_start=True)
        else:
            ta = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=10, random_start=True)
        ref.append(ta(x, y))
    _compare(model, y, ours, ref, tol_pp=2.0)


@pytest.mark.parametrize(
    "norm,loss", [("Linf", "ce"), ("Linf", "dlr"), ("L2", "ce")], ids=["linf-ce", "linf-dlr", "l2"]
)
def test_apgd_matches_autoattack(norm: str, loss: str, data: Data, model: nn.Module) -> None:
    _, _, x, y, _ = data
    eps = _eps(data, norm)
    ours, ref = [], []
    for s in SEEDS:
        ours.append(APGD(eps=eps, norm=norm, loss=loss, steps=100, seed=s)(model, x, y))
        official = autopgd.APGDAttack(
            model, n_iter=100, norm=norm, eps=eps, loss=loss, seed=s, device=x.device
        )
        ref.append(official.perturb(x, y))
    _compare(model, y, ours, ref, tol_pp=2.0)


def test_apgd_t_matches_autoattack(data: Data, model: nn.Module) -> None:
    _, _, x, y, _ = data
    eps = _eps(data, "Linf")
    ours, ref = [], []
    for s in SEEDS:  # 3 target classes (AutoAttack uses 9) keep the test short
        ours.append(APGD(eps=eps, targeted=True, n_target_classes=3, seed=s)(model, x, y))
        official = autopgd.APGDAttack_targeted(
            model, n_iter=100, eps=eps, n_target_classes=3, seed=s, device=x.device
        )
        ref.append(official.perturb(x, y))
    _compare(model, y, ours, ref, tol_pp=2.0)
