"""SPSA (Uesato et al. 2018): a gradient-free attack on a finite-difference gradient estimate.

Each iteration draws ``samples`` Rademacher directions ``v`` per point, queries the loss at
``x_adv ± delta * v`` and estimates the gradient as ``mean((L+ - L-) / (2 delta) * v)``;
the estimate feeds an Adam ascent step that is projected into the threat model. It needs
only the model's outputs, so it sees through zero, non-finite or randomised gradients
where Square's random search stalls. A point stops at its first fooling iterate.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustact._validate import check_float, check_int
from robustact.attacks.base import ATTACKS, Attack, AttackResult
from robustact.attacks.losses import get_loss

__all__ = ["SPSA"]

#: Forward passes per chunk of perturbed copies (bounds memory on big inputs).
_CHUNK_ROWS = 8192


@ATTACKS.register("spsa")
class SPSA(Attack):
    """SPSA with Adam, untargeted, Linf or L2.

    Args:
        eps: radius; norm: ``"Linf"`` or ``"L2"``.
        iterations: gradient estimates (and Adam steps) per point.
        samples: direction pairs per estimate (2 * samples queries per iteration).
        delta: finite-difference step (pixel units).
        lr: Adam step size (pixel units per coordinate).
        loss: ``"margin"`` (default) or ``"ce"``; ``"dlr"`` for >= 3 classes.
        eot: forward passes averaged per query (randomised models).
        seed: seed of the directions.

    ``run`` reports ``queries`` (N,): forward passes spent per point (an EOT average
    counts once).
    """

    name = "spsa"

    def __init__(
        self,
        *,
        eps: float,
        norm: str = "Linf",
        iterations: int = 100,
        samples: int = 32,
        delta: float = 0.01,
        lr: float = 0.01,
        loss: str = "margin",
        eot: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, seed=seed)
        self.iterations = check_int("iterations", iterations, 1)
        self.samples = check_int("samples", samples, 1)
        self.delta = check_float("delta", delta, 0.0)
        if self.delta == 0.0:
            raise ValueError("SPSA delta must be > 0 (the finite-difference step), got 0")
        self.lr = check_float("lr", lr, 0.0)
        self.eot = check_int("eot", eot, 1)
        self.loss = loss
        self._loss_fn = get_loss(loss)

    def _losses(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Loss (M,) of ``x`` (M, ...) averaged over ``eot`` passes, in row chunks."""
        out = []
        for i in range(0, x.shape[0], _CHUNK_ROWS):
            xs, ys = x[i : i + _CHUNK_ROWS], y[i : i + _CHUNK_ROWS]
            z = self.logits(model, xs, eot=self.eot)
            out.append(self._loss_fn(z, ys, None))
        return torch.cat(out)

    def estimate(self, model: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> Tensor:
        """SPSA gradient estimate (N, ...) of the loss at ``x`` (N, ...)."""
        n, s = x.shape[0], self.samples
        v = torch.randint(0, 2, (s, *x.shape), generator=gen, device=x.device).to(x.dtype)
        v = v.mul_(2).sub_(1)
        xp = (x.unsqueeze(0) + self.delta * v).flatten(0, 1)
        xm = (x.unsqueeze(0) - self.delta * v).flatten(0, 1)
        yy = y.repeat(s)
        diff = (self._losses(model, xp, yy) - self._losses(model, xm, yy)).view(s, n)
        shape = (s, n) + (1,) * (x.dim() - 1)
        return (diff.view(shape) * v).mean(0) / (2 * self.delta)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        """x (N, ...) in [0, 1], y (N,) -> x_adv (N, ...)."""
        gen = self.generator(x.device)
        x_adv = x.clone()
        m = torch.zeros_like(x)
        v2 = torch.zeros_like(x)
        b1, b2 = 0.9, 0.999
        done = self.logits(model, x, eot=self.eot).argmax(1) != y
        queries = torch.ones(x.shape[0], dtype=torch.long, device=x.device)
        for t in range(1, self.iterations + 1):
            idx = (~done).nonzero().squeeze(1)
            if idx.numel() == 0 or self.eps == 0.0:
                break
            xa = x_adv[idx]
            g = self.estimate(model, xa, y[idx], gen)
            m[idx] = b1 * m[idx] + (1 - b1) * g
            v2[idx] = b2 * v2[idx] + (1 - b2) * g * g
            step = (m[idx] / (1 - b1**t)) / ((v2[idx] / (1 - b2**t)).sqrt() + 1e-12)
            xa = self.threat.project(xa + self.lr * step, x[idx])
            x_adv[idx] = xa
            fooled = self.logits(model, xa, eot=self.eot).argmax(1) != y[idx]
            done[idx] = fooled
            queries[idx] += 2 * self.samples + 1
        return AttackResult(x_adv, done, queries)
