"""Sound linear relaxations of the clipped ReLU family and of max pooling.

Every relaxation is a pair of elementwise lines valid on the unit's pre-activation interval
``[l, u]``::

    lower_slope * z + lower_bias  <=  f(z)  <=  upper_slope * z + upper_bias   (l <= z <= u)

**Clipped ReLU** ``f(z) = min(max(z, 0), m)`` covers ReLU (``m = +inf``), S-ReLU (one
``m > 0``) and D-ReLU (one ``m >= 0`` per unit or channel). Six cases, by where ``[l, u]``
sits relative to the kinks at 0 and ``m``:

1. ``u <= 0``: ``f = 0`` (exact: both lines are 0).
2. ``l >= m``: ``f = m`` (exact: slope 0, bias m).
3. ``0 <= l, u <= m``: ``f = z`` (exact: slope 1, bias 0).
4. ``l < 0 < u <= m`` (lower kink only; ReLU's triangle): upper is the chord through
   ``(l, 0)`` and ``(u, u)``: slope ``u / (u - l)``, bias ``-l u / (u - l)``; lower is
   ``alpha z`` with ``alpha = 1`` if ``u > -l`` else 0 (CROWN's adaptive choice: the
   smaller of the two triangles' areas). Any ``alpha`` in [0, 1] is sound: for ``z < 0``,
   ``alpha z <= 0 = f``; for ``z >= 0``, ``alpha z <= z = f``.
5. ``0 <= l < m < u`` (upper kink only; the mirror image of case 4 through ``(m, m)``):
   lower is the chord through ``(l, l)`` and ``(u, m)`` (``f`` is concave on ``[l, u]``, so
   it lies above its chord): slope ``(m - l) / (u - l)``; upper is ``m + beta (z - m)`` with
   ``beta = 1`` if ``m - l > u - m`` else 0. Any ``beta`` in [0, 1] is sound: for
   ``z <= m``, ``(1 - beta)(z - m) <= 0``; for ``z >= m``, ``m <= m + beta (z - m)``.
6. ``l < 0`` and ``u > m`` (both kinks): ``f`` is neither convex nor concave. Its lower
   convex hull on ``[l, u]`` is ``max(0, m z / u)`` and its upper concave hull
   ``min(m, m (z - l) / (m - l))``. The lower line is ``alpha z`` with ``alpha = m / u`` if
   ``u > -l`` else 0 (sound for ``alpha`` in [0, m/u]: below 0 for ``z < 0``, below
   ``z m / u <= min(z, m)`` for ``z >= 0``); the upper line is ``m + beta (z - m)`` with
   ``beta = m / (m - l)`` if ``m - l > u - m`` else 0 (sound for ``beta`` in [0, m/(m - l)]:
   at ``z = l`` it is ``>= 0``, it passes through ``(m, m)``, and its slope is <= 1 on
   ``[0, m]`` and >= 0 beyond). Both choices minimise the area between line and ``f``.

Which slopes on the flat side (``slopes``): the area rule above (``"area"``, the default,
the mirror image of CROWN's ReLU rule) or the flat lines ``beta = 0`` in case 5 and
``alpha = beta = 0`` in case 6 (``"flat"``: ``f <= m`` and ``0 <= f``, the unit's own
range). Both are sound for any ``[l, u]``; neither is tighter everywhere. Measured:
on random untrained 4-6-6-3 S-ReLU/D-ReLU nets (tests' ``tiny_net``, eps 0.1-0.3) CROWN
with ``"area"`` was looser than IBP on 27-60 % of the margins, with ``"flat"`` on 2-14 %;
on trained digits MLPs (``benchmarks/certify.py``) ``"area"`` certified up to 5.5 pp more
points (S-ReLU cap 1 and D-ReLU, eps Linf 0.05 / L2 0.25) and ``"flat"`` at most 0.5 pp
more, so ``"area"`` is the default.

A cap ``m = 0`` (a D-ReLU cap pushed to zero) makes ``f = 0``; cases 1, 2 and 6 then all
give the exact lines 0.

**Max pooling** ``y = max_i x_i`` over a window with input intervals ``[l_i, u_i]``
(DeepPoly's relaxation, Singh et al. 2019): let ``i*`` have the largest lower bound. The
lower line is ``y >= x_{i*}``. If ``l_{i*} >= u_j`` for every other ``j`` the max is
``x_{i*}`` exactly (upper line ``x_{i*}``); otherwise the upper line is the constant
``max_j u_j``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ElementwiseRelaxation", "PoolRelaxation", "clip_relaxation", "maxpool_relaxation"]


@dataclass(frozen=True)
class ElementwiseRelaxation:
    """Per-unit lines, each tensor of the pre-activation's shape (B, *shape)."""

    lower_slope: Tensor
    lower_bias: Tensor
    upper_slope: Tensor
    upper_bias: Tensor


