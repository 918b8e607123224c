"""Zero-gradient PGD: how far is the nearest point where gradient attacks stall?

The dissertation's §4.4 ("Zero Gradient Experiment", Figs 4.4-4.7) modifies PGD with a new
stopping rule: instead of stopping once an adversarial example is found, keep stepping until
the gradient of the attack objective with respect to the input is zero, then measure the
Euclidean (L2) distance from the clean input to that point. A point where the gradient is
exactly zero stops FGSM and PGD dead, so a model whose zero-gradient points lie close to the
clean inputs is one that gradient attacks cannot push far. Samples where no zero gradient
appears within the iteration budget are left out, and the figures report the mean distance
over the samples where one was found.

What this implements, exactly:

* the objective is the cross-entropy of the true label, *maximised* (untargeted PGD
  ascent), starting at the clean input ``x`` itself (no random start: the experiment asks
  where the gradient path from ``x`` stalls; Fig. 4.4 draws it from ``x``);
* the gradient is checked *before* every step, so a point whose gradient is already zero at
  ``x`` is found at step 0 with distance 0 (with an S-ReLU cap this is the common case);
* "zero" means every entry of the per-sample input gradient is exactly ``0.0`` (what stalls
  a sign or normalised step), not small;
* steps are PGD steps of the chosen norm (``Linf``: sign of the gradient; ``L2``: the
  normalised gradient), projected onto the eps-ball around ``x`` and [0, 1];
  ``eps=math.inf`` leaves the walk unbounded except for the [0, 1] box;
* misclassification does not stop the walk (the point of the modification).

This is a diagnostic of gradient masking, not a robustness measure: a short distance means
gradient-based attacks stall close to the data, which is exactly when they under-report
success (see DESIGN.md, "Evaluation soundness").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from robustact._validate import check_float, check_int
from robustact.attacks.base import ATTACKS, Attack, AttackResult
from robustact.attacks.losses import get_loss

__all__ = ["ZeroGradPGD", "ZeroGradResult"]


@dataclass(frozen=True)
class ZeroGradResult(AttackResult):
    """Outcome of :meth:`ZeroGradPGD.walk` for N points (an :class:`AttackResult` whose
    ``x_adv`` is ``x_zero`` and whose ``success`` is "the returned point is misclassified").

    Attributes:
        distance: (N,) L2 distance ``||x_zero - x||_2``; ``nan`` where not found.
        found: (N,) bool, a zero-gradient point was reached within the budget.
        steps: (N,) int64 PGD steps taken to reach it (0: the gradient is zero at ``x``);
            the step budget where not found.
    """

    distance: Tensor = field(kw_only=True)
    found: Tensor = field(kw_only=True)
    steps: Tensor = field(kw_only=True)

    @property
    def x_zero(self) -> Tensor:
        """(N, ...) the first iterate with an all-zero input gradient; the last iterate
        where none was found."""
        return self.x_adv

    @property
    def found_rate(self) -> float:
        """Fraction of points where a zero gradient was found."""
        return float(self.found.float().mean()) if self.found.numel() else math.nan

    @property
    def mean_distance(self) -> float:
        """Mean L2 distance over the points where one was found (the figures' statistic)."""
        d = self.distance[self.found]
        return float(d.mean()) if d.numel() else math.nan


@ATTACKS.register("zerograd_pgd")
class ZeroGradPGD(Attack):
    """PGD ascent on cross-entropy that stops per point at the first all-zero input gradient.

    Args:
        eps: radius of the ball the walk is projected onto (``math.inf``: unbounded).
        steps: step budget (>= 1).
        step_size: PGD step length (> 0) in the norm's units.
        norm: ``"Linf"`` (sign steps) or ``"L2"`` (normalised-gradient steps).
        seed: accepted for a uniform interface; the walk is deterministic.

    ``__call__(model, x, y)`` returns ``x_zero``; :meth:`walk` (or :meth:`run`) returns the
    full :class:`ZeroGradResult`.
    """

    name = "zerograd_pgd"
    unbounded = True

    def __init__(
        self,
        *,
        eps: float,
        steps: int,
        step_size: float,
        norm: str = "Linf",
        seed: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, seed=seed)
        self.steps = check_int("steps", steps, 1)
        self.step_size = check_float("step_size", step_size, 0.0)
        if self.step_size == 0:
            raise ValueError(f"step_size must be a finite number > 0, got {step_size!r}")
        self._loss = get_loss("ce")

    def walk(self, model: nn.Module, x: Tensor, y: Tensor) -> ZeroGradResult:
        """The zero-gradient walk for x (N, ...) in [0, 1] and labels y (N,)."""
        res = self.run(model, x, y)
        if isinstance(res, ZeroGradResult):
            return res
        # an empty batch never reaches perturb
        empty = torch.zeros(0, dtype=torch.long, device=x.device)
        return ZeroGradResult(
            res.x_adv,
            res.success,
            empty,
            distance=empty.to(x.dtype),
            found=res.success,
            steps=empty,
        )

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> ZeroGradResult:
        n = x.shape[0]
        x_cur = x.clone()
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        steps = torch.full((n,), self.steps, dtype=torch.long, device=x.device)
        fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
        active = torch.arange(n, device=x.device)
        for t in range(self.steps + 1):
            _, grad, logits = self.input_gradient(model, x_cur[active], y[active], self._loss)
            fooled[active] = logits.argmax(dim=1) != y[active]
            zero = (grad.flatten(1) == 0).all(dim=1)
            hit = active[zero]
            found[hit] = True
            steps[hit] = t
            active, grad = active[~zero], grad[~zero]
            # every point's final iterate has now been evaluated (gradient and logits)
            if t == self.steps or active.numel() == 0:
                break
            stepped = self.threat.step(x_cur[active], grad, self.step_size)
            x_cur[active] = self.threat.project(stepped, x[active])
        dist = (x_cur - x).flatten(1).norm(dim=1)
        dist = torch.where(found, dist, torch.full_like(dist, math.nan))
        # a point is evaluated before each step it takes and once where it stops
        return ZeroGradResult(x_cur, fooled, steps + 1, distance=dist, found=found, steps=steps)
