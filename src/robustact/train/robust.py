"""TRADES, the adaptive hybrid, and the two-phase "train naturally, then fine-tune" recipe."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustact.train.adversary import TradesKL, TrainingPGD
from robustact.train.objectives import (
    OBJECTIVES,
    AttackFn,
    Batches,
    Metrics,
    Natural,
    Objective,
    _acc,
    describe_attack,
    eval_mode,
)

if TYPE_CHECKING:
    from robustact.train.config import TrainConfig
    from robustact.train.loop import History


class Trades(Objective):
    """TRADES (Zhang et al. 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x'))``.

    ``x'`` maximises the KL inside the L-inf ball (:class:`~robustact.train.adversary.TradesKL`:
    random start ``x + 0.001 * N(0, 1)``, ``steps`` signed-gradient steps of ``step_size``).
    The KL is averaged over the batch; gradients flow through both distributions, as in the
    reference implementation.

    Metrics: ``ce``, ``acc`` (clean), ``kl``, ``adv_acc``.
    """

    name = "trades"

    def __init__(
        self, beta: float = 6.0, eps: float = 0.031, steps: int = 10, step_size: float = 0.007
    ) -> None:
        b = float(beta)
        if not b >= 0 or math.isinf(b):
            raise ValueError(f"TRADES beta must be a finite number >= 0, got {beta!r}")
        self.beta = b
        self.attack = TradesKL(eps=eps, steps=steps, step_size=step_size)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Metrics]:
        with eval_mode(model):
            x_adv = self.attack(model, x, y).detach()
        logits = model(x)
        logits_adv = model(x_adv)
        ce = F.cross_entropy(logits, y)
        kl = F.kl_div(
            F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1), reduction="batchmean"
        )
        metrics: Metrics = {
            "ce": ce.detach(), "acc": _acc(logits, y), "kl": kl.detach(),
            "adv_acc": _acc(logits_adv, y),
        }  # fmt: skip
        return ce + self.beta * kl, metrics

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "beta": self.beta, "attack": self.attack.describe()}


def _default_hybrid_attack(eps: float) -> AttackFn:
    return TrainingPGD(eps=eps, steps=7)


class Hybrid(Objective):
    """The preprint's hybrid defence (seed 001 §3): growing eps plus an adaptive loss.

    Loss: ``alpha * CE(x) + (1 - alpha) * CE(x_adv)``, ``x_adv`` from ``make_attack(eps_t)``.
    ``eps_t`` grows linearly from ``eps / 10`` at epoch 0 to ``eps`` at epoch
    ``ramp_epochs - 1`` (default: the last epoch) and stays there. After every epoch,
    ``alpha = acc_adv / (acc_adv + acc_clean)`` is measured on the validation data (attack at
    that epoch's ``eps_t``) and used for the next epoch; before the first measurement, and
    when both accuracies are 0, ``alpha = 0.5``.

    Note what this weighting does: alpha is the *robust* share of accuracy, so the more robust
    the model already is, the MORE weight goes to the clean loss (robust = clean gives 0.5; a
    non-robust model, acc_adv = 0, trains purely adversarially). The preprint motivates it as
    "prioritise robustness while robust accuracy is low"; it is implemented as specified.

    Args:
        eps: final radius.
        make_attack: ``eps -> attack`` (default: 7-step training PGD, step 2.5 * eps / 7).
        ramp_epochs: epochs over which eps grows (None: all of them).
        start_fraction: ``eps_0 / eps`` (the preprint: 1/10).

    Metrics: ``ce``, ``acc``, ``adv_ce``, ``adv_acc``; history also gets ``hybrid_alpha``,
    ``hybrid_eps`` and the validation ``hybrid_acc_clean``/``hybrid_acc_adv``.
    """

    name = "hybrid"
    needs_validation = True

    def __init__(
        self,
        eps: float,
        make_attack: Callable[[float], AttackFn] | None = None,
        ramp_epochs: int | None = None,
        start_fraction: float = 0.1,
    ) -> None:
        self.eps = float(eps)
        if not self.eps > 0 or math.isinf(self.eps):
            raise ValueError(f"hybrid eps must be a finite number > 0, got {eps!r}")
        if ramp_epochs is not None and (not isinstance(ramp_epochs, int) or ramp_epochs < 1):
            raise ValueError(f"ramp_epochs must be None or an int >= 1, got {ramp_epochs!r}")
        if not 0 < start_fraction <= 1:
            raise ValueError(f"start_fraction must be in (0, 1], got {start_fraction!r}")
        self.make_attack = make_attack or _default_hybrid_attack
        self.ramp_epochs = ramp_epochs
        self.start_fraction = float(start_fraction)
        self.alpha = 0.5
        self.current_eps = self.eps * self.start_fraction
        self.attack = self.make_attack(self.current_eps)

    def eps_at(self, epoch: int, total_epochs: int) -> float:
        """The radius used in ``epoch`` (0-based) of ``total_epochs``."""
        ramp = self.ramp_epochs or total_epochs
        t = 1.0 if ramp <= 1 else min(1.0, epoch / (ramp - 1))
        return self.eps * (self.start_fraction + (1.0 - self.start_fraction) * t)

    def on_epoch_start(self, epoch: int, total_epochs: int) -> None:
        self.current_eps = self.eps_at(epoch, total_epochs)
        self.attack = self.make_attack(self.current_eps)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Metrics]:
        with eval_mode(model):
            x_adv = self.attack(model, x, y).detach()
        logits, logits_adv = model(x), model(x_adv)
        ce, adv = F.cross_entropy(logits, y), F.cross_entropy(logits_adv, y)
        metrics: Metrics = {
            "ce": ce.detach(), "acc": _acc(logits, y), "adv_ce": adv.detach(),
            "adv_acc": _acc(logits_adv, y),
        }  # fmt: skip
        return self.alpha * ce + (1.0 - self.alpha) * adv, metrics

    def on_epoch_end(self, model: nn.Module, val_data: Batches | None) -> dict[str, float]:
        if val_data is None:
            raise ValueError("the hybrid objective needs validation data to set alpha")
        correct = correct_adv = 0.0
        n = 0
        with eval_mode(model):
            for x, y in val_data:
                with torch.no_grad():
                    correct += float((model(x).argmax(1) == y).sum())
                x_adv = self.attack(model, x, y)
                with torch.no_grad():
                    correct_adv += float((model(x_adv).argmax(1) == y).sum())
                n += y.shape[0]
        acc, acc_adv = correct / n, correct_adv / n
        used = self.alpha
        self.alpha = 0.5 if acc + acc_adv == 0 else acc_adv / (acc_adv + acc)
        return {
            "hybrid_alpha": used, "hybrid_eps": self.current_eps, "hybrid_acc_clean": acc,
            "hybrid_acc_adv": acc_adv,
        }  # fmt: skip

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "eps": self.eps, "ramp_epochs": self.ramp_epochs,
            "start_fraction": self.start_fraction, "attack": describe_attack(self.attack),
        }  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.alpha = float(state.get("alpha", 0.5))


class TwoPhase(Objective):
    """``first`` for epochs ``< switch_epoch``, then ``second`` (one optimiser throughout).

    ``expected_epochs`` (when given) makes :func:`~robustact.train.fit` check that
    ``config.epochs`` covers both phases. For a fresh optimiser and schedule in the second
    phase — the dissertation's fine-tuning — use :func:`fit_then_finetune`.
    """

    name = "two_phase"

    def __init__(
        self,
        first: Objective,
        second: Objective,
        switch_epoch: int,
        expected_epochs: int | None = None,
    ) -> None:
        if not isinstance(switch_epoch, int) or switch_epoch < 0:
            raise ValueError(f"switch_epoch must be an int >= 0, got {switch_epoch!r}")
        self.first, self.second, self.switch_epoch = first, second, switch_epoch
        self.expected_epochs = expected_epochs
        self.active = first if switch_epoch > 0 else second
        self.needs_validation = first.needs_validation or second.needs_validation

    def on_epoch_start(self, epoch: int, total_epochs: int) -> None:
        # each phase sees its own epoch count (e.g. the hybrid's eps ramp spans phase two)
        if epoch < self.switch_epoch:
            self.active = self.first
            self.first.on_epoch_start(epoch, self.switch_epoch)
        else:
            self.active = self.second
            self.second.on_epoch_start(epoch - self.switch_epoch, total_epochs - self.switch_epoch)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Metrics]:
        return self.active(model, x, y)

    def on_epoch_end(self, model: nn.Module, val_data: Batches | None) -> dict[str, float]:
        phase = 1.0 if self.active is self.first else 2.0
        return {**self.active.on_epoch_end(model, val_data), "phase": phase}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "first": self.first.describe(), "second": self.second.describe(),
            "switch_epoch": self.switch_epoch,
        }  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {"first": self.first.state_dict(), "second": self.second.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.first.load_state_dict(state.get("first", {}))
        self.second.load_state_dict(state.get("second", {}))


def two_phase(natural_epochs: int, adversarial_objective: Objective, adv_epochs: int) -> TwoPhase:
    """Natural training for ``natural_epochs``, then ``adversarial_objective`` for ``adv_epochs``.

    Run it with ``config.epochs = natural_epochs + adv_epochs``.
    """
    return TwoPhase(Natural(), adversarial_objective, natural_epochs, natural_epochs + adv_epochs)


def fit_then_finetune(
    model: nn.Module,
    data: Any,
    natural_epochs: int,
    adversarial_objective: Objective,
    adv_epochs: int,
    config: TrainConfig,
    *,
    val_data: Any = None,
    natural_objective: Objective | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
) -> History:
    """The dissertation's recipe (Table 4.3, §5.1.4): train naturally, then fine-tune.

    Two :func:`~robustact.train.fit` calls with a fresh optimiser and schedule each (the
    fine-tuning restarts them, like re-compiling a Keras model), checkpointed in
    ``checkpoint_dir/natural`` and ``checkpoint_dir/finetune``.

    Returns:
        One history; records carry ``phase`` ("natural" / "finetune") and a running ``epoch``.
    """
    from robustact.train.loop import History, fit

    dirs: list[Path | None] = [None, None]
    if checkpoint_dir is not None:
        dirs = [Path(checkpoint_dir) / "natural", Path(checkpoint_dir) / "finetune"]
    h1 = fit(
        model, natural_objective or Natural(), data, config.replace(epochs=natural_epochs),
        val_data=val_data, checkpoint_dir=dirs[0], resume=resume,
    )  # fmt: skip
    h2 = fit(
        model, adversarial_objective, data, config.replace(epochs=adv_epochs),
        val_data=val_data, checkpoint_dir=dirs[1], resume=resume,
    )  # fmt: skip
    records = [{**r, "phase": "natural"} for r in h1.records]
    records += [{**r, "phase": "finetune", "epoch": r["epoch"] + len(h1)} for r in h2.records]
    return History(records=records, stopped_early=h2.stopped_early)


OBJECTIVES.add("trades", Trades)
OBJECTIVES.add("hybrid", Hybrid)