def clip_relaxation(
    lower: Tensor, upper: Tensor, cap: Tensor | float, slopes: str = "area"
) -> ElementwiseRelaxation:
    """Relax ``min(max(z, 0), cap)`` on ``[lower, upper]`` (the six cases of the module doc).

    Args:
        lower, upper: pre-activation bounds (B, *shape), ``lower <= upper``.
        cap: ``float('inf')`` for ReLU, a float > 0 for S-ReLU, or a tensor of caps >= 0
            broadcastable to ``lower`` for D-ReLU.
        slopes: ``"area"`` (the default) or ``"flat"``: the choice of
            ``beta`` in case 5 and ``alpha, beta`` in case 6 (case 4 is always CROWN's
            adaptive ``alpha``).

    Returns:
        :class:`ElementwiseRelaxation` with tensors of shape (B, *shape).
    """
    if slopes not in ("flat", "area"):
        raise ValueError(f"slopes must be 'flat' or 'area', got {slopes!r}")
    lo, hi = lower, upper
    m = torch.as_tensor(cap, dtype=lo.dtype, device=lo.device).expand_as(lo)
    zero, one = torch.zeros_like(lo), torch.ones_like(lo)
    finite_m = torch.where(torch.isfinite(m), m, hi.clamp(min=1.0))  # unused where m = inf
    width = (hi - lo).clamp(min=1e-30)
    # case 4 (lower kink): chord above, alpha z below
    c4_us, c4_ub = hi / width, -lo * hi / width
    c4_ls = (hi > -lo).to(lo.dtype)
    # case 5 (upper kink): chord below, m + beta (z - m) above
    c5_ls = (finite_m - lo) / width
    c5_lb = lo - c5_ls * lo
    c5_us = (finite_m - lo > hi - finite_m).to(lo.dtype)
    # case 6 (both kinks)
    c6_ls = torch.where(hi > -lo, finite_m / hi.clamp(min=1e-30), zero)
    c6_us = torch.where(
        finite_m - lo > hi - finite_m, finite_m / (finite_m - lo).clamp(min=1e-30), zero
    )
    if slopes == "flat":
        c5_us, c6_ls, c6_us = zero, zero, zero
    up_b = finite_m * (1 - c5_us)
    cases = [
        (hi <= 0, zero, zero, zero, zero),
        (lo >= m, zero, m, zero, m),
        ((lo >= 0) & (hi <= m), one, zero, one, zero),
        ((lo < 0) & (hi <= m), c4_ls, zero, c4_us, c4_ub),
        ((lo >= 0) & (hi > m), c5_ls, c5_lb, c5_us, up_b),
        ((lo < 0) & (hi > m), c6_ls, zero, c6_us, finite_m * (1 - c6_us)),
    ]
    ls, lb, us, ub = zero, zero, zero, zero
    for mask, a_l, b_l, a_u, b_u in reversed(cases):  # the first matching case wins
        ls, lb = torch.where(mask, a_l, ls), torch.where(mask, b_l, lb)
        us, ub = torch.where(mask, a_u, us), torch.where(mask, b_u, ub)
    return ElementwiseRelaxation(ls, lb, us, ub)


@dataclass(frozen=True)
class PoolRelaxation:
    """Max-pool lines: ``index`` (B, C, L) is the flat input position (in H*W) of each
    window's ``i*``; ``exact`` (B, C, L) marks windows where ``y = x_{i*}``; elsewhere the
    upper line is the constant ``upper`` (B, C, L). ``L`` is the number of output pixels."""

    index: Tensor
    exact: Tensor
    upper: Tensor


def _windows(
    t: Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    fill: float,
) -> Tensor:
    """Pooling windows of ``t`` (B, C, H, W) as (B, C, kh*kw, L), padded with ``fill``."""
    b, c = t.shape[:2]
    padded = F.pad(t, (padding[1], padding[1], padding[0], padding[0]), value=fill)
    cols = F.unfold(padded.reshape(b * c, 1, *padded.shape[2:]), kernel, dilation, 0, stride)
    return cols.reshape(b, c, cols.shape[1], cols.shape[2])


def maxpool_relaxation(
    lower: Tensor,
    upper: Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> PoolRelaxation:
    """DeepPoly relaxation of ``max_pool2d`` with input bounds ``lower, upper`` (B, C, H, W).

    Returns:
        :class:`PoolRelaxation` with tensors of shape (B, C, L), L = output H * W.
    """
    geometry = (kernel, stride, padding, dilation)
    lw = _windows(lower, *geometry, fill=float("-inf"))
    uw = _windows(upper, *geometry, fill=float("-inf"))
    h, w = lower.shape[2:]
    plane = torch.arange(h * w, device=lower.device, dtype=lower.dtype).reshape(1, 1, h, w)
    iw = _windows(plane, *geometry, fill=-1.0)[0, 0]  # (K, L) flat input positions
    best = lw.argmax(dim=2, keepdim=True)  # (B, C, 1, L)
    best_lower = lw.gather(2, best).squeeze(2)
    others = uw.scatter(2, best, float("-inf"))
    exact = best_lower >= others.amax(dim=2)
    index = iw.expand(lw.shape[0], lw.shape[1], -1, -1).gather(2, best).squeeze(2).long()
    return PoolRelaxation(index=index, exact=exact, upper=uw.amax(dim=2))
