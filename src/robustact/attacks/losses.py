"""Attack losses as pure per-sample functions, shared by attacks and training.

Every function returns a tensor of shape (N,) that the *attacker maximises*:
larger means closer to (or further past) a misclassification. Logits are (N, K),
labels and targets int64 (N,).

- ``ce``: cross-entropy of the true class.
- ``margin``: Carlini-Wagner margin ``max_{j != y} z_j - z_y`` (> 0 iff misclassified).
- ``dlr``: difference of logits ratio (Croce & Hein 2020), scale invariant.
- targeted forms push towards ``target`` instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

#: Uniform loss signature used by the attack loop: ``fn(logits, y, target) -> (N,)``;
#: untargeted losses ignore ``target``.
LossFn = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]


def _check(logits: Tensor, y: Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must be (N, K), got shape {tuple(logits.shape)}")
    if y.shape != logits.shape[:1]:
        raise ValueError(f"labels must be (N,) = ({logits.shape[0]},), got shape {tuple(y.shape)}")


def _other_max(logits: Tensor, y: Tensor) -> Tensor:
    """max_{j != y} z_j as (N,)."""
    masked = logits.scatter(1, y[:, None], float("-inf"))
    return masked.amax(dim=1)


def _clamp(v: Tensor, kappa: float | None) -> Tensor:
    # CW confidence: once the margin exceeds kappa the loss stops rewarding it
    return v if kappa is None else v.clamp(max=float(kappa))


def ce(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy per sample, (N,)."""
    _check(logits, y)
    return F.cross_entropy(logits, y, reduction="none")


def margin(logits: Tensor, y: Tensor, kappa: float | None = None) -> Tensor:
    """CW margin ``max_{j != y} z_j - z_y`` per sample, (N,); clipped at ``kappa`` if given.

    ``kappa=None`` leaves it unclipped (what PGD wants); CW passes its confidence.
    """
    _check(logits, y)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    return _clamp(_other_max(logits, y) - z_y, kappa)


def dlr(logits: Tensor, y: Tensor) -> Tensor:
    """DLR ``-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3)`` per sample, (N,). Needs K >= 3."""
    _check(logits, y)
    if logits.shape[1] < 3:
        raise ValueError(f"dlr needs at least 3 classes, got {logits.shape[1]}; use 'margin'")
    top = logits.topk(3, dim=1).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    return (_other_max(logits, y) - z_y) / (top[:, 0] - top[:, 2] + 1e-12)


def ce_targeted(logits: Tensor, target: Tensor) -> Tensor:
    """Negative cross-entropy of ``target`` per sample, (N,)."""
    _check(logits, target)
    return -F.cross_entropy(logits, target, reduction="none")


def margin_targeted(logits: Tensor, target: Tensor, kappa: float | None = None) -> Tensor:
    """Targeted CW margin ``z_t - max_{j != t} z_j`` per sample, (N,); clipped at ``kappa``."""
    _check(logits, target)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return _clamp(z_t - _other_max(logits, target), kappa)


def dlr_targeted(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` per sample, (N,).

    Needs K >= 4 (Croce & Hein 2020, APGD-T).
    """
    _check(logits, y)
    _check(logits, target)
    if logits.shape[1] < 4:
        raise ValueError(f"dlr_targeted needs at least 4 classes, got {logits.shape[1]}")
    top = logits.topk(4, dim=1).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return (z_t - z_y) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def _need_target(name: str, target: Tensor | None) -> Tensor:
    if target is None:
        raise ValueError(f"targeted loss {name!r} needs target=; pass the target labels")
    return target


def _u_ce(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    return ce(logits, y)


def _u_margin(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    return margin(logits, y)


def _u_dlr(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    return dlr(logits, y)


def _t_ce(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    return ce_targeted(logits, _need_target("ce", target))


def _t_margin(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    return margin_targeted(logits, _need_target("margin", target))


def _t_dlr(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    return dlr_targeted(logits, y, _need_target("dlr", target))


_LOSSES: dict[str, tuple[LossFn, LossFn]] = {
    "ce": (_u_ce, _t_ce),
    "margin": (_u_margin, _t_margin),
    "cw": (_u_margin, _t_margin),
    "dlr": (_u_dlr, _t_dlr),
}


def list_losses() -> list[str]:
    """Names accepted by :func:`get_loss`."""
    return sorted(_LOSSES)


def get_loss(name: str, targeted: bool = False) -> LossFn:
    """The loss ``name`` (``ce``, ``margin``/``cw``, ``dlr``) with the uniform signature
    ``fn(logits (N, K), y (N,), target (N,) | None) -> (N,)`` (maximised by attacks).

    Untargeted losses ignore ``target``; targeted ones require it.
    """
    if not isinstance(name, str) or name.lower() not in _LOSSES:
        raise ValueError(f"unknown loss {name!r}; use one of {', '.join(list_losses())}")
    pair = _LOSSES[name.lower()]
    return pair[1] if targeted else pair[0]


__all__ = [
    "LossFn",
    "ce",
    "ce_targeted",
    "dlr",
    "dlr_targeted",
    "get_loss",
    "list_losses",
    "margin",
    "margin_targeted",
]
