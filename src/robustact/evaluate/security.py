"""Security curves: accuracy against perturbation size from one minimum-norm run.

A minimum-norm attack (FAB in its minimum-norm mode, :func:`robustact.attacks.fab.fab`
with ``eps=None``, or FMN, :func:`robustact.attacks.fmn.fmn`) finds for each point the
smallest perturbation it can that changes the prediction. A point is then counted robust
at radius ``eps`` exactly when that norm exceeds ``eps``, so one run yields the whole
accuracy-vs-eps curve (the security curve of Biggio & Roli 2018, the accuracy-vs-eps
figures of the seeds). The attack only *finds* adversarial examples, so each point of the
curve is an **upper bound** on the true robust accuracy at that eps, as is a fixed-eps
attack's number; it is not a certificate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from robustact._validate import check_batch
from robustact.attacks.base import frozen_eval
from robustact.attacks.fab import fab
from robustact.attacks.fmn import fmn
from robustact.attacks.threat import canonical_norm

__all__ = ["minimal_norms", "security_curve"]

#: ``fn(model, x (n, ...), y (n,), norm) -> norms (n,)``: a user's minimum-norm attack.
NormFn = Callable[[nn.Module, Tensor, Tensor, str], Tensor]


def _fab_norms(
    targeted: bool, steps: int, restarts: int, seed: int
) -> Callable[[nn.Module, Tensor, Tensor, str], Tensor]:
    def run(model: nn.Module, x: Tensor, y: Tensor, norm: str) -> Tensor:
        gen = torch.Generator(device=x.device).manual_seed(seed)
        res = fab(
            model, x, y, norm=norm, steps=steps, restarts=restarts, targeted=targeted,
            generator=gen,
        )  # fmt: skip
        return res.norms

    return run


def _fmn_norms(model: nn.Module, x: Tensor, y: Tensor, norm: str, steps: int) -> Tensor:
    return fmn(model, x, y, norm=norm, steps=steps).norms


def minimal_norms(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    norm: str = "Linf",
    *,
    attack: str | NormFn = "fab",
    steps: int = 100,
    restarts: int = 1,
    batch_size: int = 500,
    seed: int = 0,
) -> Tensor:
    """Per-point smallest adversarial perturbation found, (N,).

    Args:
        model: classifier; evaluated in eval mode (restored afterwards).
        x: images (N, ...) in [0, 1]; y: labels (N,) int64.
        norm: ``"Linf"`` or ``"L2"``.
        attack: ``"fab"`` (untargeted FAB), ``"fab-t"`` (FAB-T, smallest over the 9 most
            likely wrong classes), ``"fmn"`` (FMN, Pintor et al. 2021) or
            ``fn(model, x, y, norm) -> norms (n,)``.
        steps, restarts: the attack's budget per run (FAB's restarts start at random
            points; FMN has none).
        batch_size: points per attack call; seed: seed of FAB's random restarts.

    Returns:
        norms (N,) on x's device: 0 for points misclassified already, ``inf`` where the
        attack found nothing.
    """
    norm = canonical_norm(norm)
    check_batch(x, y)
    if isinstance(attack, str):
        if attack not in ("fab", "fab-t", "fmn"):
            raise ValueError(
                f"unknown minimum-norm attack {attack!r}; use 'fab', 'fab-t', 'fmn' or a fn"
            )
        fn: NormFn = _fab_norms(attack == "fab-t", steps, restarts, seed)
        if attack == "fmn":
            fn = lambda m, a, b, p: _fmn_norms(m, a, b, p, steps)  # noqa: E731
    elif callable(attack):
        fn = attack
    else:
        raise TypeError(f"attack must be 'fab', 'fab-t', 'fmn' or a callable, got {attack!r}")
    with frozen_eval(model):
        parts = [
            fn(model, x[i : i + batch_size], y[i : i + batch_size], norm).detach()
            for i in range(0, x.shape[0], batch_size)
        ]
    norms = torch.cat(parts) if parts else torch.zeros(0, device=x.device)
    if norms.shape != (x.shape[0],):
        raise ValueError(f"the attack returned norms of shape {tuple(norms.shape)}, need (N,)")
    return norms


def curve_from_norms(norms: Tensor, eps_grid: Sequence[float] | Tensor) -> tuple[Tensor, Tensor]:
    """``(eps (E,), accuracy (E,))``: the fraction of points whose norm exceeds each eps."""
    eps = torch.as_tensor(eps_grid, dtype=torch.float64).flatten()
    if eps.numel() == 0 or not bool(torch.isfinite(eps).all()) or float(eps.min()) < 0:
        raise ValueError("eps_grid must be a non-empty list of finite numbers >= 0")
    n = norms.detach().double().cpu()
    if n.numel() == 0:
        raise ValueError("no points: norms is empty")
    acc = (n[None, :] > eps[:, None]).double().mean(1)
    return eps, acc


def security_curve(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    norm: str,
    eps_grid: Sequence[float] | Tensor,
    *,
    attack: str | NormFn = "fab",
    steps: int = 100,
    restarts: int = 1,
    batch_size: int = 500,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Accuracy against eps from one minimum-norm run: ``(eps (E,), accuracy (E,))``.

    ``accuracy[e]`` is the fraction of the N points whose smallest adversarial
    perturbation found (:func:`minimal_norms`) is larger than ``eps[e]``: at eps 0 it is the
    clean accuracy, it never increases with eps, and each value is an upper bound on the
    robust accuracy at that eps (the attack may miss closer adversarial examples).
    Arguments as in :func:`minimal_norms`; both outputs are float64 on the CPU.
    """
    norms = minimal_norms(
        model, x, y, norm, attack=attack, steps=steps, restarts=restarts,
        batch_size=batch_size, seed=seed,
    )  # fmt: skip
    return curve_from_norms(norms, eps_grid)
