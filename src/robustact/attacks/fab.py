"""FAB (Croce & Hein 2020): the fast adaptive boundary attack, untargeted and FAB-T.

FAB is a *minimum-norm* attack. At each iterate ``x_k`` it linearises the classifier,
takes the closest linearised decision boundary (class ``j != y`` minimising
``|f_j| / ||grad f_j||_*`` with ``f_j = z_j - z_y`` and ``*`` the dual norm; FAB-T uses the
one boundary towards its target class), and projects both ``x_k`` and the original ``x``
onto that hyperplane intersected with the box [0, 1]^d (:func:`project_hyperplane_box`).
The next iterate is a convex combination of the two overshot projections,

    x_{k+1} = clip((1 - a) (x_k + eta d_k) + a (x + eta d_0)),
    a = min(||d_k|| / (||d_k|| + ||d_0||), alpha_max),

which biases the step towards the original point. When ``x_{k+1}`` is misclassified it is
recorded if closer than the best so far and pulled back, ``x_{k+1} <- x + beta (x_{k+1} - x)``.

Under a fixed ``eps`` (as AutoAttack uses it) a point counts as fooled when FAB found a
misclassified point within ``eps``; such a point stops iterating (its success cannot change:
the best norm only decreases), the others run all ``steps``. Defaults are AutoAttack's:
100 steps, ``alpha_max`` 0.1, ``eta`` 1.05, ``beta`` 0.9; FAB-T tries the 9 most likely wrong
classes with one run each, the first run of each without a random start.

:func:`fab` is the functional core (returns :class:`MinNormResult`); :class:`FAB` is the
:class:`~robustact.attacks.base.Attack` wrapper registered as ``fab`` (and ``fab-t``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robustact._validate import check_float, check_int
from robustact.attacks.base import ATTACKS, Attack, AttackResult
from robustact.attacks.engine import target_classes
from robustact.attacks.threat import canonical_norm

__all__ = ["FAB", "FABT", "MinNormResult", "fab", "project_hyperplane_box"]


@dataclass(frozen=True)
class MinNormResult:
    """What a minimum-norm attack found for each of N points.

    Attributes:
        x_adv: (N, ...) the closest misclassified point found (``x`` where none was).
        success: bool (N,) a misclassified point was found (within ``eps`` if one was set).
        norms: (N,) ``||x_adv - x||`` of the found point; 0 for points misclassified
            already, ``inf`` where nothing was found.
        queries: int64 (N,) forward passes spent on each point (a gradient pass counts one).
    """

    x_adv: Tensor
    success: Tensor
    norms: Tensor
    queries: Tensor


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def _dist(d: Tensor, norm: str) -> Tensor:
    """Per-row norm (N,) of (N, ...)."""
    flat = d.flatten(1)
    return flat.abs().amax(1) if norm == "Linf" else flat.norm(dim=1)


def project_hyperplane_box(t: Tensor, w: Tensor, b: Tensor, norm: str) -> Tensor:
    """Minimal-norm ``d`` with ``w . (t + d) = b`` and ``t + d`` in [0, 1]^D, per row.

    Both norms share one structure: moving coordinate i towards the hyperplane changes
    ``w . d`` by ``min(lam * a_i, cap_i)`` with ``cap_i = |w_i| * room_i`` (room to the box
    in the helpful direction) and ``a_i = |w_i|`` (Linf: every coordinate moves by
    ``min(lam, room_i)``) or ``w_i**2`` (L2: moves by ``min(lam |w_i|, room_i)``). The sum
    ``G(lam)`` is piecewise linear, concave and non-decreasing, so Newton's method from
    ``lam = 0`` climbs monotonically and is exact once it reaches the root's linear piece
    (two or three steps in practice); rows still short after a few steps are solved
    exactly by sorting the breakpoints ``cap_i / a_i``. When the box makes the hyperplane
    unreachable, ``d`` goes to the box corner that gets closest.

    Args:
        t: points (M, D) in [0, 1]; w: normals (M, D); b: offsets (M,).
        norm: ``"Linf"`` or ``"L2"``.

    Returns:
        d (M, D).
    """
    c = b - (w * t).sum(1)
    sgn = torch.where(c < 0, -1.0, 1.0).to(t.dtype)
    c = c * sgn
    ws = w * sgn[:, None]  # now w . d must grow by c >= 0: move along sign(ws)
    aw = ws.abs()
    cap = aw * torch.where(ws > 0, 1.0 - t, t)
    a = aw if norm == "Linf" else aw * aw
    lam = _newton_lambda(a, cap, c)
    # a coordinate with w_i = 0 has a_i = cap_i = 0 and sign 0: it does not move
    return torch.minimum(lam[:, None] * a, cap).div_(aw.clamp_min(1e-30)).mul_(ws.sign())


def _newton_lambda(a: Tensor, cap: Tensor, c: Tensor, steps: int = 8) -> Tensor:
    """The ``lam`` (M,) solving ``sum_i min(lam a_i, cap_i) = c`` (or all capped if none)."""
    lam = torch.zeros_like(c)
    tol = 1e-6 * c
    todo = torch.ones_like(c, dtype=torch.bool)
    for _ in range(steps):
        lin = lam[:, None] * a
        gap = c - torch.minimum(lin, cap).sum(1)
        slope = (a * (lin < cap)).sum(1)
        todo = (gap > tol) & (slope > 0)
        if not bool(todo.any()):
            return lam
        lam = torch.where(todo, lam + gap / slope.clamp_min(1e-30), lam)
    rows = torch.nonzero(todo).squeeze(1)
    lam[rows] = _sorted_lambda(a[rows], cap[rows], c[rows])
    return lam


def _sorted_lambda(a: Tensor, cap: Tensor, c: Tensor) -> Tensor:
    """:func:`_newton_lambda` exactly, by sorting the breakpoints ``cap_i / a_i``."""
    brk = torch.where(a > 0, cap / a.clamp_min(1e-30), torch.zeros_like(a))
    brk_s, order = brk.sort(dim=1)
    a_s, cap_s = a.gather(1, order), cap.gather(1, order)
    cap_cum = cap_s.cumsum(1)
    a_tail = a_s.sum(1, keepdim=True) - a_s.cumsum(1)  # sum of a_j over j after k
    reach = cap_cum + brk_s * a_tail  # G at lam = brk_k: non-decreasing in k
    k = (reach < c[:, None]).sum(1, keepdim=True)  # first breakpoint reaching c
    feasible = k.squeeze(1) < a.shape[1]
    kk = k.clamp(max=a.shape[1] - 1)
    cap_before = torch.where(kk > 0, cap_cum.gather(1, (kk - 1).clamp_min(0)), 0.0)
    a_from = a_tail.gather(1, kk) + a_s.gather(1, kk)
    lam = (c[:, None] - cap_before) / a_from.clamp_min(1e-30)
    return torch.where(feasible[:, None], lam, brk_s[:, -1:]).squeeze(1)


def _jacobian(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Logits (n, K) and their input Jacobian (n, K, D) in one batched backward."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        z = model(xg)
        k = z.shape[1]
        eye = torch.eye(k, device=x.device, dtype=z.dtype)[:, None, :].expand(k, *z.shape)
        try:
            (jac,) = torch.autograd.grad(z, xg, eye, is_grads_batched=True)
        except RuntimeError:  # a layer vmap cannot batch: one backward per class
            rows = [
                torch.autograd.grad(z[:, j].sum(), xg, retain_graph=j < k - 1)[0] for j in range(k)
            ]
            jac = torch.stack(rows)
    return z.detach(), jac.transpose(0, 1).flatten(2)


def _boundary(
    model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None, norm: str
) -> tuple[Tensor, Tensor]:
    """The linearised boundary FAB projects on: ``f`` (n,) and its gradient ``g`` (n, D).

    Untargeted: the class ``j != y`` whose linearised boundary ``z_j - z_y = 0`` is closest
    in the attack's norm; targeted: the boundary towards ``target``.
    """
    n = x.shape[0]
    rows = torch.arange(n, device=x.device)
    if target is not None:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            z = model(xg)
            f = z[rows, target] - z[rows, y]
            (g,) = torch.autograd.grad(f.sum(), xg)
        return f.detach(), g.flatten(1)
    z, jac = _jacobian(model, x)
    df = z - z[rows, y][:, None]
    dg = jac - jac[rows, y][:, None]
    dual = dg.abs().sum(2) if norm == "Linf" else dg.norm(dim=2)
    closeness = df.abs() / (dual + 1e-12)
    closeness[rows, y] = float("inf")
    j = closeness.argmin(1)
    return df[rows, j], dg[rows, j]


@dataclass(frozen=True)
class _Cfg:
    norm: str
    steps: int
    alpha_max: float
    eta: float
    beta: float
    eps: float | None


def _run(
    model: nn.Module, x0: Tensor, y: Tensor, start: Tensor, target: Tensor | None, cfg: _Cfg
) -> tuple[Tensor, Tensor, Tensor]:
    """One FAB run from ``start``: (best x_adv (n, ...), best norm (n,), queries (n,))."""
    n = x0.shape[0]
    best = torch.full((n,), math.inf, device=x0.device, dtype=x0.dtype)
    best_x = x0.clone()
    queries = torch.zeros(n, dtype=torch.int64, device=x0.device)
    act = torch.arange(n, device=x0.device)
    xk, xo, ya = start.clone(), x0, y
    ta = target
    for _ in range(cfg.steps):
        f, g = _boundary(model, xk, ya, ta, cfg.norm)
        m = xk.shape[0]
        pts = torch.cat((xk.flatten(1), xo.flatten(1)))
        b = (g * xk.flatten(1)).sum(1) - f
        d = project_hyperplane_box(pts, torch.cat((g, g)), torch.cat((b, b)), cfg.norm)
        size = _dist(d, cfg.norm).clamp_min(1e-8)
        alpha = (size[:m] / (size[:m] + size[m:])).clamp(0.0, cfg.alpha_max)
        d1, d2 = d[:m].view_as(xk), d[m:].view_as(xk)
        al = _bcast(alpha, xk)
        xk = ((xk + cfg.eta * d1) * (1 - al) + (xo + cfg.eta * d2) * al).clamp_(0.0, 1.0)
        with torch.no_grad():
            adv = model(xk).argmax(1) != ya
        queries[act] += 2
        dist = _dist(xk - xo, cfg.norm)
        better = adv & (dist < best[act])
        if bool(better.any()):
            idx = act[better]
            best[idx], best_x[idx] = dist[better], xk[better]
        xk = torch.where(_bcast(adv, xk), xo + cfg.beta * (xk - xo), xk)
        if cfg.eps is not None:  # at a fixed radius a point within eps is done
            keep = ~(best[act] <= cfg.eps)
            if not bool(keep.all()):
                act, xk, xo, ya = act[keep], xk[keep], xo[keep], ya[keep]
                ta = None if ta is None else ta[keep]
                if act.numel() == 0:
                    break
    return best_x, best, queries


def _random_start(x: Tensor, radius: Tensor, norm: str, gen: torch.Generator) -> Tensor:
    """A point at distance ``radius / 2`` (per sample, (n,)) from ``x``, clipped to the box."""
    if norm == "Linf":
        t = 2 * torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) - 1
    else:
        t = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    t = t / _bcast(_dist(t, norm).clamp_min(1e-12), x)
    return (x + 0.5 * _bcast(radius, x) * t).clamp(0.0, 1.0)


def fab(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    norm: str = "Linf",
    eps: float | None = None,
    steps: int = 100,
    restarts: int = 1,
    targeted: bool = False,
    n_target_classes: int = 9,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    start_radius: float | None = None,
    generator: torch.Generator | None = None,
    clean_logits: Tensor | None = None,
) -> MinNormResult:
    """FAB on ``model`` at ``(x (N, ...), y (N,))``; the model should be in eval mode.

    Args:
        norm: ``"Linf"`` or ``"L2"``.
        eps: fixed radius: success means a misclassified point within ``eps``; points stop
            once they have one, and later runs attack only the rest. ``None``: minimum-norm
            mode, every run on every point, keeping the smallest norm.
        steps: iterations per run; restarts: runs per target (the first from ``x``, later
            ones from a random point at half ``min(best, start_radius)``).
        targeted: FAB-T, one run set towards each of the ``n_target_classes`` most likely
            wrong classes (success is still misclassification).
        alpha_max, eta, beta: bias towards ``x``, overshoot, backward step after success.
        start_radius: radius of random restarts (default ``eps``, else 0.3 Linf / 1.0 L2).
        generator: randomness of restarts; clean_logits: (N, K) if already computed.

    Returns:
        :class:`MinNormResult`.
    """
    norm = canonical_norm(norm)
    cfg = _Cfg(norm, steps, alpha_max, eta, beta, eps)
    with torch.no_grad():
        clean = model(x) if clean_logits is None else clean_logits
    n = x.shape[0]
    queries = torch.ones(n, dtype=torch.int64, device=x.device)
    wrong = clean.argmax(1) != y
    norms = torch.where(wrong, 0.0, math.inf).to(x.dtype)
    x_adv = x.clone()
    radius = start_radius if start_radius is not None else eps
    radius = radius if radius is not None else (0.3 if norm == "Linf" else 1.0)
    ranks: list[int | None] = [None]
    if targeted:
        ranks = list(range(1, min(n_target_classes, clean.shape[1] - 1) + 1))
    for rank in ranks:
        for r in range(restarts):
            found = norms <= eps if eps is not None else wrong
            todo = torch.nonzero(~found).squeeze(1)
            if todo.numel() == 0:
                break
            xs, ys = x[todo], y[todo]
            start = xs
            if r > 0:
                rad = norms[todo].clamp(max=radius)
                start = _random_start(xs, rad, norm, generator or torch.Generator(x.device))
            tgt = None if rank is None else target_classes(clean[todo], ys, rank)
            adv, dist, q = _run(model, xs, ys, start, tgt, cfg)
            queries[todo] += q
            better = dist < norms[todo]
            norms[todo[better]] = dist[better]
            x_adv[todo[better]] = adv[better]
    success = norms <= eps if eps is not None else torch.isfinite(norms)
    if eps is not None:  # AutoAttack: a point found beyond eps is not an adversarial example
        x_adv = torch.where(_bcast(success, x), x_adv, x)
    return MinNormResult(x_adv, success, norms, queries)


@ATTACKS.register("fab")
class FAB(Attack):
    """FAB: at a fixed radius a point is fooled when FAB finds one within ``eps``;
    with ``eps=math.inf`` it is the minimum-norm attack (every run on every correct point,
    keeping the closest misclassified point).

    ``run`` returns the :class:`~robustact.attacks.base.AttackResult` with
    ``info["norms"]`` (N,): the norm of the closest misclassified point found (0 for
    points misclassified already, ``inf`` where none was found, also beyond ``eps``).

    Args:
        eps: radius (``math.inf``: minimum-norm mode); norm: ``"Linf"`` or ``"L2"``.
        steps: iterations per run (AutoAttack: 100).
        restarts: runs per target; the first starts at ``x``, later ones at random points.
        targeted: FAB-T over the ``n_target_classes`` most likely wrong classes.
        n_target_classes: how many target classes FAB-T tries (AutoAttack: 9).
        alpha_max, eta, beta: FAB's step parameters (AutoAttack: 0.1, 1.05, 0.9).
        seed: seed of the random restarts.
    """

    name = "fab"
    unbounded = True

    def __init__(
        self,
        *,
        eps: float,
        norm: str = "Linf",
        steps: int = 100,
        restarts: int = 1,
        targeted: bool = False,
        n_target_classes: int = 9,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        seed: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, seed=seed)
        self.steps = check_int("steps", steps, 1)
        self.restarts = check_int("restarts", restarts, 1)
        self.targeted = bool(targeted)
        self.n_target_classes = check_int("n_target_classes", n_target_classes, 1)
        self.alpha_max = check_float("alpha_max", alpha_max, 0.0)
        if self.alpha_max > 1:
            raise ValueError(f"alpha_max must lie in [0, 1], got {alpha_max!r}")
        self.eta = check_float("eta", eta, 1.0)
        self.beta = check_float("beta", beta, 0.0)
        if not 0 < self.beta < 1:
            raise ValueError(f"beta must lie in (0, 1), got {beta!r}")

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        clean = self.logits(model, x)
        if self.targeted and clean.shape[1] < 2:
            raise ValueError("FAB-T needs at least 2 classes")
        res = fab(
            model,
            x,
            y,
            norm=self.norm,
            eps=None if math.isinf(self.eps) else self.eps,
            steps=self.steps,
            restarts=self.restarts,
            targeted=self.targeted,
            n_target_classes=self.n_target_classes,
            alpha_max=self.alpha_max,
            eta=self.eta,
            beta=self.beta,
            generator=self.generator(x.device),
            clean_logits=clean,
        )
        norms = torch.where(res.success, res.norms, math.inf)
        return AttackResult(res.x_adv, res.success, res.queries, {"norms": norms})


@ATTACKS.register("fab-t")
class FABT(FAB):
    """FAB-T: targeted FAB over the ``n_target_classes`` most likely wrong classes."""

    name = "fab-t"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"targeted": True, **kwargs})
