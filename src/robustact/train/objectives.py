"""Training objectives: ``objective(model, x, y) -> (loss, metrics)``.

One interface for natural training, the D-ReLU cap penalty (dissertation eq. 5.1),
adversarial training (Madry PGD, FGSM, fast FGSM with random start, the BReLU paper's
mixed loss), TRADES, the adaptive hybrid and the two-phase "train, then fine-tune" recipe
(the last three are in :mod:`robustact.train.robust`).

``metrics`` maps names to floats or detached 0-dim tensors (tensors avoid a device sync per
batch; :func:`robustact.train.fit` averages them over the epoch, weighted by batch size).
Objectives with epoch-level state implement :meth:`Objective.on_epoch_start` and
:meth:`Objective.on_epoch_end`, which ``fit`` calls around every epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from robustact._registry import Registry
from robustact.activations import drelu_penalty

Metrics = dict[str, "float | Tensor"]
Batches = Iterable[tuple[Tensor, Tensor]]
AttackFn = Callable[[nn.Module, Tensor, Tensor], Tensor]

#: Registry of objective factories; ``get_objective(name, **kw)`` builds one.
OBJECTIVES: Registry[Callable[..., Objective]] = Registry("objective")


def get_objective(name: str, **kwargs: Any) -> Objective:
    """Build the objective registered as ``name`` with keyword hyper-parameters."""
    return OBJECTIVES.get(name)(**kwargs)


def list_objectives() -> list[str]:
    """Names of every registered objective."""
    return OBJECTIVES.names()


def _acc(logits: Tensor, y: Tensor) -> Tensor:
    return (logits.detach().argmax(1) == y).float().mean()


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode and restore its previous mode (BN/dropout) on exit."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def describe_attack(attack: Any) -> Any:
    """JSON-ready description of an attack (its ``describe()`` or its repr)."""
    d = getattr(attack, "describe", None)
    return d() if callable(d) else repr(attack)


class Objective:
    """Base class: subclasses implement :meth:`__call__` (the per-batch loss)."""

    name = "objective"
    #: True when :meth:`on_epoch_end` needs validation data (fit checks before training).
    needs_validation = False

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Metrics]:
        """Loss (0-dim, differentiable) and metrics for a batch x (N, C, H, W), y (N,)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Metrics]:
        """Alias of ``self(model, x, y)``."""
        return self(model, x, y)

    def on_epoch_start(self, epoch: int, total_epochs: int) -> None:
        """Called by fit before epoch ``epoch`` (0-based) of ``total_epochs``."""

    def on_epoch_end(self, model: nn.Module, val_data: Batches | None) -> dict[str, float]:
        """Called by fit after each epoch; returns extra values for the history."""
        return {}

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (name and hyper-parameters) for checkpoints."""
        return {"name": self.name}

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready epoch-level state, for exact resumption."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    def __add__(self, other: Objective) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return SumObjective(self, other)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({args})"


class Natural(Objective):
    """Cross-entropy on clean inputs. Metrics: ``ce``, ``acc``."""

    name = "natural"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Metrics]:
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        return loss, {"ce": loss.detach(), "acc": _acc(logits, y)}


class DReLUPenalty(Objective):
    """The penalty term alone: ``lam * sum_i m_i ** 2`` over every D-ReLU cap.

    Add it to any objective (``Natural() + DReLUPenalty(1e-3)`` is the dissertation's eq. 5.1).
    Metrics: ``cap_penalty`` (the weighted term).
    """

    name = "drelu_penalty_term"

    def __init__(self, lam: float) -> None:
        lam_f = float(lam)
        if not lam_f >= 0 or lam_f == float("inf"):
            raise ValueError(f"DReLUPenalty lam must be a finite number >= 0, got {lam!r}")
        self.lam = lam_f

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Metrics]:
        term = self.lam * drelu_penalty(model).to(x.device)
        return term, {"cap_penalty": term.detach()}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "lam": self.lam}


class SumObjective(Objective):
    """``a + b``: losses add, metrics merge (b's clashing keys get a ``b.`` prefix)."""

    name = "sum"

    def __init__(self, a: Objective, b: Objective) -> None:
        self.a, self.b = a, b
        self.needs_validation = a.needs_validation or b.needs_validation

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Metrics]:
        la, ma = self.a(model, x, y)
        lb, mb = self.b(model, x, y)
        merged = dict(ma)
        for k, v in mb.items():
            merged[f"b.{k}" if k in merged else k] = v
        return la + lb, merged

    def on_epoch_start(self, epoch: int, total_epochs: int) -> None:
        self.a.on_epoch_start(epoch, total_epochs)
        self.b.on_epoch_start(epoch, total_epochs)

    def on_epoch_end(self, model: nn.Module, val_data: Batches | None) -> dict[str, float]:
        return {**self.a.on_epoch_end(model, val_data), **self.b.on_epoch_end(model, val_data)}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "terms": [self.a.describe(), self.b.describe()]}

    def state_dict(self) -> dict[str, Any]:
        return {"a": self.a.state_dict(), "b": self.b.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.a.load_state_dict(state.get("a", {}))
        self.b.load_state_dict(state.get("b", {}))


def with_penalty(objective: Objective, lam: float) -> Objective:
    """``objective + DReLUPenalty(lam)``: adds eq. 5.1's cap penalty to any objective."""
    return objective + DReLUPenalty(lam)


class Adversarial(Objective):
    """Adversarial training: ``w * CE(x) + (1 - w) * CE(attack(x))`` with ``w = clean_weight``.

    ``clean_weight=0`` is Madry et al.'s PGD training (or FGSM / fast AT, by the attack);
    ``0 < w < 1`` is the BReLU paper's eq. 1 mixed loss (its alpha). The attack runs with the
    model in eval mode; the training forward passes run in the mode the model had before.

    Args:
        attack: ``attack(model, x, y) -> x_adv`` (e.g. ``robustact.attacks`` PGD or FGSM).
        clean_weight: weight ``w`` of the clean loss in [0, 1].

    Metrics: ``adv_ce``, ``adv_acc`` (training-mode forward on x_adv), and ``ce``, ``acc``
    when ``clean_weight > 0``.
    """

    name = "adversarial"

    def __init__(self, attack: AttackFn, clean_weight: float = 0.0) -> None:
        if not callable(attack):
            raise TypeError(f"attack must be callable attack(model, x, y), got {attack!r}")
        w = float(clean_weight)
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"clean_weight must be in [0, 1], got {clean_weight!r}")
        self.attack = attack
        self.clean_weight = w

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Metrics]:
        with eval_mode(model):
            x_adv = self.attack(model, x, y).detach()
        logits_adv = model(x_adv)
        adv = F.cross_entropy(logits_adv, y)
        metrics: Metrics = {"adv_ce": adv.detach(), "adv_acc": _acc(logits_adv, y)}
        if self.clean_weight == 0.0:
            return adv, metrics
        logits = model(x)
        clean = F.cross_entropy(logits, y)
        metrics.update(ce=clean.detach(), acc=_acc(logits, y))
        return self.clean_weight * clean + (1.0 - self.clean_weight) * adv, metrics

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "attack": describe_attack(self.attack),
            "clean_weight": self.clean_weight,
        }


