"""Square Attack (Andriushchenko et al., ECCV 2020): a gradient-free, score-based attack.

Random search over localised square updates of the perturbation, accepted when they lower
the margin ``z_y - max_{j != y} z_j`` (or raise the cross-entropy). It needs no gradient, so
capped activations (zero gradients) and random activations (noisy gradients) cannot mask it:
it is the gradient-free column of the adaptive protocol.

Written from the paper's description. Differences from the PyTorch reference kept in the
AutoAttack package, all deliberate:

* each point draws its own square position and signs (the paper and its NumPy code do this;
  the PyTorch port shares one position across the batch);
* a proposal is accepted whenever it improves the loss *or* fools the model, so a
  misclassifying point is never discarded when the loss is cross-entropy;
* with ``eot > 1`` every query averages the loss over ``eot`` stochastic forward passes and
  the "fooled" decision uses the averaged logits (a point is fooled iff the mean logits
  misclassify it, strictly);
* a point counts as fooled only when its margin is strictly negative (a tie keeps it queued).

Query accounting: one *query* is one evaluation of a batch of candidate points (``eot``
forward passes with ``eot > 1``). Every point is first checked on the clean input (one
query); each restart then spends at most ``queries`` queries on each point still not fooled
(one on the random start, ``queries - 1`` on square updates). The result's ``queries`` (N,)
records the queries spent per point, so ``queries <= 1 + restarts * queries``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from robustact._validate import check_int
from robustact.attacks.base import ATTACKS, Attack, AttackResult
from robustact.attacks.losses import get_loss, margin

__all__ = ["Square", "p_schedule"]

# Sign redraws allowed when a Linf proposal would leave the point unchanged.
_REDRAWS = 4

# The reference halves p after these iteration counts of a 10 000-query run.
_P_BOUNDARIES = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)

#: ``forward(x (n, C, H, W), y (n,)) -> (mean logits (n, K), mean loss to minimise (n,))``
_Query = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def p_schedule(p_init: float, it: int, n_iters: int) -> float:
    """Fraction of pixels a square covers at iteration ``it`` of ``n_iters``.

    The published piecewise-constant schedule, defined for 10 000 iterations and rescaled
    to ``n_iters`` as in the reference implementation: p halves after iterations
    10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 (of 10 000).
    """
    scaled = int(it / max(n_iters, 1) * 10000)
    halvings = sum(scaled > b for b in _P_BOUNDARIES)
    return p_init / (2**halvings)


def _margin_neg(logits: Tensor, y: Tensor) -> Tensor:
    """``z_y - max_{j != y} z_j`` (N,): negative iff the point is misclassified."""
    return -margin(logits, y)


def _windows(
    n: int, s: int, h: int, w: int, gen: torch.Generator | None, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Per-sample top-left corners (n,), (n,) of an s x s window inside an h x w image."""
    vh = torch.randint(0, h - s + 1, (n,), generator=gen, device=device)
    vw = torch.randint(0, w - s + 1, (n,), generator=gen, device=device)
    return vh, vw


