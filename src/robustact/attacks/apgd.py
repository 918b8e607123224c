"""APGD (Croce & Hein 2020): step-size-free PGD with momentum and checkpoints; APGD-T."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from robustact._validate import check_int
from robustact.attacks.base import ATTACKS, Attack, AttackResult
from robustact.attacks.engine import Restarts, Schedule, ascent, target_classes
from robustact.attacks.losses import get_loss

_MOMENTUM = 0.75  # weight of the new step; 0.25 carries over the previous displacement


@ATTACKS.register("apgd")
class APGD(Attack):
    """Auto-PGD with the published step-size schedule.

    The step starts at ``2 * eps`` and halves per point at checkpoints
    p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) (fractions of
    ``steps``) when fewer than 75 % of the steps since the last checkpoint increased the
    loss, or when the step was not halved last time and the best loss did not improve;
    a halving point restarts from its best iterate. Points already misclassified are not
    attacked; each restart and each target runs only on points still correct.

    Args:
        eps: radius; norm: ``"Linf"`` or ``"L2"``.
        loss: ``"ce"``, ``"dlr"`` or ``"margin"``; default ``"ce"`` (``"dlr"`` if targeted).
        steps: iterations per run.
        restarts: random restarts (per target class when targeted).
        targeted: APGD-T: targeted loss towards each of the ``n_target_classes`` most
            likely wrong classes in turn (success is misclassification).
        n_target_classes: how many target classes APGD-T tries.
        eot: stochastic forward passes averaged per gradient.
        seed: seed of the random starts.
    """

    name = "apgd"

    def __init__(
        self,
        *,
        eps: float,
        norm: str = "Linf",
        loss: str | None = None,
        steps: int = 100,
        restarts: int = 1,
        targeted: bool = False,
        n_target_classes: int = 9,
        eot: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, seed=seed)
        self.targeted = bool(targeted)
        self.loss = loss if loss is not None else ("dlr" if self.targeted else "ce")
        self._loss_fn = get_loss(self.loss, targeted=self.targeted)
        self.steps = check_int("steps", steps, 1)
        self.restarts = check_int("restarts", restarts, 1)
        self.n_target_classes = check_int("n_target_classes", n_target_classes, 1)
        self.eot = check_int("eot", eot, 1)
        self.schedule = Schedule()

    def _start(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """A random point on the ball's boundary (as the reference code), clipped to [0, 1]."""
        if self.norm == "Linf":
            t = 2 * torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) - 1
            scale = t.flatten(1).abs().amax(1).clamp_min(1e-12)
        else:
            t = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            scale = t.flatten(1).norm(dim=1).clamp_min(1e-12)
        t = t / scale.reshape(-1, *([1] * (x.dim() - 1)))
        return self.threat.project(x + self.eps * t, x)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        gen = self.generator(x.device)
        clean = self.logits(model, x, self.eot)
        runs = Restarts(x, clean.argmax(1) != y, torch.ones_like(y))
        ranks: list[int | None] = [None]
        if self.targeted:
            ranks = list(range(1, min(self.n_target_classes, clean.shape[1] - 1) + 1))
        for rank in ranks:
            for _ in range(self.restarts):
                todo = runs.todo
                if todo.numel() == 0:
                    break
                xs, ys = x[todo], y[todo]
                target = None if rank is None else target_classes(clean[todo], ys, rank)
                outcome = ascent(
                    self,
                    model,
                    xs,
                    ys,
                    self._start(xs, gen),
                    loss_fn=self._loss_fn,
                    steps=self.steps,
                    step_size=2 * self.eps,
                    momentum=_MOMENTUM,
                    schedule=self.schedule,
                    return_best=True,
                    eot=self.eot,
                    target=target,
                )
                runs.record(*outcome)
        return runs.result()


@ATTACKS.register("apgd-ce")
class APGDCE(APGD):
    """APGD with the cross-entropy loss (AutoAttack's first attack)."""

    name = "apgd-ce"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"loss": "ce", **kwargs})


@ATTACKS.register("apgd-dlr")
class APGDDLR(APGD):
    """APGD with the DLR loss."""

    name = "apgd-dlr"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"loss": "dlr", **kwargs})


@ATTACKS.register("apgd-t")
class APGDT(APGD):
    """APGD-T: targeted DLR over the ``n_target_classes`` most likely wrong classes."""

    name = "apgd-t"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"targeted": True, "loss": "dlr", **kwargs})
