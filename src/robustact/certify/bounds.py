"""Lower bounds on the margins ``logit_y - logit_j`` over an input region: IBP and CROWN.

The region is an Linf or L2 ball of radius ``eps`` around ``x0`` intersected with the pixel
box [0, 1]; ``lo, hi`` (B, *input) is the box ``[max(x0 - eps, 0), min(x0 + eps, 1)]``, which
is exactly the region for Linf and a superset of it for L2.

* **IBP** pushes an interval through every layer. The specification matrix ``C`` (B, K, K),
  row ``j = e_y - e_j``, is folded into the last Linear layer (``C W``, ``C b``), so the
  margin is bounded directly instead of as a difference of two logit intervals. For L2 the
  first Linear/Conv layer (after any Normalize/BatchNorm/Flatten) is bounded by the dual
  norm, ``W x0 + b -/+ eps * ||W_i||_2``, intersected with the box bound; later layers see
  intervals.
* **CROWN** (Zhang et al. 2018) bounds every unstable unit's pre-activation, then the
  margins, by a backward pass of linear coefficients through the relaxations of
  :mod:`~robustact.certify.relax`, and concretises ``min A x + c`` over the region: over the
  box for Linf; for L2 the larger of ``A x0 - eps ||A||_2`` (the dual norm) and the box
  bound. Its intermediate bounds are intersected with IBP's, so they are never looser; the
  final margin bound is CROWN's alone unless ``intersect`` asks for ``max(IBP, CROWN)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from robustact.certify.ops import Clip, Dense, Op

__all__ = ["crown_margins", "ibp_margins", "interval_bounds", "margin_spec"]

Bounds = tuple[Tensor, Tensor]


def margin_spec(y: Tensor, k: int) -> Tensor:
    """C (B, K, K) with row j = e_y - e_j (row y is zero)."""
    eye = torch.eye(k, device=y.device)
    return eye[y].unsqueeze(1) - eye.unsqueeze(0)


def _intersect(a: Bounds, b: Bounds) -> Bounds:
    return torch.maximum(a[0], b[0]), torch.minimum(a[1], b[1])


def interval_bounds(
    chain: list[Op], x0: Tensor, lo: Tensor, hi: Tensor, eps: float, norm: str
) -> tuple[list[Bounds], Tensor | None]:
    """IBP bounds of every op's input.

    Args:
        chain: the model's ops; x0, lo, hi: (B, *input) centre and box; eps, norm: the ball.

    Returns:
        ``(bounds, sq)``: ``bounds[k]`` (each (B, *chain[k].in_shape)) bounds op k's input,
        ``bounds[-1]`` the logits; ``sq`` is, for L2 when no mixing layer comes before the
        last op, the squared-weight vector (1, *last.in_shape) of the diagonal prefix (else
        None), used by :func:`ibp_margins` for the dual norm of a purely linear model.
    """
    bounds: list[Bounds] = [(lo, hi)]
    low, up = lo, hi
    centre: Tensor | None = x0 if norm == "l2" else None
    sq: Tensor | None = torch.ones_like(x0[:1]) if norm == "l2" else None
    for op in chain:
        low, up = op.ibp(low, up)
        if centre is not None and sq is not None and op is not chain[-1]:
            centre, sq = op.forward(centre), op.sqnorm(sq)
            if sq is not None and op.mixing:
                rad = eps * sq.clamp(min=0).sqrt()
                low, up = _intersect((low, up), (centre - rad, centre + rad))
                sq = None
        elif op is not chain[-1]:
            sq = None
        bounds.append((low, up))
    return bounds, sq


def ibp_margins(
    chain: list[Op], bounds: list[Bounds], spec: Tensor, x0: Tensor, eps: float, sq: Tensor | None
) -> Tensor:
    """IBP lower bounds (B, K) of ``spec @ logits`` with ``spec`` folded into the last layer."""
    last = chain[-1]
    assert isinstance(last, Dense)
    low, up = bounds[-2]
    w = spec @ last.weight  # (B, K, in)
    b = spec @ last.bias
    mid, rad = (up + low) / 2, (up - low) / 2
    lower = torch.einsum("bki,bi->bk", w, mid) + b - torch.einsum("bki,bi->bk", w.abs(), rad)
    if sq is not None:  # a linear model under L2: the dual norm of the folded layer
        c = x0
        for op in chain[:-1]:
            c = op.forward(c)
        ball = torch.einsum("bki,bi->bk", w, c) + b - eps * (w**2 @ sq[0]).clamp(min=0).sqrt()
        lower = torch.maximum(lower, ball)
    return lower


def _concretise(
    a: Tensor, const: Tensor, x0: Tensor, lo: Tensor, hi: Tensor, eps: float, norm: str
) -> Tensor:
    """Lower bound (B, S) of ``a @ x + const`` over the region; ``a`` (B, S, *input)."""
    a = a.flatten(2)
    mid, rad = ((hi + lo) / 2).flatten(1), ((hi - lo) / 2).flatten(1)
    box = torch.einsum("bsi,bi->bs", a, mid) - torch.einsum("bsi,bi->bs", a.abs(), rad)
    if norm == "l2":
        ball = torch.einsum("bsi,bi->bs", a, x0.flatten(1)) - eps * a.norm(dim=2)
        box = torch.maximum(box, ball)
    return box + const


def _backward(chain: list[Op], relax: list[object], a: Tensor, end: int) -> tuple[Tensor, Tensor]:
    """Pass coefficients ``a`` (B, S, *chain[end-1].out_shape) back to the input."""
    const = a.new_zeros(a.shape[:2])
    for k in range(end - 1, -1, -1):
        a, c = chain[k].backward(a, relax[k])
        const = const + c
    return a, const


def _exact_by_ibp(chain: list[Op], k: int) -> bool:
    """True when IBP's bounds of op k's input are already as tight as CROWN's: at most one
    mixing affine layer and nothing nonlinear before it (Linf: exact per unit; L2: the
    same max of box and dual-norm bounds CROWN's concretisation would give)."""
    before = chain[:k]
    return not any(op.nonlinear for op in before) and sum(op.mixing for op in before) <= 1


def _rows_per_pass(chain: list[Op], end: int, batch: int, memory_mb: float) -> int:
    """Spec rows per backward pass so one coefficient tensor stays near ``memory_mb / 6``."""
    widest = max(math.prod(op.in_shape) for op in chain[: max(end, 1)])
    widest = max(widest, math.prod(chain[end - 1].out_shape)) if end else widest
    return max(1, int(memory_mb * 2**20 / 6 / 4 / (batch * widest)))


def _crown_layer(
    chain: list[Op],
    relax: list[object],
    k: int,
    region: tuple[Tensor, ...],
    eps: float,
    norm: str,
    need: Tensor,
    memory_mb: float,
) -> Bounds:
    """CROWN bounds (B, n) of op k's flattened input, for the units ``need`` (n_need,) only;
    the other entries are -inf / +inf (the caller intersects with IBP)."""
    x0, lo, hi = region
    b, n = x0.shape[0], math.prod(chain[k].in_shape)
    lower = x0.new_full((b, n), -math.inf)
    upper = x0.new_full((b, n), math.inf)
    step = max(1, _rows_per_pass(chain, k, b, memory_mb) // 2)
    for start in range(0, need.numel(), step):
        idx = need[start : start + step]
        s = idx.numel()
        coef, const = chain[k - 1].backward_units(idx, x0, relax[k - 1])
        coef, rest = _backward(chain, relax, coef, k - 1)
        out = _concretise(coef, const + rest, x0, lo, hi, eps, norm)
        lower[:, idx], upper[:, idx] = out[:, :s], -out[:, s:]
    return lower, upper


def _needed_units(op: Op, bounds: Bounds) -> Tensor:
    """Flat indices of op's input units CROWN should bound (unstable ones for Clip)."""
    low, up = bounds
    if isinstance(op, Clip):
        mask = op.unstable(low, up).flatten(1).any(dim=0)
    else:
        mask = torch.ones(low[0].numel(), dtype=torch.bool, device=low.device)
    return mask.nonzero().flatten()


def crown_margins(
    chain: list[Op],
    ibp: list[Bounds],
    spec: Tensor,
    region: tuple[Tensor, ...],
    eps: float,
    norm: str,
    memory_mb: float = 512.0,
    slopes: str = "area",
) -> Tensor:
    """CROWN lower bounds (B, K) of ``spec @ logits``.

    Args:
        chain: the model's ops; ibp: :func:`interval_bounds`' bounds (refined in a copy).
        spec: C (B, K, K); region: ``(x0, lo, hi)`` each (B, *input); eps, norm: the ball.
        memory_mb: rough cap on one backward pass's coefficient tensors.
        slopes: capped units' flat-side lines, ``"area"`` or ``"flat"`` (see
            :func:`~robustact.certify.relax.clip_relaxation`).
    """
    bounds = list(ibp)
    relax: list[object] = [None] * len(chain)
    for k, op in enumerate(chain):
        if not op.nonlinear:
            continue
        after_elementwise = k > 0 and chain[k - 1].elementwise
        if not after_elementwise and not _exact_by_ibp(chain, k):
            need = _needed_units(op, bounds[k])
            if need.numel():
                low, up = _crown_layer(chain, relax, k, region, eps, norm, need, memory_mb)
                shape = bounds[k][0].shape
                bounds[k] = _intersect(bounds[k], (low.reshape(shape), up.reshape(shape)))
                for j in range(k, len(chain)):  # tighter inputs tighten every later interval
                    bounds[j + 1] = _intersect(bounds[j + 1], chain[j].ibp(*bounds[j]))
        relax[k] = op.relax(*bounds[k], slopes=slopes)
    coef, const = _backward(chain, relax, spec, len(chain))
    x0, lo, hi = region
    return _concretise(coef, const, x0, lo, hi, eps, norm)
