"""Robust activation functions: S-ReLU, D-ReLU and BReLU, plus a name-based factory.

Each activation is a pure function and a thin ``nn.Module``. The modules that can mask
gradients (caps and random gates) carry a ``straight_through`` flag that
:func:`robustact.surgery.straight_through` switches on for adaptive attacks:

* capped ReLUs keep their capped forward but back-propagate as a plain ReLU (BPDA,
  Athalye et al. 2018), so an attacker sees a gradient where the cap is active;
* BReLU keeps its random forward but back-propagates through its expectation
  ``x * sigmoid(alpha * x)``.

BReLU gradient estimator (documented choice). The paper says "reparameterisation trick".
A Bernoulli sample is ``b = 1[u < s]`` with ``u ~ U(0, 1)`` and ``s = sigmoid(alpha * x)``;
the threshold has zero derivative almost everywhere, so we use the straight-through
Bernoulli estimator: the forward value is exactly ``x * b`` and the backward pass
treats ``db/dx`` as ``ds/dx``. The resulting per-sample gradient ``b + x * ds/dx`` is
an unbiased estimate of the gradient of the expected activation
``d/dx [x * s] = s + x * ds/dx`` (its expectation over ``b`` is exactly that), so
averaging it over samples (EOT) converges to the gradient of the smoothed network.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter

from robustact._registry import Registry
from robustact._validate import is_int

__all__ = [
    "ActLayer",
    "BReLU",
    "DReLU",
    "SReLU",
    "StraightThroughMixin",
    "brelu",
    "cap_parameters",
    "drelu_penalty",
    "get_activation",
    "list_activations",
    "make_activation",
    "srelu",
]

ActLayer = type[nn.Module] | Callable[..., nn.Module] | str

_ACTIVATIONS: Registry[Callable[..., nn.Module]] = Registry("activation")


# --------------------------------------------------------------------------- functions
def srelu(x: Tensor, max_value: float | Tensor) -> Tensor:
    """Capped ReLU ``min(max(0, x), m)`` (S-ReLU; D-ReLU when ``m`` is a learnable tensor).

    Args:
        x: any shape.
        max_value: a positive float, or a tensor broadcastable to ``x``.
    Returns:
        Tensor of the shape of ``x``. The gradient w.r.t. ``x`` is 1 on ``0 < x < m``,
        0 elsewhere; w.r.t. a tensor ``m`` it is 1 where ``x > m``.
    """
    if isinstance(max_value, Tensor):
        return torch.minimum(F.relu(x), max_value)
    return torch.clamp(x, min=0.0, max=max_value)


def _straight_through_relu(x: Tensor, capped: Tensor) -> Tensor:
    """Forward value ``capped``; backward as ``relu(x)`` (BPDA through the cap)."""
    r = F.relu(x)
    # capped + 0 keeps the forward value bit-exact; the gradient flows through relu(x)
    return capped.detach() + (r - r.detach())


def brelu(
    x: Tensor,
    alpha: float = 1.0,
    mode: Literal["sample", "expected"] = "sample",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Bernoulli ReLU: ``x * b`` with ``b ~ Bernoulli(sigmoid(alpha * x))``.

    Args:
        x: any shape.
        alpha: slope of the gate probability (VBReLU when != 1; larger is less random).
        mode: ``"sample"`` draws a fresh gate at every call; ``"expected"`` returns
            ``x * sigmoid(alpha * x)`` (the mean), deterministically.
        generator: optional generator for the uniform draws (may live on another device).
    Returns:
        Tensor of the shape of ``x``; the gradient uses the straight-through Bernoulli
        estimator described in the module docstring.
    """
    s = torch.sigmoid(alpha * x)
    if mode == "expected":
        return x * s
    if generator is not None:
        u = torch.rand(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
        u = u.to(x.device)
    else:
        u = torch.rand_like(x)
    b = (u < s.detach()).to(x.dtype)
    # forward: x * b exactly (s - s.detach() == 0); backward: b + x * ds/dx
    return x * b + x * (s - s.detach())


# ----------------------------------------------------------------------------- modules
class StraightThroughMixin:
    """Marks a module whose backward pass an adaptive attack may replace.

    ``straight_through`` is False by default; :func:`robustact.surgery.straight_through`
    sets it inside its ``with`` block and restores it on exit.
    """

    straight_through: bool = False


class SReLU(StraightThroughMixin, nn.Module):
    """Static capped ReLU ``min(max(0, x), m)`` with a fixed cap ``m > 0``.

    Shape: any; the output has the input's shape.
    """

    def __init__(self, max_value: float = 1.0) -> None:
        super().__init__()
        m = float(max_value)
        if not m > 0 or m != m or m == float("inf"):
            raise ValueError(f"SReLU max_value must be a finite number > 0, got {max_value!r}")
        self.max_value = m
        self.straight_through = False

    def forward(self, x: Tensor) -> Tensor:
        y = srelu(x, self.max_value)
        return _straight_through_relu(x, y) if self.straight_through else y

    def extra_repr(self) -> str:
        return f"max_value={self.max_value:g}"


class DReLU(LazyModuleMixin, StraightThroughMixin, nn.Module):
    """Dynamic capped ReLU: one learnable cap per neuron (dense) or channel (conv).

    ``max_value`` has shape (C,) and broadcasts over inputs (N, C) and (N, C, *spatial).
    The cap receives gradient where ``x > m``; :meth:`penalty` gives ``sum(m ** 2)``
    (dissertation eq. 5.1). With ``num_features=None`` the layer is lazy: its cap is
    created on the first forward (use a dry run, or ``surgery.replace_activations``
    with ``example_input``, before building an optimiser).
    """

    max_value: nn.Parameter
    cls_to_become = None

    def __init__(self, num_features: int | None = None, init_max: float = 100.0) -> None:
        super().__init__()
        init = float(init_max)
        if not init > 0 or init == float("inf"):
            raise ValueError(f"DReLU init_max must be a finite number > 0, got {init_max!r}")
        if num_features is not None and (not is_int(num_features) or num_features < 1):
            raise ValueError(f"DReLU num_features must be a positive int, got {num_features!r}")
        self.init_max = init
        self.straight_through = False
        if num_features is None:
            self.max_value = UninitializedParameter()  # type: ignore[assignment]
        else:
            self.max_value = nn.Parameter(torch.full((num_features,), init))

    @property
    def num_features(self) -> int | None:
        """Number of caps, or None while the layer is still lazy."""
        if isinstance(self.max_value, UninitializedParameter):
            return None
        return int(self.max_value.numel())

    def initialize_parameters(self, x: Tensor) -> None:
        """Materialise a lazy cap from the first input's channel dimension (dim 1)."""
        if self.has_uninitialized_params():
            if x.dim() < 2:
                raise ValueError(f"DReLU expects input of shape (N, C, ...), got {tuple(x.shape)}")
            with torch.no_grad():
                cap: Any = self.max_value
                cap.materialize((x.shape[1],), device=x.device, dtype=x.dtype)
                self.max_value.fill_(self.init_max)

    def _cap(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[1] != self.max_value.numel():
            raise ValueError(
                f"DReLU with {self.max_value.numel()} caps got input of shape {tuple(x.shape)}; "
                "the channel dimension (dim 1) must match num_features"
            )
        # a cap pushed below zero by an optimiser step acts as 0 (never a negative constant)
        return self.max_value.clamp(min=0.0).view(1, -1, *([1] * (x.dim() - 2)))

    def forward(self, x: Tensor) -> Tensor:
        y = srelu(x, self._cap(x))
        return _straight_through_relu(x, y) if self.straight_through else y

    def penalty(self) -> Tensor:
        """Sum of squared caps, ``sum_i m_i ** 2`` (a 0-dim tensor)."""
        return (self.max_value**2).sum()

    def extra_repr(self) -> str:
        n = self.num_features
        return f"num_features={'lazy' if n is None else n}, init_max={self.init_max:g}"


class BReLU(StraightThroughMixin, nn.Module):
    """Bernoulli ReLU (Zhu et al.): random in both train and eval mode.

    Args:
        alpha: gate slope (1 = BReLU; other values = VBReLU).
        mode: ``"sample"`` (random) or ``"expected"`` (deterministic mean).
        generator: optional ``torch.Generator`` for reproducible gates.

    Shape: any; the output has the input's shape.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        mode: Literal["sample", "expected"] = "sample",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        a = float(alpha)
        if not a > 0 or a == float("inf"):
            raise ValueError(f"BReLU alpha must be a finite number > 0, got {alpha!r}")
        if mode not in ("sample", "expected"):
            raise ValueError(f"BReLU mode must be 'sample' or 'expected', got {mode!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"BReLU generator must be a torch.Generator, got {type(generator)}")
        self.alpha = a
        self.mode: Literal["sample", "expected"] = mode
        self.generator = generator
        self.straight_through = False

    @property
    def stochastic(self) -> bool:
        """True when forward passes are random (``mode == "sample"``)."""
        return self.mode == "sample"

    def forward(self, x: Tensor) -> Tensor:
        y = brelu(x, self.alpha, self.mode, self.generator)
        if self.straight_through and self.mode == "sample":
            e = x * torch.sigmoid(self.alpha * x)
            return y.detach() + (e - e.detach())
        return y

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}, mode={self.mode!r}"


# ----------------------------------------------------------------------------- factory
def _register_defaults() -> None:
    _ACTIVATIONS.add("relu", nn.ReLU)
    _ACTIVATIONS.add("relu6", nn.ReLU6)
    _ACTIVATIONS.add("leaky_relu", nn.LeakyReLU)
    _ACTIVATIONS.add("prelu", nn.PReLU)
    _ACTIVATIONS.add("gelu", nn.GELU)
    _ACTIVATIONS.add("silu", nn.SiLU)
    _ACTIVATIONS.add("elu", nn.ELU)
    _ACTIVATIONS.add("srelu", SReLU)
    _ACTIVATIONS.add("drelu", DReLU)
    _ACTIVATIONS.add("brelu", BReLU)


_register_defaults()


def list_activations() -> list[str]:
    """Names accepted by :func:`get_activation`."""
    return _ACTIVATIONS.names()


def get_activation(name: str, **kwargs: Any) -> nn.Module:
    """Build an activation module by name.

    Args:
        name: one of :func:`list_activations` (case-insensitive).
        **kwargs: constructor arguments, e.g. ``max_value=0.1`` for ``"srelu"``.
    Raises:
        ValueError: unknown name (the message lists the known ones) or bad arguments.
    """
    ctor = _ACTIVATIONS.get(name)
    try:
        return ctor(**kwargs)
    except TypeError as e:
        params = ", ".join(p for p in inspect.signature(ctor).parameters if p != "self")
        raise ValueError(
            f"bad arguments {sorted(kwargs)} for activation {name!r}: {e}; it accepts: {params}"
        ) from None


def _accepts_num_features(factory: Callable[..., nn.Module]) -> bool:
    try:
        return "num_features" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def make_activation(act_layer: ActLayer | None, num_features: int | None = None) -> nn.Module:
    """Build one activation for a layer with ``num_features`` units/channels.

    This is how every model constructor instantiates ``act_layer``: a name (see
    :func:`get_activation`), a class or a factory (e.g. ``functools.partial(SReLU,
    max_value=0.1)``). Factories that take ``num_features`` (D-ReLU) get it.
    """
    if act_layer is None:
        return nn.ReLU()
    if isinstance(act_layer, str):
        factory: Callable[..., nn.Module] = _ACTIVATIONS.get(act_layer)
    elif isinstance(act_layer, nn.Module):
        raise TypeError(
            "act_layer must be a class, factory or name, not a module instance "
            f"({type(act_layer).__name__}); pass the class or functools.partial(...)"
        )
    else:
        factory = act_layer
    if num_features is not None and _accepts_num_features(factory):
        return factory(num_features=num_features)
    return factory()


def cap_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """Yield every D-ReLU cap in ``model`` (for their own optimiser group)."""
    for m in model.modules():
        if isinstance(m, DReLU):
            yield m.max_value


def drelu_penalty(model: nn.Module) -> Tensor:
    """Sum of squared D-ReLU caps over the whole model (0 if it has none)."""
    total: Tensor | None = None
    for m in model.modules():
        if isinstance(m, DReLU):
            total = m.penalty() if total is None else total + m.penalty()
    if total is None:
        p = next(model.parameters(), None)
        return torch.zeros((), device=p.device if p is not None else None)
    return total
