"""Carlini-Wagner L2 attack (Carlini & Wagner, S&P 2017), untargeted, with binary search.

Minimal-distortion attack: for each point it minimises over ``w``

    ||x' - x||_2^2 + c * max(z_y(x') - max_{j != y} z_j(x'), -kappa),   x' = (tanh(w) + 1) / 2

with Adam. The tanh change of variable keeps ``x'`` in [0, 1] without clipping. A binary
search over ``c`` per point (starting from ``c``; x10 while the point has never been fooled,
bisection between the bounds once it has) trades success against distortion, and the
smallest-distortion successful iterate over all searches is returned. Points never fooled
return ``x`` unchanged.

CW is unbounded: the result is a distortion per point. Accuracy "at eps" (``eps=`` given)
counts a point as broken when its CW example has L2 distortion <= eps, or when that example,
scaled radially onto the eps-sphere, still fools the model (a legitimate adversarial point
inside the threat model, so a sound evaluation must count it). Without ``eps`` the threat
model is ``Unbounded("L2")``: only [0, 1] applies.

Success (as in the reference code) means ``max_{j != y} z_j - z_y > kappa``: with the default
``kappa = 0`` that is misclassification.

Known weakness of short runs (shared with the reference and torchattacks): a pixel exactly at
0 or 1 starts at ``w = atanh(+-0.999999) = +-7.25`` where ``tanh'`` is ~2e-6. Adam moves ``w``
by at most about ``lr`` per step, so with ``lr = 0.01`` such a pixel barely moves in the first
few hundred steps. On MNIST-like data (mostly exact zeros) a 50-100 step CW is therefore much
weaker than its budget suggests; read short-run CW numbers as upper bounds on robustness.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from robustact._validate import check_float, check_int
from robustact.attacks.base import ATTACKS, Attack, AttackResult
from robustact.attacks.losses import margin

__all__ = ["CW"]

# Keeps atanh finite at pixels exactly 0 or 1 (so they can move), as in the reference code.
_TANH_SHRINK = 0.999999


def _positive(name: str, value: float) -> float:
    v = check_float(name, value, 0.0)
    if v == 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _to_tanh_space(x: Tensor) -> Tensor:
    return torch.atanh((2 * x - 1) * _TANH_SHRINK)


def _from_tanh_space(w: Tensor) -> Tensor:
    return (torch.tanh(w) + 1) / 2


@ATTACKS.register("cw")
class CW(Attack):
    """Carlini-Wagner L2 with a per-point binary search over ``c``.

    Args:
        c: initial trade-off constant (> 0).
        kappa: confidence margin (>= 0).
        steps: Adam steps per binary-search step (>= 1).
        lr: Adam learning rate on ``w`` (> 0).
        binary_search_steps: outer steps (>= 1); 1 runs a single optimisation at ``c``.
        eps: optional L2 radius; when given the returned points lie in the eps-ball and
            the attack succeeds only inside it (see the module docstring); None or
            ``math.inf``: unbounded.
        abort_early: stop optimising a point once its objective stalls (checked every
            ``steps // 10`` steps, as in the reference code, but per point).
        seed: accepted for a uniform interface; CW is deterministic.

    :meth:`run` gives ``success`` (N,) (the returned point is adversarial), ``queries``
    (N,) (forward passes per point) and ``info["distortion"]`` (N,), the L2 distortion of
    the best successful example (``inf`` where never fooled), and
    ``info["mean_distortion"]`` (mean over fooled points, ``nan`` when none).
    """

    name = "cw"
    unbounded = True

    def __init__(
        self,
        *,
        c: float = 1.0,
        kappa: float = 0.0,
        steps: int = 100,
        lr: float = 0.01,
        binary_search_steps: int = 9,
        eps: float | None = None,
        abort_early: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__(eps=math.inf if eps is None else eps, norm="L2", seed=seed)
        self.steps = check_int("steps", steps, 1)
        self.binary_search_steps = check_int("binary_search_steps", binary_search_steps, 1)
        self.c = _positive("c", c)
        self.lr = _positive("lr", lr)
        self.kappa = check_float("kappa", kappa, 0.0)
        self.abort_early = bool(abort_early)

    def _optimise(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        const: Tensor,
        best_l2sq: Tensor,
        best: Tensor,
        queries: Tensor,
    ) -> Tensor:
        """One run of Adam at per-point ``const`` (N,); updates ``best_l2sq``/``best`` and
        the per-point forward count ``queries`` in place; returns (N,) bool, fooled at
        least once during this run.

        With ``abort_early`` a point stops (its ``w`` frozen, no more forward passes) once
        its objective has not fallen by 0.01 % over the last ``steps // 10`` steps, as in
        the reference code but per point, so a point's result never depends on its batch.
        """
        n = x.shape[0]
        w = _to_tanh_space(x).detach().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=self.lr)
        fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
        running = torch.ones(n, dtype=torch.bool, device=x.device)
        prev = torch.full((n,), math.inf, device=x.device, dtype=x.dtype)
        check = max(self.steps // 10, 1)
        for t in range(self.steps):
            idx = running.nonzero().squeeze(1)
            x_new = _from_tanh_space(w[idx])
            logits = model(x_new)
            queries[idx] += 1
            l2sq = (x_new - x[idx]).flatten(1).pow(2).sum(dim=1)
            # margin() is what the attacker maximises; CW's f is its negative, floored at -kappa
            obj = l2sq - const[idx] * margin(logits, y[idx], kappa=self.kappa)
            # autograd.grad w.r.t. w only: the model's .grad fields stay untouched; stopped
            # points get a zero gradient and their w is put back after the step (Adam's
            # momentum would still move them)
            (w.grad,) = torch.autograd.grad(obj.sum(), [w])
            frozen = w.detach()[~running].clone()
            opt.step()
            with torch.no_grad():
                w[~running] = frozen
                succ = margin(logits.detach(), y[idx]) > self.kappa
                fooled[idx] |= succ
                l2d = l2sq.detach()
                better = succ & (l2d < best_l2sq[idx])
                best_l2sq[idx[better]] = l2d[better]
                best[idx[better]] = x_new.detach()[better]
                if self.abort_early and t % check == 0:
                    stalled = obj.detach() > prev[idx] * 0.9999
                    prev[idx] = obj.detach()
                    running[idx[stalled]] = False
                    if not bool(running.any()):
                        break
        return fooled

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        """Run CW-L2; x (N, ...) in [0, 1], y (N,) -> result with x_adv (N, ...)."""
        # checks labels against the model's width up front (a label check, not a query;
        # kept as one pass on x[:1] so a stochastic model sees the same random draws)
        self.logits(model, x[:1])
        n = x.shape[0]
        dev, dt = x.device, x.dtype
        const = torch.full((n,), self.c, device=dev, dtype=dt)
        lower = torch.zeros(n, device=dev, dtype=dt)
        upper = torch.full((n,), math.inf, device=dev, dtype=dt)
        best_l2sq = torch.full((n,), math.inf, device=dev, dtype=dt)
        best = x.clone()
        queries = torch.zeros(n, dtype=torch.long, device=dev)
        for _ in range(self.binary_search_steps):
            fooled = self._optimise(model, x, y, const, best_l2sq, best, queries)
            upper = torch.where(fooled, torch.minimum(upper, const), upper)
            lower = torch.where(fooled, lower, torch.maximum(lower, const))
            const = torch.where(torch.isfinite(upper), (lower + upper) / 2, const * 10)
        dist = best_l2sq.sqrt()
        x_adv = best
        fooled_any = torch.isfinite(dist)
        if math.isfinite(self.eps):
            x_adv, fooled_any = self._within_eps(model, x, y, best, dist, queries)
        ok = dist[torch.isfinite(dist)]
        mean = float(ok.mean()) if ok.numel() else math.nan
        info = {"distortion": dist, "mean_distortion": mean}
        return AttackResult(x_adv, fooled_any, queries, info)

    @torch.no_grad()
    def _within_eps(
        self, model: nn.Module, x: Tensor, y: Tensor, best: Tensor, dist: Tensor, queries: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Points beyond ``eps``: scale onto the eps-sphere, keep if still fooling, else x."""
        eps = self.eps
        inside = dist <= eps
        far = torch.isfinite(dist) & ~inside
        out = torch.where(inside.reshape(-1, *([1] * (x.dim() - 1))), best, x)
        fooled = inside.clone()
        if bool(far.any()):
            idx = far.nonzero().squeeze(1)
            scale = (eps / dist[idx]).reshape(-1, *([1] * (x.dim() - 1)))
            cand = (x[idx] + (best[idx] - x[idx]) * scale).clamp(0.0, 1.0)
            still = margin(model(cand), y[idx]) > self.kappa
            queries[idx] += 1
            out[idx[still]] = cand[still]
            fooled[idx[still]] = True
        return out, fooled
