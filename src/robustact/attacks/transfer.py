"""Transfer attack: PGD on a differentiable surrogate, adversarial examples kept for the model.

The surrogate is the user's differentiable twin (same inputs and classes) or one derived
by :func:`derive_surrogate`: a copy of the model whose gradient-masking modules (those
``bpda.bpda_modules`` finds: built-in caps and gates, registered layers, modules
detected as flat) compute their smooth surrogate *in the forward pass too*, so the
surrogate's whole loss landscape is smooth, not just its backward pass.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor, nn

from robustact._validate import check_int
from robustact.activations import BReLU, StraightThroughMixin
from robustact.attacks.base import ATTACKS, Attack, AttackResult
from robustact.attacks.pgd import PGD
from robustact.bpda import BackwardApprox, bpda_modules, identity_backward, registered_bpda

__all__ = ["Transfer", "derive_surrogate"]


class _Swapped(nn.Module):
    """Forward = the surrogate ``approx(inner, x)`` of a non-differentiable module."""

    def __init__(self, inner: nn.Module, approx: BackwardApprox) -> None:
        super().__init__()
        self.inner = inner
        self.approx = approx

    def forward(self, x: Tensor) -> Tensor:
        return self.approx(self.inner, x)


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def derive_surrogate(model: nn.Module, x: Tensor) -> tuple[nn.Module, list[str]]:
    """A smooth twin of ``model``: each masking module replaced by its surrogate.

    Built-in BReLU gates become their expectation; other built-in straight-through layers
    keep their flag on (caps back-propagate as ReLU); registered and detected modules
    compute their approximation (identity by default) in the forward pass.

    Args:
        model: the attacked model (not modified; a deep copy is edited).
        x: a batch (N, ...) for behaviour-based detection.
    Returns:
        ``(surrogate, names)``: names are the swapped modules (empty: nothing to swap).
    """
    twin = copy.deepcopy(model).eval()
    names = []
    for b in bpda_modules(twin, x):
        if isinstance(b.module, BReLU):
            b.module.mode = "expected"
        elif isinstance(b.module, StraightThroughMixin):
            b.module.straight_through = True
        elif b.name:
            _set(twin, b.name, _Swapped(b.module, registered_bpda(b.module) or identity_backward))
        else:
            continue
        names.append(b.name)
    return twin, names


@ATTACKS.register("transfer")
class Transfer(Attack):
    """PGD (margin loss by default) on a surrogate; the result is checked on the model.

    Args:
        eps, norm: threat model.
        surrogate: a differentiable twin of the model (same input and output shape);
            ``None`` derives one (:func:`derive_surrogate`); with nothing to swap the
            attack returns ``x`` unchanged (``info["note"]`` of the result says so).
        steps, restarts, loss: of the PGD run on the surrogate.
        eot: passes averaged per surrogate gradient and per success check.
        seed: PGD's random starts.
    """

    name = "transfer"

    def __init__(
        self,
        *,
        eps: float,
        norm: str = "Linf",
        surrogate: nn.Module | None = None,
        steps: int = 100,
        restarts: int = 1,
        loss: str = "margin",
        eot: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, seed=seed)
        if surrogate is not None and not isinstance(surrogate, nn.Module):
            raise TypeError(f"surrogate must be an nn.Module or None, got {type(surrogate)}")
        self.surrogate = surrogate
        self.steps, self.restarts = check_int("steps", steps, 1), check_int("restarts", restarts, 1)
        self.loss, self.eot = loss, check_int("eot", eot, 1)

    def describe(self) -> dict[str, Any]:
        """The declared hyper-parameters; the surrogate as ``"given"`` or ``"derived"``."""
        d = dict(super().describe())
        d["surrogate"] = "given" if self.surrogate is not None else "derived"
        return d

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        """x (N, ...) in [0, 1], y (N,) -> x_adv (N, ...)."""
        if self.surrogate is not None:
            sur, what = self.surrogate, "the given surrogate"
        else:
            sur, names = derive_surrogate(model, x)
            what = f"a derived surrogate ({', '.join(names)} swapped)"
            if not names:
                fooled = self.logits(model, x, eot=self.eot).argmax(1) != y
                note = "no masking module to swap: no derived surrogate"
                return AttackResult(x.clone(), fooled, info={"note": note})
        pgd = PGD(
            eps=self.eps, norm=self.norm, steps=self.steps, loss=self.loss,
            restarts=self.restarts, eot=self.eot, seed=self.seed,
        )  # fmt: skip
        was = sur.training
        try:
            x_adv = pgd(sur, x, y)
        finally:
            sur.train(was)
        model.eval()
        fooled = self.logits(model, x_adv, eot=self.eot).argmax(1) != y
        return AttackResult(x_adv, fooled, info={"note": f"PGD-{self.steps} on {what}"})
