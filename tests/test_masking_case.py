"""The gradient-masking case of DESIGN.md ("Evaluation soundness").

An MLP 784-392-196-10 with a tight S-ReLU cap (m = 0.01) after the second hidden layer
looks robust to plain PGD because most inputs have an exactly-zero input gradient; PGD
with the margin loss and a straight-through (BPDA) gradient through the cap breaks it.
A BReLU model's random gates make single-sample gradients noisy; EOT averages them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from robustact.activations import BReLU, SReLU
from robustact.attacks import PGD, input_gradient, losses
from robustact.data import load_dataset
from robustact.surgery import straight_through

pytestmark = pytest.mark.slow

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
N_POINTS = 500


@dataclass(frozen=True)
class Case:
    """Data and the settings that reproduce the seeds' effect on it."""

    xtr: Tensor
    ytr: Tensor
    x: Tensor
    y: Tensor
    eps: float  # L-inf radius of the comparison
    epochs: int  # S-ReLU training epochs (to convergence, so the cap saturates)
    source: str


@pytest.fixture(scope="module")
def data(digits: tuple[Tensor, Tensor, Tensor, Tensor]) -> Case:
    """mnist-t10k: first 8000 to train, 500 of the last 2000 to attack (DESIGN.md's case,
    eps 0.1); without the shared split, digits at eps 0.2 (its 8x8 images need a larger
    radius before even a natural model falls well below 50 %)."""
    if (SHARED / "MNIST" / "raw").is_dir():
        xtr, ytr = load_dataset("mnist-t10k", root=SHARED, split="train").tensors()
        xte, yte = load_dataset("mnist-t10k", root=SHARED, split="test").tensors()
        return Case(xtr, ytr, xte[:N_POINTS], yte[:N_POINTS], 0.1, 20, "mnist-t10k")
    xtr, ytr, xte, yte = digits
    return Case(xtr, ytr, xte, yte, 0.2, 60, "digits")


def _train(
    net: nn.Sequential, x: Tensor, y: Tensor, epochs: int, batch: int = 64, lr: float = 1e-3
) -> nn.Sequential:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch):
            idx = perm[i : i + batch]
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def _mlp(d: int, act2: nn.Module, act1: nn.Module | None = None) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(d, 392),
        act1 if act1 is not None else nn.ReLU(),
        nn.Linear(392, 196),
        act2,
        nn.Linear(196, 10),
    )


def _acc(model: nn.Module, x: Tensor, y: Tensor, passes: int = 1) -> float:
    """Accuracy in %, averaged over ``passes`` forward passes (for random models)."""
    with torch.no_grad():
        hits = sum(float((model(x).argmax(1) == y).float().mean()) for _ in range(passes))
    return 100 * hits / passes


def test_capped_mlp_masks_gradients_and_bpda_breaks_it(data: Case) -> None:
    xtr, ytr, x, y, EPS = data.xtr, data.ytr, data.x, data.y, data.eps
    # trained to convergence, the cap saturates on most inputs (as in the seeds)
    net = _mlp(xtr[0].numel(), SReLU(0.01))
    net = _train(net, xtr, ytr, epochs=data.epochs, batch=256, lr=2e-3)
    clean = _acc(net, x, y)
    _, grad, _ = input_gradient(net, x, y, losses.get_loss("ce"))
    zero_grad = 100 * float((grad.flatten(1).abs().amax(1) == 0).float().mean())
    plain = _acc(net, PGD(eps=EPS, steps=10, seed=0)(net, x, y), y)
    with straight_through(net):
        assert _acc(net, x, y) == clean  # BPDA changes the backward pass only
        bpda = _acc(net, PGD(eps=EPS, steps=10, loss="margin", seed=0)(net, x, y), y)
    print(
        f"{data.source} eps {EPS}: clean {clean:.1f}%  zero input gradient {zero_grad:.1f}%  ",
        end="",
    )
    print(f"PGD-10 {plain:.1f}%  BPDA+margin PGD-10 {bpda:.1f}%")
    assert clean >= 90.0
    assert zero_grad >= 50.0  # the cap saturates: most inputs give PGD nothing to follow
    assert plain >= 60.0  # the seeds' protocol reports a robust-looking model
    assert bpda <= 25.0  # the adaptive attack shows it is not
    assert not net.training


def test_eot_beats_single_sample_pgd_on_brelu(data: Case) -> None:
    xtr, ytr, x, y, EPS = data.xtr, data.ytr, data.x, data.y, data.eps
    net = _train(_mlp(xtr[0].numel(), BReLU(), BReLU()), xtr, ytr, epochs=8, batch=256, lr=2e-3)
    clean = _acc(net, x, y, passes=20)
    # 20 small steps: single-sample gradients wander, their average does not
    single = _acc(net, PGD(eps=EPS, steps=20, seed=0)(net, x, y), y, passes=20)
    eot = _acc(net, PGD(eps=EPS, steps=20, eot=10, seed=0)(net, x, y), y, passes=20)
    print(f"clean {clean:.1f}%  PGD-20 {single:.1f}%  EOT(10)-PGD-20 {eot:.1f}%")
    assert clean >= 85.0
    assert eot <= single - 4.0
