"""Adaptive attacks compose: BPDA and EOT as a wrapper around any attack.

``Adaptive(attack, bpda=True, eot="auto")`` is itself an :class:`~robustact.attacks.Attack`
(in the spirit of foolbox's ``Repeated``): it runs ``attack`` with straight-through
gradients through caps, random gates and declared preprocessing (BPDA, Athalye et al.
2018, via :func:`robustact.surgery.straight_through`) and with ``eot`` forward passes
averaged per gradient or query (Expectation over Transformation). Callers never enter
``straight_through`` themselves: a protocol entry builds the complete attack
(``ProtocolEntry.build``), and gradient diagnostics that want BPDA use :func:`bpda_scope`.

EOT has one default, :data:`DEFAULT_EOT` = 20 passes, what ``eot="auto"`` uses on a
stochastic model (``surgery.is_stochastic``) and what every evaluation defaults to (the
protocols' ``eot_samples``, the masking report, the diagnostics, the CLI). 20 is the EOT
count of AutoAttack's version for randomised defences (Croce & Hein 2020); on a model
whose forward pass is deterministic ``"auto"`` is 1 (averaging equal passes buys nothing).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Final, Literal

from torch import Tensor, nn

from robustact._validate import is_int
from robustact.attacks.base import Attack, AttackResult
from robustact.surgery import is_stochastic, straight_through

__all__ = ["DEFAULT_EOT", "Adaptive", "EotSpec", "bpda_scope", "check_eot", "resolve_eot"]

#: The one EOT default: forward passes averaged per gradient/query on a stochastic model.
DEFAULT_EOT: Final = 20

EotSpec = int | Literal["auto"]


def check_eot(eot: object) -> EotSpec:
    """Validate an EOT setting: an int >= 1 or ``"auto"``."""
    if eot == "auto":
        return "auto"
    if not is_int(eot) or eot < 1:
        raise ValueError(f"eot must be an int >= 1 or 'auto', got {eot!r}")
    return eot


def resolve_eot(
    model: nn.Module, eot: EotSpec, samples: int = DEFAULT_EOT, x: Tensor | None = None
) -> int:
    """The EOT count ``eot`` means on ``model``: ``"auto"`` is ``samples`` (default
    :data:`DEFAULT_EOT`) when ``surgery.is_stochastic(model, x)`` (by behaviour on the
    batch ``x`` when given), else 1; an int is itself."""
    if check_eot(eot) == "auto":
        return samples if is_stochastic(model, x) else 1
    return int(eot)


@contextmanager
def bpda_scope(
    model: nn.Module, enabled: bool = True, x: Tensor | None = None
) -> Iterator[nn.Module]:
    """Straight-through (BPDA) gradients inside the block when ``enabled``; the one place
    attacks (and gradient diagnostics) apply :func:`robustact.surgery.straight_through`
    (with the batch ``x``, modules detected as flat by behaviour are included).

    Forward values never change (the straight-through forwards are bit-exact).
    """
    if not enabled:
        yield model
        return
    with straight_through(model, x):
        yield model


class Adaptive(Attack):
    """Run ``attack`` adaptively: BPDA through non-differentiable layers, EOT over randomness.

    Args:
        attack: any attack (its threat model, seed and result are the wrapper's).
        bpda: run ``attack`` inside ``surgery.straight_through(model)``.
        eot: forward passes averaged per gradient/query: an int forces it; ``"auto"`` is
            :data:`DEFAULT_EOT` on a stochastic model (``surgery.is_stochastic``) and 1
            otherwise, decided on each call's model; None keeps ``attack``'s own setting.
            A count above 1 needs an attack with an ``eot`` hyper-parameter.

    The result is ``attack``'s, with ``info["bpda"]`` and ``info["eot"]`` (the count used)
    added. ``describe()`` is ``attack``'s description plus ``bpda`` (and ``eot``).
    """

    name = "adaptive"
    unbounded = True  # carries whatever threat model the wrapped attack has
    _delegates = True

    def __init__(self, attack: Attack, *, bpda: bool = False, eot: EotSpec | None = None) -> None:
        if not isinstance(attack, Attack):
            raise TypeError(f"Adaptive wraps an Attack, got {type(attack).__name__}")
        super().__init__(eps=attack.eps, norm=attack.norm, seed=attack.seed)
        self.threat = attack.threat
        self.attack = attack
        self.bpda = bool(bpda)
        self.eot: EotSpec | None = None if eot is None else check_eot(eot)
        if isinstance(self.eot, int):  # fixed now: fail at construction, not mid-run
            self.attack = self._with_eot(self.eot)

    def _with_eot(self, k: int) -> Attack:
        own = self.attack.hyperparameters().get("eot")
        if own is None:
            if k > 1:
                raise ValueError(
                    f"attack {self.attack.name!r} has no eot parameter but eot={k} was "
                    "requested; use an attack with EOT (pgd, apgd, square)"
                )
            return self.attack
        return self.attack if own == k else self.attack.with_params(eot=k)

    def resolved(self, model: nn.Module, x: Tensor | None = None) -> Attack:
        """The wrapped attack as it runs on ``model`` (its EOT count decided, by behaviour
        on the batch ``x`` when given)."""
        if self.eot == "auto":
            return self._with_eot(resolve_eot(model, "auto", x=x))
        return self.attack

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        inner = self.resolved(model, x)
        with bpda_scope(model, self.bpda, x):
            res = inner._execute(model, x, y, need_success=self._need_success)
        eot = inner.hyperparameters().get("eot", 1)
        return replace(res, info={**res.info, "bpda": self.bpda, "eot": eot})

    def with_params(self, **changes: Any) -> Attack:
        """A copy with ``bpda``/``eot`` or the wrapped attack's hyper-parameters changed."""
        bpda = changes.pop("bpda", self.bpda)
        eot = changes.pop("eot", self.eot)
        inner = self.attack.with_params(**changes) if changes else self.attack
        return Adaptive(inner, bpda=bpda, eot=eot)

    def describe(self) -> dict[str, Any]:
        d = {**self.attack.describe(), "bpda": self.bpda}
        if self.eot == "auto":
            d["eot"] = "auto"
        return d
