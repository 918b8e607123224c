"""The attack contract: ``attack(model, x, y) -> x_adv``.

:class:`Attack` validates inputs, puts the model in eval mode (restoring it afterwards),
freezes parameter gradients (restoring them too), calls the subclass's :meth:`perturb`
and finally projects the result into the threat model, so every attack's output lies in
``{x' : ||x' - x|| <= eps} ∩ [0, 1]^d`` whatever ``perturb`` did.

Subclasses run every forward pass through :meth:`Attack.logits` or
:meth:`Attack.input_gradient` (they check the labels against the model's output width on
the first pass) and set ``self.last_success`` (bool (N,), point fooled) before returning.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from robustact._registry import Registry
from robustact.attacks.losses import LossFn
from robustact.attacks.threat import Threat, canonical_norm, make_threat

#: Registry of attack classes; ``get_attack(name, **kw)`` builds one.
ATTACKS: Registry[type[Attack]] = Registry("attack")


def get_attack(name: str, **kwargs: Any) -> Attack:
    """Build the attack registered as ``name`` with keyword hyper-parameters."""
    return ATTACKS.get(name)(**kwargs)


def list_attacks() -> list[str]:
    """Names of every registered attack."""
    return ATTACKS.names()


def input_gradient(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss_fn: LossFn,
    eot: int = 1,
    target: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample loss, its input gradient and the logits, averaged over ``eot`` passes.

    Args:
        model: classifier mapping (N, ...) to logits (N, K).
        x: inputs (N, ...); not modified.
        y: labels (N,) int64.
        loss_fn: ``fn(logits, y, target) -> (N,)`` to maximise (see ``losses.get_loss``).
        eot: number of stochastic forward passes to average (Expectation over
            Transformation); 1 for deterministic models.
        target: optional target labels (N,) for targeted losses.

    Returns:
        ``(loss (N,), grad (N, ...), logits (N, K))``, all detached; for ``eot > 1`` each is
        the mean over the passes.
    """
    if eot < 1:
        raise ValueError(f"eot must be >= 1, got {eot}")
    loss_sum: Tensor | None = None
    grad_sum: Tensor | None = None
    logit_sum: Tensor | None = None
    with torch.enable_grad():
        for _ in range(eot):
            xg = x.detach().requires_grad_(True)
            logits = model(xg)
            loss = loss_fn(logits, y, target)
            (grad,) = torch.autograd.grad(loss.sum(), xg)
            loss, logits = loss.detach(), logits.detach()
            if loss_sum is None or grad_sum is None or logit_sum is None:
                loss_sum, grad_sum, logit_sum = loss, grad, logits
            else:
                loss_sum, grad_sum, logit_sum = loss_sum + loss, grad_sum + grad, logit_sum + logits
    assert loss_sum is not None and grad_sum is not None and logit_sum is not None
    if eot == 1:
        return loss_sum, grad_sum, logit_sum
    return loss_sum / eot, grad_sum / eot, logit_sum / eot


def _check_inputs(x: Tensor, y: Tensor) -> None:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError("attack(model, x, y) needs tensors x (N, ...) and y (N,)")
    if not x.is_floating_point():
        raise TypeError(f"x must be a float tensor in [0, 1], got dtype {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"x must be batched (N, ...), got shape {tuple(x.shape)}")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must be (N,) with N = x.shape[0] = {x.shape[0]}, got shape {tuple(y.shape)}"
        )
    if y.dtype != torch.int64:
        raise TypeError(f"y must hold int64 class labels, got dtype {y.dtype}; use y.long()")
    if y.device != x.device:
        raise ValueError(f"x is on {x.device} but y on {y.device}; move both to one device")
    if x.numel():
        lo, hi = (float(v) for v in torch.aminmax(x))  # one pass; NaN fails both tests
        if not (lo >= 0.0 and hi <= 1.0):
            if not bool(torch.isfinite(x).all()):
                raise ValueError("x contains NaN or inf; attacks need finite inputs in [0, 1]")
            raise ValueError(
                f"x must lie in [0, 1] (got [{lo:.4g}, {hi:.4g}]); "
                "feed un-normalised images and put normalisation inside the model"
            )
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"labels must be >= 0, got {int(y.min())}")


