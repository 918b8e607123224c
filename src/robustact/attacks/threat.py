"""Threat models as step objects: ``Linf``, ``L2`` and ``Unbounded`` (init, step, project).

Every iterative attack shares one loop; the norm only changes how a random start is drawn,
how a gradient becomes a step, and how a point is projected back into the threat model
``{x' : ||x' - x|| <= eps} ∩ [0, 1]^d``. ``Unbounded(norm)`` is the same with
``eps = inf``: its projection is the [0, 1] box alone (minimum-distortion attacks such as
CW, and the zero-gradient walk); ``make_threat(norm, math.inf)`` returns it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

NORMS = ("Linf", "L2")
_ALIASES = {"linf": "Linf", "inf": "Linf", "l_inf": "Linf", "l2": "L2", "2": "L2"}


def canonical_norm(norm: str) -> str:
    """Map ``"linf"``, ``"Linf"``, ``"inf"``, ``"L2"``, ``"l2"`` to ``"Linf"`` / ``"L2"``."""
    key = _ALIASES.get(str(norm).lower())
    if key is None:
        raise ValueError(f"unknown norm {norm!r}; use one of {', '.join(NORMS)}")
    return key


def _check_eps(eps: float) -> float:
    e = float(eps)
    if not math.isfinite(e) or e < 0:
        raise ValueError(
            f"eps must be a finite number >= 0, got {eps!r}; for no bound use Unbounded(norm)"
        )
    return e


def _per_sample(v: float | Tensor, like: Tensor) -> float | Tensor:
    """Broadcast a scalar or an (N,) tensor of per-sample values against ``like`` (N, ...)."""
    if isinstance(v, Tensor) and v.dim() > 0:
        return v.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)
    return float(v)


def _flat_norm(t: Tensor) -> Tensor:
    """Per-sample L2 norm of (N, ...) as (N, 1, ..., 1) for broadcasting."""
    n = t.flatten(1).norm(p=2, dim=1)
    return n.reshape(-1, *([1] * (t.dim() - 1)))


class Threat(ABC):
    """A norm ball of radius ``eps`` intersected with the image box [0, 1].

    Args:
        eps: radius (>= 0) in pixel units.
    """

    norm: str = ""

    def __init__(self, eps: float) -> None:
        self.eps = _check_eps(eps)

    @abstractmethod
    def init(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A random start inside the threat model around ``x`` (N, ...)."""

    @abstractmethod
    def step(self, x_adv: Tensor, grad: Tensor, step_size: float | Tensor) -> Tensor:
        """An ascent step along ``grad`` (not projected); ``step_size`` scalar or (N,)."""

    @abstractmethod
    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Project ``x_adv`` (N, ...) into the ``eps``-ball around ``x`` intersected with [0, 1]."""

    @abstractmethod
    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Per-sample distance ``||x_adv - x||`` as (N,)."""

    def step_(self, x_adv: Tensor, grad: Tensor, step_size: float | Tensor) -> Tensor:
        """:meth:`step` that may overwrite ``x_adv`` and ``grad`` (saves allocations)."""
        return self.step(x_adv, grad, step_size)

    def box(self, x: Tensor) -> tuple[Tensor, Tensor] | None:
        """Per-coordinate bounds ``(lo, hi)`` whose clamp is the exact projection, else None.

        An attack loop computes them once per active set and passes them to
        :meth:`project_`, saving the ball arithmetic at every step.
        """
        return None

    def project_(
        self, x_adv: Tensor, x: Tensor, box: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """:meth:`project` that may overwrite ``x_adv`` and use a precomputed :meth:`box`."""
        return self.project(x_adv, x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps:g})"


class Linf(Threat):
    """L-infinity ball: sign-gradient steps, coordinate-wise clipping."""

    norm = "Linf"

    def init(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + (2 * u - 1) * self.eps).clamp(0.0, 1.0)

    def step(self, x_adv: Tensor, grad: Tensor, step_size: float | Tensor) -> Tensor:
        size = _per_sample(step_size, x_adv)
        if isinstance(size, Tensor):
            return torch.addcmul(x_adv, size, grad.sign())
        return torch.add(x_adv, grad.sign(), alpha=size)

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        # clamp to the ball, then to the box: exact projection for Linf
        return torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp(0.0, 1.0)

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return (x_adv - x).flatten(1).abs().amax(dim=1)

    def step_(self, x_adv: Tensor, grad: Tensor, step_size: float | Tensor) -> Tensor:
        size = _per_sample(step_size, x_adv)
        if isinstance(size, Tensor):
            return x_adv.addcmul_(size, grad.sign_())
        return x_adv.add_(grad.sign_(), alpha=size)

    def box(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return (x - self.eps).clamp_(min=0.0), (x + self.eps).clamp_(max=1.0)

    def project_(
        self, x_adv: Tensor, x: Tensor, box: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        if box is None:
            return self.project(x_adv, x)
        return torch.clamp(x_adv, box[0], box[1], out=x_adv)


class L2(Threat):
    """L2 ball: normalised-gradient steps, radial rescaling then box clipping.

    Clipping to [0, 1] after the radial projection can only move coordinates towards
    ``x`` (which lies in the box), so the result stays inside the ball.
    """

    norm = "L2"

    def init(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        d = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        r = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        d = d / _flat_norm(d).clamp_min(1e-12)
        return (x + d * (r * self.eps).reshape(-1, *([1] * (x.dim() - 1)))).clamp(0.0, 1.0)

    def step(self, x_adv: Tensor, grad: Tensor, step_size: float | Tensor) -> Tensor:
        g = grad / _flat_norm(grad).clamp_min(1e-12)
        return x_adv + _per_sample(step_size, x_adv) * g

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        delta = x_adv - x
        factor = (self.eps / _flat_norm(delta).clamp_min(1e-12)).clamp(max=1.0)
        return (x + delta * factor).clamp(0.0, 1.0)

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return (x_adv - x).flatten(1).norm(p=2, dim=1)


class Unbounded(Threat):
    """No radius (``eps = inf``): only the [0, 1] box constrains the point.

    Steps (and distances) are those of ``norm``; the projection is a clamp to [0, 1], so
    it never moves a point that is already an image. There is no random start in an
    unbounded ball: :meth:`init` refuses.

    Args:
        norm: ``"Linf"`` or ``"L2"``: how a gradient becomes a step and how distance is
            measured.
    """

    def __init__(self, norm: str = "L2") -> None:
        self.norm = canonical_norm(norm)
        self.eps = math.inf
        self._steps: Threat = Linf(0.0) if self.norm == "Linf" else L2(0.0)

    def init(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise ValueError(
            "an unbounded threat model has no random start; start from x (random_start=False)"
        )

    def step(self, x_adv: Tensor, grad: Tensor, step_size: float | Tensor) -> Tensor:
        return self._steps.step(x_adv, grad, step_size)

    def step_(self, x_adv: Tensor, grad: Tensor, step_size: float | Tensor) -> Tensor:
        return self._steps.step_(x_adv, grad, step_size)

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return x_adv.clamp(0.0, 1.0)

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return self._steps.distance(x_adv, x)

    def __repr__(self) -> str:
        return f"Unbounded(norm={self.norm!r})"


def make_threat(norm: str, eps: float) -> Threat:
    """The step object for ``norm`` (``"Linf"`` or ``"L2"``) with radius ``eps``.

    ``eps = math.inf`` gives :class:`Unbounded` (box-only projection).
    """
    if isinstance(eps, (int, float)) and math.isinf(eps) and eps > 0:
        return Unbounded(norm)
    return Linf(eps) if canonical_norm(norm) == "Linf" else L2(eps)
