"""Attacking and judging a random model: the vote rule and the full-budget EOT ascent.

The rule (one for the attacks and the evaluation): on a model whose forward pass is random,
a point is *classified correctly* when its label wins the plurality vote of ``P`` forward
passes (each pass votes for its argmax; a tie with the label counts against the label).
The attacks use ``P = eot`` (the passes they average per gradient); the evaluation uses
``P =`` :data:`VOTE_PASSES` (50) for every decision of a protocol that averages passes
(``eot_samples > 1``: adaptive, autoattack-rand), so a point near a 50 % vote rarely
flips between draws; the paper protocols (one pass per gradient) judge one pass, as the
papers did. A deterministic model is one pass everywhere.

Stopping at the first iterate whose EOT-averaged logits are wrong (what a deterministic
attack does) leaves many points at a vote near 50 %, which a fresh vote classifies
correctly about half the time. :func:`eot_ascent` therefore spends the whole budget on
every point and keeps, per point, the iterate with the fewest correct votes (ties: the
highest EOT-averaged margin), as an attack written by hand for a random defence does.
"""

from __future__ import annotations

from typing import Final

import torch
from torch import Tensor, nn

from robustact.attacks.base import Attack
from robustact.attacks.losses import LossFn

__all__ = ["VOTE_PASSES", "eot_ascent", "vote_pred", "votes"]

#: Forward passes per decision when an evaluation judges a random model.
VOTE_PASSES: Final = 50


def vote_pred(counts: Tensor, y: Tensor) -> Tensor:
    """The plurality class per point from vote ``counts`` (N, K); where the label ties
    with another class the other class wins. int64 (N,)."""
    c = counts.to(torch.float32).clone()
    c.scatter_add_(1, y[:, None], torch.full_like(c[:, :1], -0.5))
    return c.argmax(1)


def votes(logits: Tensor) -> Tensor:
    """One pass's votes: one-hot of the argmax of ``logits`` (N, K), as int32 (N, K)."""
    out = torch.zeros(logits.shape, dtype=torch.int32, device=logits.device)
    return out.scatter_(1, logits.argmax(1, keepdim=True), 1)


def _passes(
    attack: Attack, model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn, eot: int,
    target: Tensor | None, grad: bool,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:  # fmt: skip
    """``eot`` passes at ``x`` (N, ...): mean loss (N,), mean gradient (N, ...) or None,
    mean logits (N, K) and vote counts (N, K)."""
    loss_s = grad_s = logit_s = count = None
    for _ in range(eot):
        if grad:
            loss, g, logits = attack.input_gradient(model, x, y, loss_fn, 1, target)
        else:
            logits, g = attack.logits(model, x), None
            loss = loss_fn(logits, y, target)
        v = votes(logits)
        if loss_s is None or logit_s is None or count is None:
            loss_s, grad_s, logit_s, count = loss, g, logits, v
        else:
            loss_s, logit_s, count = loss_s + loss, logit_s + logits, count + v
            grad_s = grad_s + g if grad_s is not None and g is not None else None
    assert loss_s is not None and logit_s is not None and count is not None
    return loss_s / eot, (grad_s / eot if grad_s is not None else None), logit_s / eot, count


def _score(logits: Tensor, count: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(correct votes (N,), EOT-averaged margin max_{j != y} z_j - z_y (N,))."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return count.gather(1, y[:, None]).squeeze(1), other - z_y


def _pick(cond: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(cond.reshape(-1, *([1] * (a.dim() - 1))), a, b)


def eot_ascent(
    attack: Attack, model: nn.Module, x: Tensor, y: Tensor, x_start: Tensor, *,
    loss_fn: LossFn, steps: int, step_size: float, momentum: float = 1.0,
    schedule: object | None = None, eot: int = 2, target: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Projected gradient ascent on a random model for the full ``steps`` on every point.

    Same arguments and returns as :func:`robustact.attacks.engine.ascent` (x (N, ...),
    y (N,), x_start (N, ...)); ``schedule`` (APGD's) halves a point's step where its
    EOT-averaged loss rose in too few steps (no return to the best-loss iterate: with a
    noisy loss the best one is mostly the luckiest draw). The returned point
    is the iterate with the fewest correct votes of ``eot`` passes (then the highest
    averaged margin); fooled means the label loses a fresh vote of ``eot`` passes there
    (:func:`vote_pred`). Queries: ``steps + 2`` per point (the last is the fresh vote).
    """
    threat = attack.threat
    box = threat.box(x)
    cur = x_start.clone()
    loss, grad, logits, count = _passes(attack, model, cur, y, loss_fn, eot, target, True)
    best_ok, best_m = _score(logits, count, y)
    out = cur.clone()
    eta = torch.full((x.shape[0],), float(step_size), device=x.device, dtype=x.dtype)
    prev, n_incr, prev_loss = cur, torch.zeros_like(loss), loss
    lengths = getattr(schedule, "lengths", None)
    interval, decr, min_len = lengths(steps) if lengths is not None else (0, 0, 0)
    since = 0
    for i in range(steps):
        assert grad is not None
        nxt = threat.project_(threat.step(cur, grad, eta if lengths else step_size), x, box)
        if momentum != 1.0 and i > 0:
            mixed = cur + momentum * (nxt - cur) + (1 - momentum) * (cur - prev)
            nxt = threat.project_(mixed, x, box)
        prev, cur = cur, nxt
        need_grad = i + 1 < steps
        loss, grad, logits, count = _passes(attack, model, cur, y, loss_fn, eot, target, need_grad)
        ok, m = _score(logits, count, y)
        better = (ok < best_ok) | ((ok == best_ok) & (m > best_m))
        best_ok, best_m = torch.where(better, ok, best_ok), torch.where(better, m, best_m)
        out = _pick(better, cur, out)
        if lengths is None or not need_grad:
            continue
        n_incr, prev_loss, since = n_incr + (loss > prev_loss).to(loss.dtype), loss, since + 1
        if since == interval:  # APGD's checkpoint: halve where the loss rose too rarely
            halve = n_incr <= getattr(schedule, "rho", 0.75) * interval
            eta = torch.where(halve, eta / 2, eta)
            n_incr, interval, since = torch.zeros_like(n_incr), max(interval - decr, min_len), 0
    # judge the picked iterates on fresh passes: their own votes won a maximum over the
    # iterates and are biased towards 'fooled' (measured: 55 of 80 flagged, 60 % correct)
    fresh = _passes(attack, model, out, y, loss_fn, eot, target, False)[3]
    fooled = vote_pred(fresh, y) != y
    queries = torch.full((x.shape[0],), steps + 2, dtype=torch.long, device=x.device)
    return out, fooled, queries
