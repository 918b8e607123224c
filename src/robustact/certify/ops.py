"""The layers a bound can pass through, each with its interval and backward (CROWN) rule.

An :class:`Op` sees one sample's shapes without the batch dimension (``in_shape``,
``out_shape``). Bounds travel as tensors (B, *shape); a backward pass carries linear
coefficients ``A`` of shape (B, S, *out_shape) for S bounded quantities at once and turns
them into coefficients on the op's input (B, S, *in_shape) plus a constant (B, S). The
backward rules bound ``A @ output`` from below; an upper bound is the negated lower bound of
``-A``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustact.certify.relax import (
    ElementwiseRelaxation,
    PoolRelaxation,
    clip_relaxation,
    maxpool_relaxation,
)

__all__ = ["Affine", "Clip", "Conv", "Dense", "Diagonal", "MaxPool", "Op", "Reshape"]

Bounds = tuple[Tensor, Tensor]


def _rows(a: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """Fold (B, S, *shape) into (B * S, *shape); returns it and (B, S)."""
    b, s = a.shape[0], a.shape[1]
    return a.reshape(b * s, *a.shape[2:]), (b, s)


class Op:
    """One layer: ``forward`` (N, *in_shape) -> (N, *out_shape), ``ibp``, ``backward``.

    Subclasses that need their input bounds for the backward rule set ``nonlinear`` and
    implement :meth:`relax`; ``elementwise`` marks monotone unit-wise maps, whose output
    interval is exact given the input interval.
    """

    nonlinear = False
    elementwise = False
    mixing = False  # affine and not diagonal: unit bounds after two of these are not exact

    def __init__(self, name: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        self.name, self.in_shape, self.out_shape = name, in_shape, out_shape

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def ibp(self, lower: Tensor, upper: Tensor) -> Bounds:
        """Interval (B, *in_shape) -> interval (B, *out_shape)."""
        raise NotImplementedError

    def relax(self, lower: Tensor, upper: Tensor, slopes: str = "area") -> Any:
        """Linear relaxation on the input interval (only for ``nonlinear`` ops); ``slopes``
        picks a capped unit's flat-side lines (see ``relax.clip_relaxation``)."""
        return None

    def backward(self, a: Tensor, relaxation: Any) -> tuple[Tensor, Tensor]:
        """Coefficients (B, S, *out_shape) -> (coefficients (B, S, *in_shape), constant (B, S))."""
        raise NotImplementedError

    def sqnorm(self, v: Tensor) -> Tensor | None:
        """Squared row norms of this affine map applied to per-input weights ``v`` (1, *in);
        None where not implemented (used by IBP's L2 first layer)."""
        return None

    def backward_units(self, idx: Tensor, like: Tensor, relaxation: Any) -> tuple[Tensor, Tensor]:
        """:meth:`backward` of the 2s rows ``+e_i`` then ``-e_i`` for the output units
        ``idx`` (s,) (flat indices into ``out_shape``): (B, 2s, *in_shape), (B, 2s), with B,
        dtype and device those of ``like`` (B, ...). Subclasses skip the one-hot rows."""
        s, n, batch = idx.numel(), math.prod(self.out_shape), like.shape[0]
        a = like.new_zeros(batch, 2 * s, n)
        rows = torch.arange(s, device=idx.device)
        a[:, rows, idx], a[:, rows + s, idx] = 1.0, -1.0
        return self.backward(a.reshape(batch, 2 * s, *self.out_shape), relaxation)


class Reshape(Op):
    """Flatten or any view change."""

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.out_shape)

    def ibp(self, lower: Tensor, upper: Tensor) -> Bounds:
        return self.forward(lower), self.forward(upper)

    def backward(self, a: Tensor, relaxation: Any) -> tuple[Tensor, Tensor]:
        return a.reshape(*a.shape[:2], *self.in_shape), a.new_zeros(a.shape[:2])

    def sqnorm(self, v: Tensor) -> Tensor | None:
        return self.forward(v)


