"""PGD (Madry et al. 2018) with restarts, any loss, targeted mode and EOT."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustact._validate import check_float, check_int
from robustact.attacks.base import ATTACKS, Attack, AttackResult
from robustact.attacks.engine import Restarts, ascent, target_classes
from robustact.attacks.losses import get_loss


@ATTACKS.register("pgd")
class PGD(Attack):
    """Projected gradient ascent with a fixed step.

    Each restart runs only on the points no earlier restart fooled; within a run a point
    stops at its first fooling iterate. Points never fooled get the last iterate of the
    last restart.

    Args:
        eps: radius; norm: ``"Linf"`` or ``"L2"``.
        steps: gradient steps per restart.
        step_size: step length (Linf: per coordinate; L2: per sample); default
            ``2.5 * eps / steps``.
        loss: ``"ce"``, ``"margin"`` (CW) or ``"dlr"``.
        random_start: start from a uniform point of the ball (else from ``x``).
        restarts: number of runs (each on the points still correctly classified).
        targeted: maximise the targeted loss towards the ``r``-th most likely wrong class of
            the clean prediction in restart ``r`` (cycling); success is still
            misclassification.
        eot: stochastic forward passes averaged per gradient.
        seed: seed of the random starts.
    """

    name = "pgd"

    def __init__(
        self,
        *,
        eps: float,
        steps: int = 10,
        step_size: float | None = None,
        norm: str = "Linf",
        loss: str = "ce",
        random_start: bool = True,
        restarts: int = 1,
        targeted: bool = False,
        eot: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, seed=seed)
        self.steps = check_int("steps", steps, 1)
        self.step_size = (
            2.5 * self.eps / self.steps
            if step_size is None
            else check_float("step_size", step_size, 0.0)
        )
        self.loss = loss
        self.targeted = bool(targeted)
        self._loss_fn = get_loss(loss, targeted=self.targeted)
        self.random_start = bool(random_start)
        self.restarts = check_int("restarts", restarts, 1)
        self.eot = check_int("eot", eot, 1)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        gen = self.generator(x.device)
        # targeted: the clean pass ranks the targets, and points already wrong are skipped
        clean = self.logits(model, x, self.eot) if self.targeted else None
        runs = (
            Restarts(x) if clean is None else Restarts(x, clean.argmax(1) != y, torch.ones_like(y))
        )
        for r in range(self.restarts):
            todo = runs.todo
            if todo.numel() == 0:
                break
            xs, ys = x[todo], y[todo]
            start = self.threat.init(xs, gen) if self.random_start else xs
            target = None
            if clean is not None:
                target = target_classes(clean[todo], ys, r % (clean.shape[1] - 1) + 1)
            outcome = ascent(
                self,
                model,
                xs,
                ys,
                start,
                loss_fn=self._loss_fn,
                steps=self.steps,
                step_size=self.step_size,
                eot=self.eot,
                target=target,
            )
            runs.record(*outcome)
        return runs.result()
