"""FMN (Pintor et al. 2021): fast minimum-norm attack with an adaptive norm constraint.

FMN keeps a perturbation ``delta`` and a radius ``eps_k``. Each step ascends the margin
``max_{j != y} z_j - z_y`` along its L2-normalised gradient (step ``alpha_k``), projects
``delta`` onto the ``eps_k`` ball (and ``x + delta`` onto [0, 1]), then adapts the radius:

- at an adversarial iterate: ``eps_k = min(eps_{k-1} (1 - gamma_k), best norm)`` (shrink);
- otherwise, once any adversarial point was found: ``eps_k = eps_{k-1} (1 + gamma_k)``;
- before that: ``||delta|| + |margin| / ||grad||_*`` (the linearised distance to the
  boundary, ``*`` the dual norm).

``alpha_k`` and ``gamma_k`` follow cosine schedules from ``alpha_init`` to
``alpha_init / 100`` and from ``gamma_init`` to ``gamma_final``. The smallest adversarial
perturbation seen is returned. :func:`fmn` is the functional core; :class:`FMN` the
:class:`~robustact.attacks.base.Attack` wrapper registered as ``fmn`` (``eps=math.inf``:
minimum-norm; a finite ``eps``: success means a misclassified point within ``eps``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from robustact._validate import check_float, check_int
from robustact.attacks.base import ATTACKS, Attack, AttackResult
from robustact.attacks.fab import MinNormResult
from robustact.attacks.losses import margin
from robustact.attacks.threat import canonical_norm

__all__ = ["FMN", "fmn"]


def _cosine(start: float, end: float, k: int, steps: int) -> float:
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * k / steps))


def _norm(d: Tensor, p: str) -> Tensor:
    flat = d.flatten(1)
    return flat.abs().amax(1) if p == "Linf" else flat.norm(dim=1)


def _project(delta: Tensor, eps: Tensor, p: str) -> Tensor:
    e = eps.reshape(-1, *([1] * (delta.dim() - 1)))
    if p == "Linf":
        return torch.maximum(torch.minimum(delta, e), -e)
    factor = (e / _norm(delta, p).reshape_as(e).clamp_min(1e-12)).clamp(max=1.0)
    return delta * factor


def fmn(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    norm: str = "Linf",
    steps: int = 100,
    alpha_init: float = 1.0,
    gamma_init: float = 0.05,
    gamma_final: float = 0.001,
    eps: float | None = None,
) -> MinNormResult:
    """FMN on ``model`` (eval mode) at ``(x (N, ...), y (N,))``.

    Args:
        norm: ``"Linf"`` or ``"L2"``; steps: iterations.
        alpha_init: first step size (L2-normalised gradient); it anneals to 1/100 of it.
        gamma_init, gamma_final: radius adaptation factor schedule.
        eps: fixed radius: ``success`` means a misclassified point within ``eps`` and
            ``x_adv`` is ``x`` elsewhere; ``None``: minimum-norm mode.

    Returns:
        :class:`~robustact.attacks.fab.MinNormResult`.
    """
    norm = canonical_norm(norm)
    n = x.shape[0]
    dual = 1.0 if norm == "Linf" else 2.0
    delta = torch.zeros_like(x)
    radius = torch.zeros(n, device=x.device, dtype=x.dtype)
    best = torch.full((n,), math.inf, device=x.device, dtype=x.dtype)
    best_x = x.clone()
    found = torch.zeros(n, dtype=torch.bool, device=x.device)
    for k in range(steps + 1):
        with torch.enable_grad():
            d = delta.detach().requires_grad_(True)
            z = model(x + d)
            m = margin(z, y)
            (g,) = torch.autograd.grad(m.sum(), d)
        m, g = m.detach(), g.detach()
        # coordinates pinned at the box that the gradient pushes outward cannot move: drop
        # them, or the normalised step and the boundary estimate shrink with each clip
        xd = x + delta
        g = torch.where(((xd <= 0) & (g < 0)) | ((xd >= 1) & (g > 0)), 0.0, g)
        adv = z.detach().argmax(1) != y
        size = _norm(delta, norm)
        better = adv & (size < best)
        best = torch.where(better, size, best)
        best_x = torch.where(better.reshape(-1, *([1] * (x.dim() - 1))), x + delta, best_x)
        found |= adv
        if k == steps:  # the last pass only scores the final iterate
            break
        gamma = _cosine(gamma_init, gamma_final, k, steps)
        to_boundary = m.abs() / g.flatten(1).norm(p=dual, dim=1).clamp_min(1e-12)
        radius = torch.where(
            adv,
            torch.minimum(radius * (1 - gamma), best),
            torch.where(found, radius * (1 + gamma), size + to_boundary),
        )
        step = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(-1, *([1] * (x.dim() - 1)))
        delta = _project(
            delta + _cosine(alpha_init, alpha_init / 100, k, steps) * step, radius, norm
        )
        delta = (x + delta).clamp(0.0, 1.0) - x
    wrong = best == 0
    success = found if eps is None else best <= eps
    if eps is not None:
        best_x = torch.where(success.reshape(-1, *([1] * (x.dim() - 1))), best_x, x)
    queries = torch.full((n,), steps + 1, dtype=torch.int64, device=x.device)
    queries[wrong] = 1  # misclassified already: the first pass decided it
    return MinNormResult(best_x, success, best, queries)


@ATTACKS.register("fmn")
class FMN(Attack):
    """FMN minimum-norm attack; ``run(...).info["norms"]`` holds the per-point norms.

    Args:
        eps: ``math.inf`` for the minimum-norm mode, or a radius (success within it).
        norm: ``"Linf"`` or ``"L2"``; steps: iterations (the paper: 100 to 1000).
        alpha_init, gamma_init, gamma_final: step and radius schedules (as in the paper).
        seed: unused (FMN is deterministic), kept for the common signature.
    """

    name = "fmn"
    unbounded = True

    def __init__(
        self,
        *,
        eps: float = math.inf,
        norm: str = "Linf",
        steps: int = 100,
        alpha_init: float = 1.0,
        gamma_init: float = 0.05,
        gamma_final: float = 0.001,
        seed: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, seed=seed)
        self.steps = check_int("steps", steps, 1)
        self.alpha_init = check_float("alpha_init", alpha_init, 0.0)
        self.gamma_init = check_float("gamma_init", gamma_init, 0.0)
        self.gamma_final = check_float("gamma_final", gamma_final, 0.0)
        if not self.gamma_final <= self.gamma_init < 1:
            raise ValueError(
                f"need 0 <= gamma_final <= gamma_init < 1, got {gamma_final!r}, {gamma_init!r}"
            )

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        self.logits(model, x[:1])  # checks the labels against the output width
        res = fmn(
            model,
            x,
            y,
            norm=self.norm,
            steps=self.steps,
            alpha_init=self.alpha_init,
            gamma_init=self.gamma_init,
            gamma_final=self.gamma_final,
            eps=None if math.isinf(self.eps) else self.eps,
        )
        norms = torch.where(res.success, res.norms, math.inf)
        return AttackResult(res.x_adv, res.success, res.queries, {"norms": norms})
