"""Exact minimum margins of tiny networks over an Linf ball ∩ [0, 1], by scipy's MILP solver.

The oracle is independent of robustact.certify: affine layers (any module f with
f(x) = M x + c, found by evaluating f on basis vectors in float64), big-M encodings of
``max(v, 0)`` (ReLU), ``min(max(v, 0), m) = m - max(m - max(v, 0), 0)`` (S-ReLU, D-ReLU)
and max pooling, with big-M constants from its own interval arithmetic.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from scipy.optimize import Bounds, LinearConstraint, milp
from torch import nn

from robustact.activations import DReLU, SReLU


class _Program:
    def __init__(self) -> None:
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.integer: list[int] = []
        self.rows: list[dict[int, float]] = []
        self.rlo: list[float] = []
        self.rhi: list[float] = []

    def var(self, lo: float, hi: float, integer: bool = False) -> int:
        self.lo.append(lo)
        self.hi.append(hi)
        self.integer.append(int(integer))
        return len(self.lo) - 1

    def cons(self, coef: dict[int, float], lo: float, hi: float) -> None:
        self.rows.append(coef)
        self.rlo.append(lo)
        self.rhi.append(hi)

    def relu(self, v: int) -> int:
        lo, hi = self.lo[v], self.hi[v]
        if hi <= 0:
            return self.var(0.0, 0.0)
        if lo >= 0:
            return v
        a, d = self.var(0.0, hi), self.var(0.0, 1.0, integer=True)
        self.cons({a: 1.0, v: -1.0}, 0.0, math.inf)  # a >= v
        self.cons({a: 1.0, v: -1.0, d: -lo}, -math.inf, -lo)  # a <= v - lo (1 - d)
        self.cons({a: 1.0, d: -hi}, -math.inf, 0.0)  # a <= hi d
        return a

    def affine_of(self, v: int, scale: float, const: float) -> int:
        """A new variable equal to scale * v + const."""
        lo, hi = sorted((scale * self.lo[v] + const, scale * self.hi[v] + const))
        w = self.var(lo, hi)
        self.cons({w: 1.0, v: -scale}, const, const)
        return w

    def clip(self, v: int, m: float) -> int:
        r = self.relu(v)
        return self.affine_of(self.relu(self.affine_of(r, -1.0, m)), -1.0, m)

    def maximum(self, vs: list[int]) -> int:
        top = max(self.hi[v] for v in vs)
        y = self.var(max(self.lo[v] for v in vs), top)
        picks = [self.var(0.0, 1.0, integer=True) for _ in vs]
        self.cons(dict.fromkeys(picks, 1.0), 1.0, 1.0)
        for v, d in zip(vs, picks, strict=True):
            self.cons({y: 1.0, v: -1.0}, 0.0, math.inf)
            big = top - self.lo[v]
            self.cons({y: 1.0, v: -1.0, d: big}, -math.inf, big)
        return y


def _affine(prog: _Program, module: nn.Module, units: np.ndarray) -> np.ndarray:
    """New variables for module(units) with module affine; units an index array (C, ...)."""
    n = units.size
    with torch.no_grad():
        basis = torch.cat([torch.zeros(1, n), torch.eye(n)]).double()
        out = module(basis.reshape(n + 1, *units.shape))
    c = out[0].flatten().numpy()
    mat = (out[1:] - out[:1]).reshape(n, -1).numpy().T  # (out, in)
    flat = units.flatten()
    lo, hi = np.array(prog.lo)[flat], np.array(prog.hi)[flat]
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    new = []
    for i in range(mat.shape[0]):
        centre, r = mat[i] @ mid + c[i], np.abs(mat[i]) @ rad
        z = prog.var(centre - r - 1e-9, centre + r + 1e-9)
        coef = {z: 1.0}
        for j in np.nonzero(mat[i])[0]:
            coef[int(flat[j])] = coef.get(int(flat[j]), 0.0) - float(mat[i, j])
        prog.cons(coef, float(c[i]), float(c[i]))
        new.append(z)
    return np.array(new).reshape(out.shape[1:])


def _layer(prog: _Program, m: nn.Module, units: np.ndarray) -> np.ndarray:
    if isinstance(m, nn.ReLU):
        return np.vectorize(prog.relu, otypes=[np.int64])(units)
    if isinstance(m, SReLU):
        return np.vectorize(lambda v: prog.clip(v, m.max_value), otypes=[np.int64])(units)
    if isinstance(m, DReLU):
        caps = m.max_value.detach().clamp(min=0).double().numpy()
        out = np.empty_like(units)
        for idx in np.ndindex(units.shape):
            out[idx] = prog.clip(int(units[idx]), float(caps[idx[0]]))
        return out
    if isinstance(m, nn.MaxPool2d):
        k = int(m.kernel_size) if isinstance(m.kernel_size, int) else m.kernel_size[0]
        c, h, w = units.shape
        out = np.empty((c, h // k, w // k), dtype=units.dtype)
        for ch, i, j in np.ndindex(out.shape):
            window = units[ch, i * k : (i + 1) * k, j * k : (j + 1) * k].flatten().tolist()
            out[ch, i, j] = prog.maximum(window)
        return out
    if isinstance(m, nn.Flatten):
        return units.flatten()
    return _affine(prog, m, units)


def exact_margins(
    net: nn.Sequential, x0: torch.Tensor, y: int, eps: float
) -> tuple[np.ndarray, int]:
    """Exact min over ||x - x0||_inf <= eps, x in [0, 1] of logit_y - logit_j, per class j
    (inf at j = y), and the number of binary variables the encoding needed. Each optimum is
    checked by re-evaluating the network at the solver's input."""
    prog = _Program()
    x = x0.double().numpy()
    units = np.vectorize(
        lambda v: prog.var(max(v - eps, 0.0), min(v + eps, 1.0)), otypes=[np.int64]
    )(x)
    n_in = units.size
    net64 = copy.deepcopy(net).double()
    for m in net64:
        units = _layer(prog, m, units)
    logits = units.flatten()
    mat = np.zeros((len(prog.rows), len(prog.lo)))
    for r, coef in enumerate(prog.rows):
        for j, a in coef.items():
            mat[r, j] += a
    cons = LinearConstraint(mat, prog.rlo, prog.rhi)
    result = np.full(len(logits), np.inf)
    for j in range(len(logits)):
        if j == y:
            continue
        cost = np.zeros(len(prog.lo))
        cost[logits[y]] += 1.0
        cost[logits[j]] -= 1.0
        sol = milp(
            cost,
            constraints=cons,
            integrality=np.array(prog.integer),
            bounds=Bounds(prog.lo, prog.hi),
            options={"mip_rel_gap": 1e-10},
        )
        assert sol.status == 0, sol.message
        x_star = torch.tensor(sol.x[:n_in]).reshape(1, *x0.shape)
        with torch.no_grad():
            out = net64(x_star)[0]
        assert abs(float(out[y] - out[j]) - sol.fun) < 1e-6, "MILP encoding disagrees with net"
        result[j] = sol.fun
    return result, sum(prog.integer)