class Diagonal(Op):
    """``x * scale + shift`` with ``scale``, ``shift`` broadcastable to ``in_shape``
    (Normalize, BatchNorm in eval mode)."""

    def __init__(self, name: str, shape: tuple[int, ...], scale: Tensor, shift: Tensor) -> None:
        super().__init__(name, shape, shape)
        self.scale, self.shift = scale, shift

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift

    def ibp(self, lower: Tensor, upper: Tensor) -> Bounds:
        mid, rad = (upper + lower) / 2, (upper - lower) / 2
        c, r = self.forward(mid), rad * self.scale.abs()
        return c - r, c + r

    def backward(self, a: Tensor, relaxation: Any) -> tuple[Tensor, Tensor]:
        const = (a * self.shift).flatten(2).sum(-1)
        return a * self.scale, const

    def sqnorm(self, v: Tensor) -> Tensor | None:
        return v * self.scale**2


class Affine(Op):
    """Any other affine module (e.g. AvgPool2d); backward by a vector-Jacobian product."""

    mixing = True

    def __init__(
        self,
        name: str,
        module: nn.Module,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        monotone: bool,
    ) -> None:
        super().__init__(name, in_shape, out_shape)
        self.module, self.monotone = module, monotone

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.module(x)
        return out

    def ibp(self, lower: Tensor, upper: Tensor) -> Bounds:
        if not self.monotone:
            raise NotImplementedError(f"{self.name}: no interval rule")
        return self.forward(lower), self.forward(upper)

    def backward(self, a: Tensor, relaxation: Any) -> tuple[Tensor, Tensor]:
        flat, (b, s) = _rows(a)
        with torch.enable_grad():
            z = torch.zeros(b * s, *self.in_shape, dtype=a.dtype, device=a.device)
            z.requires_grad_(True)
            out = self.forward(z)
            (grad,) = torch.autograd.grad(out, z, grad_outputs=flat)
        const = (a * out[:1].detach()).flatten(2).sum(-1)
        return grad.reshape(b, s, *self.in_shape), const