def pgd_at(
    eps: float,
    steps: int = 7,
    step_size: float | None = None,
    clean_weight: float = 0.0,
    norm: str = "Linf",
) -> Adversarial:
    """Madry PGD-k training (random start, all k steps); step size defaults to 2.5 * eps / k.

    ``pgd_at(0.03, 7, 0.00784, clean_weight=alpha)`` is the BReLU paper's setup (eq. 1).
    """
    from robustact.train.adversary import TrainingPGD

    atk = TrainingPGD(eps=eps, steps=steps, step_size=step_size, norm=norm, random_start=True)
    return Adversarial(atk, clean_weight=clean_weight)


def fgsm_at(
    eps: float,
    random_start: bool = False,
    clean_weight: float = 0.0,
    step_size: float | None = None,
) -> Adversarial:
    """FGSM training (Goodfellow et al.); ``random_start=True`` is fast AT (Wong et al. 2020).

    The step is ``eps`` without a random start and ``1.25 * eps`` with one (Wong et al.).
    """
    from robustact.train.adversary import TrainingPGD

    ss = (1.25 * eps if random_start else eps) if step_size is None else step_size
    atk = TrainingPGD(eps=eps, steps=1, step_size=ss, random_start=random_start)
    return Adversarial(atk, clean_weight=clean_weight)


OBJECTIVES.add("natural", Natural)
OBJECTIVES.add("drelu_penalty", lambda lam: Natural() + DReLUPenalty(lam))
OBJECTIVES.add("adversarial", Adversarial)
OBJECTIVES.add("pgd_at", pgd_at)
OBJECTIVES.add("fgsm_at", fgsm_at)
OBJECTIVES.add("fast_at", lambda eps, clean_weight=0.0: fgsm_at(eps, True, clean_weight))
