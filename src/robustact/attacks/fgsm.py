"""FGSM (Goodfellow et al. 2015): one signed (Linf) or normalised (L2) gradient step of size eps."""

from __future__ import annotations

from torch import Tensor, nn

from robustact._validate import check_int
from robustact.attacks.base import ATTACKS, Attack, AttackResult
from robustact.attacks.engine import ascent
from robustact.attacks.losses import get_loss


@ATTACKS.register("fgsm")
class FGSM(Attack):
    """Fast gradient sign method: ``x + eps * sign(grad CE)`` (L2: normalised gradient).

    Args:
        eps: radius; norm: ``"Linf"`` or ``"L2"``.
        random_start: take the step from a random point of the ball (then projected).
        loss: ``"ce"``, ``"margin"`` or ``"dlr"``.
        eot: stochastic passes averaged for the gradient.
        seed: seed of the random start.
    """

    name = "fgsm"

    def __init__(
        self,
        *,
        eps: float,
        norm: str = "Linf",
        random_start: bool = False,
        loss: str = "ce",
        eot: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, seed=seed)
        self.random_start = bool(random_start)
        self.loss = loss
        self._loss_fn = get_loss(loss)
        self.eot = check_int("eot", eot, 1)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        start = self.threat.init(x, self.generator(x.device)) if self.random_start else x
        x_adv, success, queries = ascent(
            self,
            model,
            x,
            y,
            start,
            loss_fn=self._loss_fn,
            steps=1,
            step_size=self.eps,
            eot=self.eot,
        )
        return AttackResult(x_adv, success, queries)
