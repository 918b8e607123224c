"""Inner maximisations for adversarial training (full-strength, no early exit).

``robustact.attacks.PGD`` is an *evaluation* attack: it stops each point at its first
misclassified iterate and spends a final forward pass checking the last iterate. Madry et
al.'s training instead takes all k steps for every point (the highest-loss example, not the
closest misclassified one), and needs nothing after the last step. These attacks share the
:class:`robustact.attacks.Attack` contract (eval mode, input checks, output projected into
the threat model) and cost exactly k forward+backward passes. Their ``describe()`` comes
from the declared (keyword-only) hyper-parameters, as for every attack.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustact._validate import check_float, check_int
from robustact.attacks.base import Attack
from robustact.attacks.losses import get_loss


class TrainingPGD(Attack):
    """PGD-k for training: random start, k full steps for every point, last iterate returned.

    Args:
        eps: radius; norm: ``"Linf"`` or ``"L2"``.
        steps: number of gradient steps (1 with ``step_size=1.25 * eps`` and a random start
            is "fast" FGSM training, Wong et al. 2020).
        step_size: step length; default ``2.5 * eps / steps``.
        loss: ``"ce"`` (Madry), ``"margin"`` or ``"dlr"``.
        random_start: start uniformly in the ball (else at x: plain FGSM for steps=1).
        seed: seed of the random start (None: torch's global RNG, which ``fit`` seeds
            per epoch).
    """

    name = "training_pgd"

    def __init__(
        self,
        *,
        eps: float,
        steps: int = 7,
        step_size: float | None = None,
        norm: str = "Linf",
        loss: str = "ce",
        random_start: bool = True,
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
        self._loss_fn = get_loss(loss)
        self.random_start = bool(random_start)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        cur = self.threat.init(x, self.generator(x.device)) if self.random_start else x
        for _ in range(self.steps):
            _, grad, _ = self.input_gradient(model, cur, y, self._loss_fn)
            cur = self.threat.project(self.threat.step(cur, grad, self.step_size), x)
        return cur


class TradesKL(Attack):
    """TRADES inner maximisation: PGD on ``KL(f(x) || f(x'))`` from ``x + 0.001 * N(0, 1)``.

    Args:
        eps: L-inf radius (the TRADES paper: 0.031 on CIFAR-10, 0.3 on MNIST).
        steps: ascent steps (paper: 10 on CIFAR-10, 40 on MNIST).
        step_size: per-step size (paper: 0.007 on CIFAR-10, 0.01 on MNIST).
        seed: seed of the random start (None: torch's global RNG).
    """

    name = "trades_kl"

    def __init__(
        self, *, eps: float, steps: int = 10, step_size: float = 0.007, seed: int | None = None
    ) -> None:
        super().__init__(eps=eps, norm="Linf", seed=seed)
        self.steps = check_int("steps", steps, 1)
        self.step_size = check_float("step_size", step_size, 0.0)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        with torch.no_grad():
            p_clean = F.softmax(model(x), dim=1)
        noise = torch.randn(x.shape, generator=self.generator(x.device), device=x.device)
        cur = self.threat.project(x + 0.001 * noise.to(x.dtype), x)

        def kl(logits: Tensor, yy: Tensor, target: Tensor | None = None) -> Tensor:
            # per-sample KL(p_clean || p_adv), maximised over x'
            logp = F.log_softmax(logits, dim=1)
            return F.kl_div(logp, p_clean, reduction="none").sum(1)

        for _ in range(self.steps):
            _, grad, _ = self.input_gradient(model, cur, y, kl)
            cur = self.threat.project(self.threat.step(cur, grad, self.step_size), x)
        return cur