def _window_index(vh: Tensor, vw: Tensor, s: int, c: int) -> tuple[Tensor, ...]:
    """Advanced-index tuple selecting the (n, c, s, s) windows at corners (vh, vw)."""
    dev = vh.device
    ar = torch.arange(s, device=dev)
    rows = (vh[:, None] + ar)[:, None, :, None]
    cols = (vw[:, None] + ar)[:, None, None, :]
    ni = torch.arange(vh.shape[0], device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return ni, ci, rows, cols


def _window_mask(vh: Tensor, vw: Tensor, s: int, h: int, w: int) -> Tensor:
    """Boolean (n, 1, h, w) mask of the s x s windows at corners (vh, vw)."""
    r = torch.arange(h, device=vh.device)[None, :]
    q = torch.arange(w, device=vh.device)[None, :]
    in_r = (r >= vh[:, None]) & (r < vh[:, None] + s)
    in_c = (q >= vw[:, None]) & (q < vw[:, None] + s)
    return (in_r[:, :, None] & in_c[:, None, :])[:, None]


def _random_sign(shape: tuple[int, ...], gen: torch.Generator | None, like: Tensor) -> Tensor:
    bits = torch.randint(0, 2, shape, generator=gen, device=like.device)
    return (2 * bits - 1).to(like.dtype)


def _rings(a: int, b: int, like: Tensor) -> Tensor:
    """(a, b) bump of nested rectangles around the centre, ring k weighted sum_{j>=k} 1/(j+1)^2.

    Unit L2 norm; the building block of the L2 attack's pseudo-Gaussian square.
    """
    n_rings = max(a // 2 + 1, b // 2 + 1)
    ii = torch.arange(a, device=like.device)[:, None]
    jj = torch.arange(b, device=like.device)[None, :]
    ring = torch.maximum((ii - a // 2).abs(), (jj - b // 2).abs())
    weights = 1.0 / torch.arange(1, n_rings + 1, device=like.device, dtype=like.dtype) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[k] = sum_{j >= k} weights[j]
    out = tail[ring]
    return out / out.norm().clamp_min(1e-12)


def _pseudo_gaussian(s: int, n: int, gen: torch.Generator | None, like: Tensor) -> Tensor:
    """(n, 1, s, s) unit-norm squares: a positive bump over a negative one, randomly
    transposed per sample (the L2 attack's update shape)."""
    top = s // 2
    pat = torch.zeros(s, s, device=like.device, dtype=like.dtype)
    if top > 0:
        pat[:top] = _rings(top, s, like)
    pat[top:] = -_rings(s - top, s, like)
    pat = pat / pat.norm().clamp_min(1e-12)
    flip = torch.rand(n, generator=gen, device=like.device) > 0.5
    pats = torch.where(flip[:, None, None], pat.t(), pat)
    return pats[:, None]


def _l2_normalise(t: Tensor) -> Tensor:
    return t / t.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(-1, 1, 1, 1)


class _Run:
    """One restart of the Square Attack on a batch; holds the per-point state."""

    def __init__(
        self, query: _Query, x: Tensor, y: Tensor, eps: float, p_init: float, resample: bool
    ) -> None:
        self.query, self.x, self.y, self.eps, self.p_init = query, x, y, eps, p_init
        self.resample = resample
        n = x.shape[0]
        self.queries = torch.zeros(n, dtype=torch.long, device=x.device)
        self.x_best = x.clone()
        self.margin = torch.full((n,), math.inf, device=x.device, dtype=x.dtype)
        self.loss = torch.full((n,), math.inf, device=x.device, dtype=x.dtype)

    def start(self, x0: Tensor) -> None:
        logits, loss = self.query(x0, self.y)
        self.x_best, self.margin, self.loss = x0, _margin_neg(logits, self.y), loss
        self.queries += 1

    def offer(self, idx: Tensor, x_new: Tensor) -> None:
        """Query candidates for points ``idx`` and keep those that improve or fool."""
        logits, loss = self.query(x_new, self.y[idx])
        m = _margin_neg(logits, self.y[idx])
        better = (loss < self.loss[idx]) | (m < 0)
        sel = idx[better]
        self.loss[sel] = loss[better]
        self.margin[sel] = m[better]
        self.x_best[sel] = x_new[better]
        self.queries[idx] += 1


def _resample_noops(
    xb: Tensor,
    lo: Tensor,
    hi: Tensor,
    mask: Tensor,
    eps: float,
    signs: Tensor,
    gen: torch.Generator | None,
) -> Tensor:
    """Signs (k, c, 1, 1) whose Linf square update changes every point.

    A window already sitting on the corner the signs point to would cost a query for
    nothing. Those points redraw their signs a few times (uniform over the useful sign
    vectors, as the paper's code intends) and any still stuck flip all signs: the opposite
    corner always differs when eps > 0.
    """

    def noop(i: Tensor) -> Tensor:
        prop = torch.min(torch.max(xb[i] + 2 * eps * signs[i], lo[i]), hi[i])
        return ((prop - xb[i]).abs() * mask[i]).flatten(1).amax(dim=1) < 1e-7

    stuck = torch.arange(xb.shape[0], device=xb.device)
    for _ in range(_REDRAWS):
        stuck = stuck[noop(stuck)]
        if stuck.numel() == 0:
            return signs
        signs[stuck] = _random_sign((stuck.numel(), *signs.shape[1:]), gen, signs)
    stuck = stuck[noop(stuck)]
    signs[stuck] = -signs[stuck]
    return signs


def _run_linf(run: _Run, iters: int, gen: torch.Generator | None) -> None:
    x, eps = run.x, run.eps
    n, c, h, w = x.shape
    stripes = _random_sign((n, c, 1, w), gen, x)
    run.start((x + eps * stripes).clamp(0.0, 1.0))
    n_features = c * h * w
    for it in range(iters):
        idx = (run.margin >= 0).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        xc, xb = x[idx], run.x_best[idx]
        k = idx.numel()
        p = p_schedule(run.p_init, it, iters)
        s = min(max(round(math.sqrt(p * n_features / c)), 1), min(h, w) - 1)
        vh, vw = _windows(k, s, h, w, gen, x.device)
        mask = _window_mask(vh, vw, s, h, w)
        lo, hi = (xc - eps).clamp_min(0.0), (xc + eps).clamp_max(1.0)
        signs = _random_sign((k, c, 1, 1), gen, x)
        if run.resample:
            signs = _resample_noops(xb, lo, hi, mask, eps, signs, gen)
        x_new = torch.where(mask, torch.min(torch.max(xb + 2 * eps * signs, lo), hi), xb)
        run.offer(idx, x_new)


def _l2_init(x: Tensor, eps: float, gen: torch.Generator | None) -> Tensor:
    """A 5 x 5 grid of pseudo-Gaussian squares with random signs, scaled to norm eps."""
    n, c, h, w = x.shape
    s = max(h // 5, 1)
    start = (h - 5 * s) // 2 if h >= 5 else 0
    delta = torch.zeros_like(x)
    for vh in range(start, h - s + 1, s):
        for vw in range(start, w - s + 1, s):
            pats = _pseudo_gaussian(s, n, gen, x) * _random_sign((n, c, 1, 1), gen, x)
            delta[:, :, vh : vh + s, vw : vw + s] += pats
    return (x + eps * _l2_normalise(delta)).clamp(0.0, 1.0)


def _run_l2(run: _Run, iters: int, gen: torch.Generator | None) -> None:
    x, eps = run.x, run.eps
    _, c, h, w = x.shape
    run.start(_l2_init(x, eps, gen))
    n_features = c * h * w
    for it in range(iters):
        idx = (run.margin >= 0).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        xc = x[idx]
        delta = run.x_best[idx] - xc
        k = idx.numel()
        p = p_schedule(run.p_init, it, iters)
        s = max(round(math.sqrt(p * n_features / c)), 3)
        s = min(s + (s % 2 == 0), min(h, w))  # odd sides centre the bump
        vh, vw = _windows(k, s, h, w, gen, x.device)
        vh2, vw2 = _windows(k, s, h, w, gen, x.device)
        win1, win2 = _window_index(vh, vw, s, c), _window_index(vh2, vw2, s, c)
        union = _window_mask(vh, vw, s, h, w) | _window_mask(vh2, vw2, s, h, w)
        old1 = delta[win1]  # (k, c, s, s)
        norm_w1 = old1.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt()
        norm_img = delta.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
        norm_union = (delta * union).flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
        new = _pseudo_gaussian(s, k, gen, x) * _random_sign((k, c, 1, 1), gen, x)
        new = new + old1 / (norm_w1 + 1e-12)
        # Move the mass of both windows (plus any unused budget) into window 1.
        budget = ((eps**2 - norm_img**2).clamp_min(0.0) / c + norm_union**2).sqrt()
        new = new / new.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt().clamp_min(1e-12) * budget
        delta[win2] = 0.0
        delta[win1] = new
        run.offer(idx, (xc + eps * _l2_normalise(delta)).clamp(0.0, 1.0))


@ATTACKS.register("square")
class Square(Attack):
    """Square Attack, Linf or L2, untargeted, with optional EOT.

    Args:
        eps: radius of the threat model in pixel units.
        norm: ``"Linf"`` or ``"L2"``.
        queries: query budget per point and restart (>= 2), including the random start.
        p_init: initial fraction of pixels changed per update (0 < p_init <= 1).
        restarts: independent runs; each attacks only the points still not fooled.
        eot: stochastic forward passes averaged per query (>= 1).
        seed: seed of the attack's random generator (same seed, same output).
        loss: ``"margin"`` (minimise ``z_y - max_{j != y} z_j``) or ``"ce"`` (maximise CE).
        resample: Linf only: redraw the signs of a square update that would leave the point
            unchanged (sitting on that corner already) instead of spending a query on it.
            The paper's code intends this; AutoAttack's PyTorch port does not, so
            ``resample=False`` reproduces its (weaker per query) behaviour.

    :meth:`run` gives ``queries`` (N,) int64 queries spent per point (clean check
    included) and ``success`` (N,) bool, whether the (mean) logits misclassify the
    returned point. Inputs must be images (N, C, H, W) with H, W >= 2.
    """

    name = "square"

    def __init__(
        self,
        *,
        eps: float,
        norm: str = "Linf",
        queries: int = 5000,
        p_init: float = 0.8,
        restarts: int = 1,
        eot: int = 1,
        seed: int | None = None,
        loss: str = "margin",
        resample: bool = True,
    ) -> None:
        super().__init__(eps=eps, norm=norm, seed=seed)
        self.queries = check_int("queries", queries, 2)
        self.restarts = check_int("restarts", restarts, 1)
        self.eot = check_int("eot", eot, 1)
        if not 0.0 < float(p_init) <= 1.0:
            raise ValueError(f"Square p_init must be in (0, 1], got {p_init!r}")
        if loss not in ("margin", "ce"):
            raise ValueError(f"Square loss must be 'margin' or 'ce', got {loss!r}")
        self.p_init, self.loss, self.resample = float(p_init), loss, bool(resample)
        self._loss_fn = get_loss(loss)

    def _query_fn(self, model: nn.Module) -> _Query:
        loss_fn, eot = self._loss_fn, self.eot

        @torch.no_grad()
        def query(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            logits_sum: Tensor | None = None
            loss_sum: Tensor | None = None
            for _ in range(eot):
                z = model(x)
                neg = -loss_fn(z, y, None)  # minimised
                logits_sum = z if logits_sum is None else logits_sum + z
                loss_sum = neg if loss_sum is None else loss_sum + neg
            assert logits_sum is not None and loss_sum is not None
            return logits_sum / eot, loss_sum / eot

        return query

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        """Run the attack; x (N, C, H, W) in [0, 1], y (N,) -> result, x_adv (N, C, H, W)."""
        if x.dim() != 4 or min(x.shape[-2:]) < 2:
            raise ValueError(
                f"Square needs images (N, C, H, W) with H, W >= 2, got shape {tuple(x.shape)}; "
                "reshape flat inputs to (N, 1, H, W)"
            )
        gen = self.generator(x.device)
        query = self._query_fn(model)
        eps = float(self.eps)
        n = x.shape[0]
        queries = torch.ones(n, dtype=torch.long, device=x.device)  # the clean check
        logits = self.logits(model, x, eot=self.eot)  # also checks labels against the width
        margin_best = _margin_neg(logits, y)
        x_adv = x.clone()
        runner = _run_linf if self.norm == "Linf" else _run_l2
        for _ in range(self.restarts):
            idx = (margin_best >= 0).nonzero().squeeze(1)
            if idx.numel() == 0 or eps == 0.0:
                break
            run = _Run(query, x[idx], y[idx], eps, self.p_init, self.resample)
            runner(run, self.queries - 1, gen)
            queries[idx] += run.queries
            # keep the lowest-margin point over restarts (fooled ones are never replaced)
            better = run.margin < margin_best[idx]
            margin_best[idx[better]] = run.margin[better]
            x_adv[idx[better]] = run.x_best[better]
        return AttackResult(x_adv, margin_best < 0, queries)