class Dense(Op):
    """``nn.Linear``: (B, in) -> (B, out)."""

    mixing = True

    def __init__(self, name: str, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__(name, (weight.shape[1],), (weight.shape[0],))
        self.weight = weight
        self.bias = bias if bias is not None else weight.new_zeros(weight.shape[0])

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def ibp(self, lower: Tensor, upper: Tensor) -> Bounds:
        mid, rad = (upper + lower) / 2, (upper - lower) / 2
        c, r = self.forward(mid), F.linear(rad, self.weight.abs())
        return c - r, c + r

    def backward(self, a: Tensor, relaxation: Any) -> tuple[Tensor, Tensor]:
        return a @ self.weight, a @ self.bias

    def sqnorm(self, v: Tensor) -> Tensor | None:
        return F.linear(v, self.weight**2)

    def backward_units(self, idx: Tensor, like: Tensor, relaxation: Any) -> tuple[Tensor, Tensor]:
        w, b = self.weight[idx], self.bias[idx]
        coef, const = torch.cat([w, -w]), torch.cat([b, -b])
        return coef.expand(like.shape[0], *coef.shape), const.expand(like.shape[0], -1)


class Conv(Op):
    """``nn.Conv2d`` with zero padding: (B, C, H, W) -> (B, C', H', W')."""

    mixing = True

    def __init__(
        self, name: str, conv: nn.Conv2d, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
    ) -> None:
        super().__init__(name, in_shape, out_shape)
        self.conv = conv
        self.weight = conv.weight.detach()
        self.bias = None if conv.bias is None else conv.bias.detach()

    def _apply(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        c = self.conv
        return F.conv2d(x, weight, bias, c.stride, c.padding, c.dilation, c.groups)

    def forward(self, x: Tensor) -> Tensor:
        return self._apply(x, self.weight, self.bias)

    def ibp(self, lower: Tensor, upper: Tensor) -> Bounds:
        mid, rad = (upper + lower) / 2, (upper - lower) / 2
        c, r = self.forward(mid), self._apply(rad, self.weight.abs(), None)
        return c - r, c + r

    def backward(self, a: Tensor, relaxation: Any) -> tuple[Tensor, Tensor]:
        flat, (b, s) = _rows(a)
        c = self.conv
        if isinstance(c.padding, str):  # 'same' / 'valid': let autograd find the transpose
            op = Affine(self.name, c, self.in_shape, self.out_shape, monotone=False)
            return op.backward(a, relaxation)
        stride, pad, dil = c.stride, c.padding, c.dilation
        extra = [
            self.in_shape[1 + i]
            - (
                (self.out_shape[1 + i] - 1) * stride[i]
                - 2 * pad[i]
                + dil[i] * (self.weight.shape[2 + i] - 1)
                + 1
            )
            for i in range(2)
        ]
        grad = F.conv_transpose2d(flat, self.weight, None, stride, pad, tuple(extra), c.groups, dil)
        const = a.new_zeros(b, s)
        if self.bias is not None:
            const = a.flatten(3).sum(-1) @ self.bias
        return grad.reshape(b, s, *self.in_shape), const

    def sqnorm(self, v: Tensor) -> Tensor | None:
        return self._apply(v, self.weight**2, None)


class Clip(Op):
    """``min(max(x, 0), cap)``: ReLU (cap inf), ReLU6, S-ReLU, D-ReLU (per-channel caps)."""

    nonlinear = True
    elementwise = True

    def __init__(self, name: str, shape: tuple[int, ...], cap: Tensor) -> None:
        super().__init__(name, shape, shape)
        self.cap = cap  # broadcastable to shape

    def forward(self, x: Tensor) -> Tensor:
        return torch.minimum(x.clamp(min=0), self.cap.to(x.device, x.dtype))

    def ibp(self, lower: Tensor, upper: Tensor) -> Bounds:
        return self.forward(lower), self.forward(upper)

    def relax(self, lower: Tensor, upper: Tensor, slopes: str = "area") -> ElementwiseRelaxation:
        return clip_relaxation(lower, upper, self.cap, slopes)

    def backward(self, a: Tensor, relaxation: Any) -> tuple[Tensor, Tensor]:
        # coef = pos * lower_slope + neg * upper_slope = a * us + pos * (ls - us), written
        # with one temporary: this elementwise pass dominates CROWN on conv nets
        r: ElementwiseRelaxation = relaxation
        b, s = a.shape[:2]
        flat = a.reshape(b, s, -1)
        pos = flat.clamp(min=0)
        ub, lb = r.upper_bias.reshape(b, -1), r.lower_bias.reshape(b, -1)
        const = torch.einsum("bsn,bn->bs", flat, ub) + torch.einsum("bsn,bn->bs", pos, lb - ub)
        us = r.upper_slope.reshape(b, 1, -1)
        coef = pos.mul_(r.lower_slope.reshape(b, 1, -1) - us).addcmul_(flat, us)
        return coef.reshape(a.shape), const

    def unstable(self, lower: Tensor, upper: Tensor) -> Tensor:
        """(B, *shape) bool: units whose interval crosses a kink (relaxation not exact)."""
        cap = self.cap.to(lower.device, lower.dtype)
        return ((lower < 0) & (upper > 0)) | ((lower < cap) & (upper > cap))


class MaxPool(Op):
    """``nn.MaxPool2d`` (no ceil mode): (B, C, H, W) -> (B, C, H', W'); DeepPoly backward."""

    nonlinear = True

    def __init__(
        self, name: str, pool: nn.MaxPool2d, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
    ) -> None:
        super().__init__(name, in_shape, out_shape)

        def pair(v: Any) -> tuple[int, int]:
            return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))

        self.kernel, self.padding = pair(pool.kernel_size), pair(pool.padding)
        self.stride, self.dilation = pair(pool.stride), pair(pool.dilation)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel, self.stride, self.padding, self.dilation)

    def ibp(self, lower: Tensor, upper: Tensor) -> Bounds:
        return self.forward(lower), self.forward(upper)

    def relax(self, lower: Tensor, upper: Tensor, slopes: str = "area") -> PoolRelaxation:
        return maxpool_relaxation(
            lower, upper, self.kernel, self.stride, self.padding, self.dilation
        )

    def backward(self, a: Tensor, relaxation: Any) -> tuple[Tensor, Tensor]:
        r: PoolRelaxation = relaxation
        b, s, c = a.shape[:3]
        flat = a.reshape(b, s, c, -1)
        coef = torch.where(r.exact.unsqueeze(1), flat, flat.clamp(min=0))
        loose_upper = torch.where(r.exact, torch.zeros_like(r.upper), r.upper)  # (b, c, L)
        const = torch.einsum("bscl,bcl->bs", flat.clamp(max=0), loose_upper)
        plane = math.prod(self.in_shape[1:])
        out = flat.new_zeros(b, s, c, plane)
        out.scatter_add_(3, r.index.unsqueeze(1).expand(b, s, c, -1), coef)
        return out.reshape(b, s, *self.in_shape), const
