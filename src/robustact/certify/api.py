"""Entry points: margin lower bounds and certified accuracy for a batch of points."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustact.certify.bounds import crown_margins, ibp_margins, interval_bounds, margin_spec
from robustact.certify.chain import build_chain, run_chain

__all__ = ["METHODS", "NORMS", "CertifyResult", "certified_accuracy", "margin_bounds"]

METHODS = ("crown", "ibp")
NORMS = ("linf", "l2")


def _check(x: Tensor, y: Tensor, eps: float, norm: str, method: str) -> tuple[float, str, str]:
    """Validate the inputs; returns (eps, norm, method) normalised."""
    if not isinstance(x, Tensor) or x.dim() < 2 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor (N, C, H, W) or (N, D), got {type(x).__name__}")
    if not isinstance(y, Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be int64 labels (N,) with N = {x.shape[0]} (x's batch size)")
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise ValueError("x must be finite pixels in [0, 1]; normalisation belongs in the model")
    e = float(eps)
    if not math.isfinite(e) or e < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    n, m = str(norm).lower(), str(method).lower()
    if n not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)} (any case), got {norm!r}")
    if m not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return e, n, m


@torch.no_grad()
def margin_bounds(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    norm: str = "linf",
    method: str = "crown",
    *,
    intersect: bool = True,
    memory_mb: float = 512.0,
    slopes: str = "area",
) -> Tensor:
    """Certified lower bounds on ``logit_y - logit_j`` over ``{x' : ||x' - x|| <= eps} ∩ [0, 1]``.

    Args:
        model: a feed-forward network of the layers in :data:`~robustact.certify.SUPPORTED`
            (put in eval mode for the call and restored).
        x: points (N, C, H, W) in [0, 1]; y: labels (N,).
        eps: radius >= 0; norm: ``"linf"`` or ``"l2"``.
        method: ``"crown"`` or ``"ibp"`` (see :mod:`robustact.certify.bounds`).
        intersect: CROWN only: return ``max(IBP, CROWN)`` per margin (both are sound);
            False gives CROWN's own bound.
        memory_mb: rough cap on CROWN's coefficient tensors per backward pass.
        slopes: CROWN's lines on a capped unit's flat side, ``"area"`` (default, measured
            tighter on trained nets) or ``"flat"`` (see ``relax.clip_relaxation``).

    Returns:
        (N, K) lower bounds; column ``y`` is ``+inf``. The point is certified iff every
        entry is > 0.
    """
    eps, norm, method = _check(x, y, eps, norm, method)
    if slopes not in ("flat", "area"):
        raise ValueError(f"slopes must be 'flat' or 'area', got {slopes!r}")
    was_training = model.training
    model.eval()
    try:
        chain = build_chain(model, x)
        k = chain[-1].out_shape[0]
        if y.min() < 0 or y.max() >= k:
            raise ValueError(f"labels must lie in [0, {k - 1}] for a model with {k} logits")
        lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
        spec = margin_spec(y, k).to(x.dtype)
        ibp, sq = interval_bounds(chain, x, lo, hi, eps, norm)
        lower = ibp_margins(chain, ibp, spec, x, eps, sq)
        if method == "crown":
            region = (x, lo, hi)
            crown = crown_margins(chain, ibp, spec, region, eps, norm, memory_mb, slopes)
            lower = torch.maximum(lower, crown) if intersect else crown
    finally:
        model.train(was_training)
    return lower.scatter(1, y[:, None], math.inf)


@dataclass
class CertifyResult:
    """Certified accuracy of one run.

    Attributes:
        method, norm, eps: how it was certified.
        certified: bool (N,), the margin lower bound is > 0 for every wrong class.
        clean: bool (N,), the model classifies the unperturbed point correctly
            (``certified`` implies ``clean``).
        lower: (N, K) margin lower bounds (column y is +inf).
        seconds: wall time of the bound computation.
    """

    method: str
    norm: str
    eps: float
    certified: Tensor
    clean: Tensor
    lower: Tensor = field(repr=False)
    seconds: float = 0.0

    @property
    def n(self) -> int:
        """Number of points."""
        return int(self.certified.numel())

    @property
    def certified_accuracy(self) -> float:
        """Fraction of points certified robust (a lower bound on true robust accuracy)."""
        return float(self.certified.float().mean()) if self.n else 0.0

    @property
    def clean_accuracy(self) -> float:
        """Fraction of points classified correctly without perturbation."""
        return float(self.clean.float().mean()) if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no tensors)."""
        return {
            "method": self.method,
            "norm": self.norm,
            "eps": self.eps,
            "n": self.n,
            "certified": int(self.certified.sum()),
            "clean": int(self.clean.sum()),
            "certified_accuracy": self.certified_accuracy,
            "clean_accuracy": self.clean_accuracy,
            "seconds": self.seconds,
        }


def certified_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    norm: str = "linf",
    method: str = "crown",
    *,
    batch_size: int = 64,
    memory_mb: float = 512.0,
    slopes: str = "area",
) -> CertifyResult:
    """Certify each point of ``x`` (N, C, H, W) in [0, 1] with labels ``y`` (N,).

    Points go through :func:`margin_bounds` (``memory_mb``, ``slopes`` as there)
    ``batch_size`` at a time (CROWN's memory grows with the batch; for a 28x28 CNN keep it
    small). Returns a :class:`CertifyResult`.
    """
    eps, norm, method = _check(x, y, eps, norm, method)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    start = time.perf_counter()
    parts = [
        margin_bounds(
            model,
            x[i : i + batch_size],
            y[i : i + batch_size],
            eps,
            norm,
            method,
            memory_mb=memory_mb,
            slopes=slopes,
        )
        for i in range(0, x.shape[0], batch_size)
    ]
    lower = torch.cat(parts) if parts else x.new_zeros(0, 0)
    seconds = time.perf_counter() - start
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            clean = run_chain(build_chain(model, x[:1]), x).argmax(1) == y if len(x) else y.bool()
    finally:
        model.train(was_training)
    return CertifyResult(method, norm, eps, (lower > 0).all(dim=1), clean, lower, seconds)
