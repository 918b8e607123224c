"""The attack contract: ``attack.run(model, x, y) -> AttackResult``, ``attack(model, x, y)``.

``attack(model, x, y)`` returns ``x_adv``, the same as ``attack.run(model, x, y).x_adv``.

:class:`Attack` validates inputs, puts the model in eval mode (restoring it afterwards),
freezes parameter gradients (restoring them too), calls the subclass's :meth:`perturb`
and finally projects the result into the threat model, so every attack's output lies in
``{x' : ||x' - x|| <= eps} ∩ [0, 1]^d`` whatever ``perturb`` did. ``run`` and ``__call__``
are final (``typing.final``, and a subclass that overrides them is refused at class
creation).

How to write an attack
----------------------
1. Subclass :class:`Attack`, register it (``@ATTACKS.register("name")``) and set ``name``.
2. Take every hyper-parameter keyword-only in ``__init__`` (``eps``, ``norm``, ``seed``
   go to ``super().__init__``) and store each under an attribute of the *same name*
   (validated: ``engine.check_int`` / ``check_float``). Those keyword-only parameters are
   the declared hyper-parameters: :meth:`Attack.describe` and :meth:`Attack.with_params`
   read them, so no hand-written ``describe`` is needed. Keep private state in ``_names``.
3. Implement the one abstract method ``perturb(model, x, y)`` for validated ``x`` (N, ...)
   in [0, 1] and int64 ``y`` (N,), the model already in eval mode. Run every forward
   pass through :meth:`Attack.logits` or :meth:`Attack.input_gradient` (or call
   :meth:`Attack.check_width` on the first logits) so labels are checked against the
   model's output width. Draw random numbers from :meth:`Attack.generator`.
4. Return an :class:`AttackResult` with ``success`` (bool (N,): the model misclassifies
   the returned point, as your last forward pass saw it) and ``queries`` (int64 (N,):
   model evaluations spent on each point; an EOT average of k passes counts as one).
   Returning a bare tensor is allowed: then ``run`` spends one extra forward pass to
   decide ``success`` (``__call__`` never does) and ``queries`` is None.
5. An unbounded attack (no radius) sets ``unbounded = True`` and accepts
   ``eps=math.inf``; its threat is :class:`~robustact.attacks.threat.Unbounded`.
6. BPDA and EOT are not the attack's business: wrap it,
   ``Adaptive(attack, bpda=True, eot="auto")`` (:mod:`robustact.attacks.adaptive`).
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, final

import torch
from torch import Tensor, nn

from robustact._registry import Registry
from robustact._validate import check_batch, is_int
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


@dataclass(frozen=True)
class AttackResult:
    """What one attack run found, for N points.

    Attributes:
        x_adv: (N, ...) adversarial inputs inside the threat model.
        success: (N,) bool, the model misclassifies ``x_adv`` (for stochastic models: as
            the attack's last, EOT-averaged, evaluation saw it).
        queries: (N,) int64 model evaluations the attack spent on each point (a gradient
            pass or a forward query; an EOT average counts once), or None when the attack
            does not count them.
        info: attack-specific extras (e.g. CW's ``distortion`` (N,)).
    """

    x_adv: Tensor
    success: Tensor
    queries: Tensor | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        """Fraction of the points the attack fooled (nan for an empty batch)."""
        return float(self.success.float().mean()) if self.success.numel() else math.nan


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


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode with its parameters' gradients off, both restored on exit:
    an attack needs input gradients only, and skipping the parameters' saves backward time."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def _check_inputs(x: Tensor, y: Tensor) -> None:
    """The pixel contract of attack inputs (the toolkit's one image/label check)."""
    check_batch(x, y)


def _hyperparameters(cls: type) -> list[str]:
    """Keyword-only ``__init__`` parameters of ``cls`` (the declared hyper-parameters), in
    signature order; a class whose ``__init__`` forwards ``**kwargs`` adds its bases'."""
    names: list[str] = []
    for owner in cls.__mro__:
        init = owner.__dict__.get("__init__")
        if init is None:
            continue
        if owner is object:
            break
        params = inspect.signature(init).parameters.values()
        names += [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in names]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def _json_value(v: Any) -> Any:
    """inf is not JSON: an unbounded radius is described as None."""
    return None if isinstance(v, float) and math.isinf(v) else v


class Attack(ABC):
    """Base class of every attack (see the module docstring for how to write one).

    Args:
        eps: threat-model radius (>= 0), pixel units; ``math.inf`` only for attacks with
            ``unbounded = True`` (then the threat model is the [0, 1] box alone).
        norm: ``"Linf"`` or ``"L2"``.
        seed: seed of the attack's random numbers; ``None`` draws one from torch's global
            RNG at each call (so ``torch.manual_seed`` makes runs reproducible).
    """

    name: ClassVar[str] = "attack"
    #: the attack accepts ``eps = math.inf`` (a minimum-distortion or diagnostic walk)
    unbounded: ClassVar[bool] = False
    #: ``perturb`` returns another attack's ``run`` result, already projected and
    #: width-checked (wrappers such as ``Adaptive``)
    _delegates: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for meth in ("__call__", "run"):
            if meth in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__} overrides Attack.{meth}, which is final; "
                    "implement perturb(model, x, y) instead"
                )

    def __init__(self, *, eps: float, norm: str = "Linf", seed: int | None = None) -> None:
        eps_f = float(eps)
        if math.isnan(eps_f) or eps_f < 0 or (math.isinf(eps_f) and not self.unbounded):
            raise ValueError(
                f"eps must be a finite number >= 0, got {eps!r}"
                + ("" if math.isnan(eps_f) or eps_f < 0 else f"; {self.name} needs a radius")
            )
        if seed is not None and (not is_int(seed)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.eps = eps_f
        self.norm = canonical_norm(norm)
        self.seed = seed
        self.threat: Threat = make_threat(self.norm, self.eps)
        self._num_classes: int | None = None
        self._need_success = True
        self._y_max = -1

    # ------------------------------------------------------------------ helpers for subclasses
    def generator(self, device: torch.device | str) -> torch.Generator:
        """A ``torch.Generator`` on ``device`` seeded from ``seed`` (or from torch's RNG)."""
        seed = self.seed
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        return torch.Generator(device=device).manual_seed(seed)

    def check_width(self, logits: Tensor) -> None:
        """Check the labels of this run against the model's output width (once per run)."""
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
            self.check_width(out)
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
                self.check_width(logits)
                return checked_loss(logits, yy, tt)

        return input_gradient(model, x, y, loss_fn, eot=eot, target=target)

    # ------------------------------------------------------------------ the contract
    @final
    def run(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        """Attack ``model`` at ``(x (N, ...), y (N,))``: the full :class:`AttackResult`."""
        return self._execute(model, x, y, need_success=True)

    @final
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Adversarial examples (N, ...) for ``model`` at ``(x, y)`` inside the threat model
        (``run(model, x, y).x_adv``, without any extra pass)."""
        return self._execute(model, x, y, need_success=False).x_adv

    def _execute(self, model: nn.Module, x: Tensor, y: Tensor, need_success: bool) -> AttackResult:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        _check_inputs(x, y)
        x, y = x.detach(), y.detach()
        self._num_classes = None
        self._need_success = need_success
        self._y_max = int(y.max()) if y.numel() else -1
        if x.shape[0] == 0:
            none = torch.zeros(0, dtype=torch.bool, device=x.device)
            return AttackResult(x.clone(), none, torch.zeros(0, dtype=torch.long, device=x.device))
        with frozen_eval(model):
            out = self.perturb(model, x, y)
            if self._num_classes is None and not self._delegates:  # never ran the model
                self.logits(model, x[:1])
            x_adv = out.x_adv if isinstance(out, AttackResult) else out
            if not isinstance(x_adv, Tensor) or x_adv.shape != x.shape:
                raise RuntimeError(
                    f"{type(self).__name__}.perturb must return an AttackResult or a tensor "
                    "of x's shape"
                )
            if not self._delegates:
                x_adv = self.threat.project(x_adv.detach().to(x.dtype), x)
            if isinstance(out, AttackResult):
                return replace(out, x_adv=x_adv)  # keeps a subclass's extra fields
            success = torch.zeros(0, dtype=torch.bool, device=x.device)
            if need_success:
                success = self.logits(model, x_adv).argmax(1) != y
            return AttackResult(x_adv, success)

    @abstractmethod
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult | Tensor:
        """Attack validated ``x`` (N, ...), ``y`` (N,); the model is in eval mode.

        Returns:
            an :class:`AttackResult` (preferred: ``success`` and ``queries`` known), or
            the adversarial inputs (N, ...) alone.
        """

    # ------------------------------------------------------------------ hyper-parameters
    def hyperparameters(self) -> dict[str, Any]:
        """The declared hyper-parameters (keyword-only ``__init__`` parameters) and their
        values, ``eps``, ``norm`` and ``seed`` first."""
        names = ["eps", "norm", "seed"]
        names += [n for n in _hyperparameters(type(self)) if n not in names]
        missing = [n for n in names if not hasattr(self, n)]
        if missing:
            raise AttributeError(
                f"{type(self).__name__} declares hyper-parameters {missing} in __init__ but "
                "stores no attribute of that name; store each as self.<name>"
            )
        return {n: getattr(self, n) for n in names}

    def with_params(self, **changes: Any) -> Attack:
        """A new attack of the same class with some hyper-parameters changed."""
        accepted = _hyperparameters(type(self))
        unknown = sorted(set(changes) - set(accepted))
        if unknown:
            raise ValueError(
                f"{self.name} has no hyper-parameter {', '.join(unknown)}; "
                f"it has {', '.join(accepted)}"
            )
        params = self.hyperparameters()
        return type(self)(**{**{n: params[n] for n in accepted}, **changes})

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable hyper-parameters, for reports (an unbounded eps is None)."""
        return {"name": self.name, **{k: _json_value(v) for k, v in self.hyperparameters().items()}}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({args})"


__all__ = [
    "ATTACKS",
    "Attack",
    "AttackResult",
    "get_attack",
    "input_gradient",
    "list_attacks",
]