class Attack(ABC):
    """Base class of every attack: ``attack(model, x, y) -> x_adv``.

    Args:
        eps: threat-model radius (>= 0), pixel units.
        norm: ``"Linf"`` or ``"L2"``.
        seed: seed of the attack's random numbers; ``None`` draws one from torch's global
            RNG at each call (so ``torch.manual_seed`` makes runs reproducible).

    Attributes:
        last_success: bool (N,) — whether each point of the last call was misclassified
            at the returned ``x_adv`` (None before the first call).
    """

    name: ClassVar[str] = "attack"

    def __init__(self, *, eps: float, norm: str = "Linf", seed: int | None = None) -> None:
        eps_f = float(eps)
        if not math.isfinite(eps_f) or eps_f < 0:
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.eps = eps_f
        self.norm = canonical_norm(norm)
        self.seed = seed
        self.threat: Threat = make_threat(self.norm, self.eps)
        self.last_success: Tensor | None = None
        self._num_classes: int | None = None
        self._y_max = -1

    # ------------------------------------------------------------------ helpers for subclasses
    def generator(self, device: torch.device | str) -> torch.Generator:
        """A ``torch.Generator`` on ``device`` seeded from ``seed`` (or from torch's RNG)."""
        seed = self.seed
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        return torch.Generator(device=device).manual_seed(seed)

    def _check_width(self, logits: Tensor) -> None:
        if self._num_classes is not None:
            return
        if logits.dim() != 2:
            raise ValueError(f"model must return logits (N, K), got shape {tuple(logits.shape)}")
        k = int(logits.shape[1])
        if self._y_max >= k:
            raise ValueError(
                f"label {self._y_max} is out of range for a model with {k} outputs; "
                f"labels must be in [0, {k})"
            )
        self._num_classes = k

    def logits(self, model: nn.Module, x: Tensor, eot: int = 1) -> Tensor:
        """Logits (N, K) without gradient, averaged over ``eot`` passes."""
        with torch.no_grad():
            out = model(x)
            self._check_width(out)
            for _ in range(eot - 1):
                out = out + model(x)
        return out / eot if eot > 1 else out

    def input_gradient(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        loss_fn: LossFn,
        eot: int = 1,
        target: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """:func:`input_gradient` that also checks labels against the output width."""
        if self._num_classes is None:
            checked_loss = loss_fn

            def loss_fn(logits: Tensor, yy: Tensor, tt: Tensor | None) -> Tensor:
                self._check_width(logits)
                return checked_loss(logits, yy, tt)

        return input_gradient(model, x, y, loss_fn, eot=eot, target=target)

    # ------------------------------------------------------------------ the contract
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Adversarial examples (N, ...) for ``model`` at ``(x, y)`` inside the threat model."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        _check_inputs(x, y)
        x, y = x.detach(), y.detach()
        self.last_success = None
        self._num_classes = None
        self._y_max = int(y.max()) if y.numel() else -1
        if x.shape[0] == 0:
            self.last_success = torch.zeros(0, dtype=torch.bool, device=x.device)
            return x.clone()
        was_training = model.training
        grad_flags = [(p, p.requires_grad) for p in model.parameters()]
        try:
            model.eval()
            # the attack never needs parameter gradients: skipping them saves backward time
            for p, _ in grad_flags:
                p.requires_grad_(False)
            x_adv = self.perturb(model, x, y)
            if self._num_classes is None:  # a perturb that never ran the model
                self.logits(model, x[:1])
        finally:
            for p, flag in grad_flags:
                p.requires_grad_(flag)
            model.train(was_training)
        if not isinstance(x_adv, Tensor) or x_adv.shape != x.shape:
            raise RuntimeError(f"{type(self).__name__}.perturb must return a tensor of x's shape")
        return self.threat.project(x_adv.detach().to(x.dtype), x)

    @abstractmethod
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Return adversarial inputs (N, ...) for validated ``x``, ``y``; model is in eval mode.

        Implementations should set ``self.last_success`` (bool (N,)).
        """

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable hyper-parameters, for reports."""
        return {"name": self.name, "eps": self.eps, "norm": self.norm, "seed": self.seed}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({args})"


__all__ = ["ATTACKS", "Attack", "get_attack", "input_gradient", "list_attacks"]
