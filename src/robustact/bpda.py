"""Which modules an adaptive attack back-propagates around (BPDA), and how.

Three sources, all used by :func:`robustact.surgery.straight_through`:

* **built-in** layers (S-ReLU, D-ReLU, BReLU, preprocessing defences): any
  :class:`~robustact.activations.StraightThroughMixin` switches its own flag;
* **registered** rules: ``register_bpda(MyCap, "identity")`` or
  ``register_bpda(lambda m: ..., fn)`` declares a user layer and its backward
  approximation, for every model, until the returned handle is removed;
* **detected** by behaviour on a batch: a leaf module whose output has the shape of its
  input and whose local gradient is (near) zero on most of its non-zero outputs (a user's
  ``torch.clamp`` cap, input rounding, a hard threshold) back-propagates as the identity
  (Athalye et al. 2018, BPDA with ``g(x) ≈ x``). Zeros where the output is zero are what
  any ReLU has and do not count, so ReLU, k-WTA and dropout are left alone.

A backward approximation is ``fn(module, input) -> Tensor``, a differentiable surrogate
of the module's output (same shape). The forward value stays bit-exact:
``out.detach() + (s - s.detach())``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from robustact.activations import StraightThroughMixin

__all__ = [
    "BPDAHandle",
    "BPDAModule",
    "BackwardApprox",
    "bpda_modules",
    "describe_bpda",
    "find_flat_modules",
    "identity_backward",
    "register_bpda",
    "registered_bpda",
    "straight_through",
]

#: ``fn(module, input (N, ...)) -> surrogate output``, differentiable in ``input``.
BackwardApprox = Callable[[nn.Module, Tensor], Tensor]
Matcher = type[nn.Module] | tuple[type[nn.Module], ...] | Callable[[nn.Module], bool]

#: A leaf is "flat" when more than this fraction of its non-zero outputs has |local grad|
#: at or below ``FLAT_GRAD``; 0.5 keeps Hardtanh/sigmoid networks that are merely
#: partly saturated out, and catches tight caps (>= 88 % at the cap) and rounding (100 %).
FLAT_FRACTION = 0.5
FLAT_GRAD = 1e-6

#: Leaves whose gradient is known not to vanish where their output is non-zero; a model
#: made only of these (and built-in layers) needs no detection pass.
_SMOOTH: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.ReLU,
    nn.LeakyReLU,
    nn.PReLU,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.Flatten,
    nn.Identity,
    nn.Dropout,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
)


def identity_backward(module: nn.Module, inp: Tensor) -> Tensor:
    """The identity surrogate (BPDA's ``g(x) ≈ x``): the gradient passes unchanged."""
    return inp


@dataclass(frozen=True)
class _Rule:
    match: Matcher
    backward: BackwardApprox
    key: int

    def applies(self, m: nn.Module) -> bool:
        if isinstance(self.match, type | tuple):
            return isinstance(m, self.match)
        return bool(self.match(m))


# The one registry of user rules (like the model and attack registries: filled by the user
# at import time, read by straight_through); handles remove their own rule.
_RULES: list[_Rule] = []


class BPDAHandle:
    """Returned by :func:`register_bpda`; ``remove()`` (or leaving a ``with`` block) undoes it."""

    def __init__(self, key: int) -> None:
        self._key = key

    def remove(self) -> None:
        _RULES[:] = [r for r in _RULES if r.key != self._key]

    def __enter__(self) -> BPDAHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def register_bpda(match: Matcher, backward: BackwardApprox | str = "identity") -> BPDAHandle:
    """Declare how an adaptive attack back-propagates through a module type of yours.

    Args:
        match: a module class (or tuple of classes), or a predicate ``fn(module) -> bool``.
        backward: ``"identity"`` or ``fn(module, input) -> surrogate output``, a
            differentiable function of ``input`` whose gradient replaces the module's;
            e.g. ``lambda m, z: torch.relu(z)`` for a capped ReLU.
    Returns:
        a handle; ``handle.remove()`` unregisters (also usable as a context manager).
    Raises:
        TypeError: ``match`` or ``backward`` is neither of the accepted kinds.
    """
    is_type = isinstance(match, type) and issubclass(match, nn.Module)
    is_types = isinstance(match, tuple) and all(
        isinstance(t, type) and issubclass(t, nn.Module) for t in match
    )
    if not (is_type or is_types or (callable(match) and not isinstance(match, type))):
        raise TypeError(
            f"register_bpda: match must be an nn.Module class, a tuple of them or a predicate "
            f"fn(module) -> bool, got {match!r}"
        )
    if backward == "identity":
        backward = identity_backward
    if isinstance(backward, str) or not callable(backward):
        raise TypeError(
            f"register_bpda: backward must be 'identity' or fn(module, input) -> Tensor, "
            f"got {backward!r}"
        )
    key = max((r.key for r in _RULES), default=0) + 1
    _RULES.append(_Rule(match, backward, key))
    return BPDAHandle(key)


def registered_bpda(module: nn.Module) -> BackwardApprox | None:
    """The backward approximation registered for ``module`` (the latest rule wins), or None."""
    for rule in reversed(_RULES):
        if rule.applies(module):
            return rule.backward
    return None


@dataclass(frozen=True)
class BPDAModule:
    """One module ``straight_through`` treats: its dotted name, how, and why."""

    name: str
    module: nn.Module
    source: str  # "built-in", "registered" or "detected"
    reason: str


def _leaf_gradients(model: nn.Module, x: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
    """For every leaf module with one tensor in and a same-shaped tensor out, on one
    eval-mode pass of ``x``: (output, d sum(output) / d input) of the module run alone."""
    found: dict[str, tuple[Tensor, Tensor]] = {}
    hooks = []

    def make(name: str) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if name in found or len(args) != 1 or not isinstance(args[0], Tensor):
                return
            z = args[0]
            if not isinstance(out, Tensor) or out.shape != z.shape or not z.is_floating_point():
                return
            with torch.enable_grad():
                zg = z.detach().requires_grad_(True)
                o = m.forward(zg)  # not m(zg): that would re-enter this hook
                if not o.requires_grad:
                    g = torch.zeros_like(zg)
                else:
                    (g,) = torch.autograd.grad(o.sum(), zg, allow_unused=True)
                    g = torch.zeros_like(zg) if g is None else g
            found[name] = (o.detach(), g.detach())

        return hook

    for name, m in model.named_modules():
        leaf = name and next(m.children(), None) is None
        if leaf and not isinstance(m, (StraightThroughMixin, *_SMOOTH)):
            hooks.append(m.register_forward_hook(make(name)))
    if not hooks:
        return found
    was_training = model.training
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        model.eval()
        # the probe must not shift the caller's random stream (stochastic models)
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return found


def find_flat_modules(
    model: nn.Module, x: Tensor, *, fraction: float = FLAT_FRACTION
) -> list[BPDAModule]:
    """Leaf modules whose local gradient vanishes on most of their non-zero outputs.

    Args:
        model: any module; one eval-mode forward pass of ``x`` (mode restored).
        x: a batch (N, ...) of the model's inputs.
        fraction: flag a module when more than this share of its non-zero outputs has a
            local gradient of magnitude <= ``FLAT_GRAD``.
    Returns:
        the flagged modules (``source="detected"``), in definition order.
    """
    mods = dict(model.named_modules())
    out = []
    for name, (o, g) in _leaf_gradients(model, x).items():
        live = o != 0
        n_live = int(live.sum())
        if n_live == 0 or registered_bpda(mods[name]) is not None:
            continue
        flat = float(((g.abs() <= FLAT_GRAD) & live).sum()) / n_live
        if flat > fraction:
            reason = (
                f"{100 * flat:.0f}% of its non-zero outputs have zero local gradient: "
                "identity backward"
            )
            out.append(BPDAModule(name, mods[name], "detected", reason))
    return out


def bpda_modules(model: nn.Module, x: Tensor | None = None) -> list[BPDAModule]:
    """Every module ``straight_through(model, x)`` gives a surrogate backward, and why.

    Built-in straight-through layers and registered rules always; with a batch ``x``
    also the modules :func:`find_flat_modules` detects.
    """
    out = []
    for name, m in model.named_modules():
        if isinstance(m, StraightThroughMixin):
            kind = type(m).__name__
            out.append(BPDAModule(name, cast(nn.Module, m), "built-in", f"{kind} straight-through"))
        elif registered_bpda(m) is not None:
            out.append(BPDAModule(name, m, "registered", f"register_bpda({type(m).__name__})"))
    if x is not None:
        out.extend(find_flat_modules(model, x))
    return out


def _hook(backward: BackwardApprox) -> Callable[[nn.Module, tuple[Any, ...], Any], Any]:
    def hook(m: nn.Module, args: tuple[Any, ...], out: Any) -> Any:
        if not args or not isinstance(args[0], Tensor) or not isinstance(out, Tensor):
            return None
        s = backward(m, args[0])
        if not isinstance(s, Tensor) or s.shape != out.shape:
            got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
            raise ValueError(
                f"BPDA backward approximation for {type(m).__name__} returned {got}, but the "
                f"module's output is {tuple(out.shape)}; return a tensor of the output's shape"
            )
        # out + 0 keeps the forward value bit-exact; the gradient flows through s
        return out.detach() + (s - s.detach())

    return hook


@contextmanager
def straight_through(model: nn.Module, x: Tensor | None = None) -> Iterator[nn.Module]:
    """Inside this block, gradient-masking modules back-propagate adaptively (BPDA).

    Built-in layers switch their flag (caps back-propagate as ReLU, BReLU through its
    expectation, preprocessing as its surrogate); registered modules and, given a batch
    ``x``, modules detected as flat (:func:`find_flat_modules`) back-propagate through
    their approximation. Forward values are unchanged; everything is restored on exit.

    Args:
        model: any module.
        x: optional batch (N, ...) of inputs, for behaviour-based detection.
    Yields:
        ``model`` itself.
    """
    mods = bpda_modules(model, x)
    saved = [
        (b.module, bool(getattr(b.module, "straight_through", False)))
        for b in mods
        if b.source == "built-in"
    ]
    hooks = []
    try:
        for m, _ in saved:
            setattr(m, "straight_through", True)  # noqa: B010 (an nn.Module attribute)
        for b in mods:
            if b.source != "built-in":
                approx = registered_bpda(b.module) or identity_backward
                hooks.append(b.module.register_forward_hook(_hook(approx)))
        yield model
    finally:
        for m, flag in saved:
            setattr(m, "straight_through", flag)  # noqa: B010
        for h in hooks:
            h.remove()


def describe_bpda(mods: Sequence[BPDAModule]) -> str:
    """One line naming each module and why it gets a surrogate backward."""
    return "; ".join(f"{b.name or '<model>'} ({b.source}: {b.reason})" for b in mods) or "none"
