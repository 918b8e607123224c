"""The one gradient-ascent loop behind FGSM, PGD and APGD.

A run keeps an *active set*: the points not yet misclassified. Each iteration spends one
gradient pass on the active points only; the logits of that pass decide which points are
fooled, and those leave the active set with the iterate that fooled them (the first
successful iterate). The last iterate needs no gradient, so it costs one forward pass.

PGD is the loop with a fixed step and no momentum; APGD (Croce & Hein 2020) adds
momentum 0.75, per-sample step sizes halved at checkpoints, and returns to the best
point when it halves. FGSM is one PGD step of size eps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustact._validate import check_float as _check_float
from robustact._validate import check_int as check_int  # re-exported for the attacks
from robustact.attacks.base import Attack, AttackResult
from robustact.attacks.losses import LossFn

#: Compact the active set once this fraction of it is fooled (see ``ascent``).
COMPACT_FRACTION = 0.05


@dataclass(frozen=True)
class Schedule:
    """APGD step-size checkpoints (fractions of the step budget).

    The first checkpoint is after ``p1 * steps`` iterations; each later interval is the
    previous one shrunk by ``decr * steps``, but at least ``min_len * steps`` long
    (p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) with p_1 = 0.22).
    A point's step halves at a checkpoint when at most ``rho`` of the steps since the last
    checkpoint increased its loss, or when its step was not halved last time and its best
    loss has not improved since.
    """

    p1: float = 0.22
    decr: float = 0.03
    min_len: float = 0.06
    rho: float = 0.75

    def lengths(self, steps: int) -> tuple[int, int, int]:
        """(first interval, decrement, minimum interval) in iterations."""
        return (
            max(int(self.p1 * steps), 1),
            max(int(self.decr * steps), 1),
            max(int(self.min_len * steps), 1),
        )


def fooled(logits: Tensor, y: Tensor) -> Tensor:
    """bool (N,): the prediction differs from the label."""
    return logits.argmax(dim=1) != y


def ascent(
    attack: Attack,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    x_start: Tensor,
    *,
    loss_fn: LossFn,
    steps: int,
    step_size: float,
    momentum: float = 1.0,
    schedule: Schedule | None = None,
    return_best: bool = False,
    eot: int = 1,
    target: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run one projected gradient ascent from ``x_start``.

    Args:
        attack: the calling attack (its threat model, label checks).
        model: classifier in eval mode.
        x: clean inputs (N, ...); y: labels (N,).
        x_start: starting points inside the threat model (N, ...).
        loss_fn: ``fn(logits, y, target) -> (N,)`` to maximise.
        steps: number of steps (>= 1).
        step_size: initial step size (same for every point).
        momentum: weight of the new step (1 = plain PGD, 0.75 = APGD).
        schedule: APGD checkpoints, or None for a fixed step size.
        return_best: for points never fooled, return the highest-loss iterate instead of
            the last one.
        eot: stochastic passes averaged per gradient.
        target: target labels (N,) for targeted losses.

    Returns:
        ``(x_adv (N, ...), fooled (N,) bool, queries (N,) int64)``: the first fooling
        iterate for fooled points; queries counts the model evaluations (gradient passes
        and the final forward pass) each point took.
    """
    if eot > 1:  # a random model: the full budget on every point (attacks/stochastic.py)
        from robustact.attacks.stochastic import eot_ascent

        return eot_ascent(attack, model, x, y, x_start, loss_fn=loss_fn, steps=steps,
                          step_size=step_size, momentum=momentum, schedule=schedule,
                          eot=eot, target=target)  # fmt: skip
    threat = attack.threat
    out = x_start.clone()
    success = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    queries = torch.full((x.shape[0],), steps + 1, dtype=torch.long, device=x.device)
    act = torch.arange(x.shape[0], device=x.device)
    xa, ya, ta = x, y, target
    cur = x_start
    box = threat.box(xa)
    track = return_best or schedule is not None
    # plain PGD keeps no reference to past iterates or gradients: update them in place
    inplace = not track and momentum == 1.0
    if inplace:
        cur = cur.clone()  # never write into the caller's start (often x itself)

    loss, grad, logits = attack.input_gradient(model, cur, ya, loss_fn, eot, ta)
    eta = torch.full((x.shape[0],), float(step_size), device=x.device, dtype=x.dtype)
    prev = cur
    best_loss, x_best, grad_best = loss, cur, grad
    prev_loss, n_incr = loss, torch.zeros_like(loss)
    best_at_check, halved_last = loss, torch.ones_like(loss, dtype=torch.bool)
    interval, decr, min_len = schedule.lengths(steps) if schedule else (0, 0, 0)
    since_check = 0

    done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    n_done = 0
    for i in range(steps + 1):
        # --- record the points the last pass fooled; they stop counting from now on
        f = fooled(logits, ya)
        if n_done:
            f &= ~done
        n_new = int(f.sum())
        if n_new:
            idx = act[f]
            out[idx] = cur[f]
            success[idx] = True
            queries[idx] = i + 1
            n_done += n_new
            if n_done == act.numel():
                return out, success, queries
            done |= f
        # leave the active set in batches: copying the survivors costs a few percent of a
        # gradient pass, so it pays only once enough points are done
        if n_done and (n_done >= COMPACT_FRACTION * act.numel() or i == steps):
            keep = ~done
            act, xa, ya, cur, grad, eta, done = (
                t[keep] for t in (act, xa, ya, cur, grad, eta, done)
            )
            prev = prev[keep] if momentum != 1.0 else cur  # only momentum reads prev
            n_done = 0
            ta = ta[keep] if ta is not None else None
            box = (box[0][keep], box[1][keep]) if box is not None else None
            if track:
                loss, best_loss, x_best, grad_best = (
                    t[keep] for t in (loss, best_loss, x_best, grad_best)
                )
                prev_loss, n_incr, best_at_check, halved_last = (
                    t[keep] for t in (prev_loss, n_incr, best_at_check, halved_last)
                )
        if i == steps:
            break

        # --- APGD bookkeeping at the new point (the start point seeds it above)
        if track and i > 0:
            better = loss > best_loss
            best_loss = torch.where(better, loss, best_loss)
            x_best = _where(better, cur, x_best)
            grad_best = _where(better, grad, grad_best)
            n_incr = n_incr + (loss > prev_loss).to(n_incr.dtype)
            prev_loss = loss
        if schedule is not None and i > 0:
            since_check += 1
            if since_check == interval:
                halve = (n_incr <= schedule.rho * interval) | (
                    ~halved_last & (best_at_check >= best_loss)
                )
                halved_last, best_at_check = halve, best_loss.clone()
                eta = torch.where(halve, eta / 2, eta)
                cur = _where(halve, x_best, cur)
                grad = _where(halve, grad_best, grad)
                n_incr = torch.zeros_like(n_incr)
                interval, since_check = max(interval - decr, min_len), 0

        # --- the step (with APGD momentum after the first one)
        if inplace:
            cur = threat.project_(threat.step_(cur, grad, step_size), xa, box)
        else:
            size = eta if schedule is not None else step_size
            nxt = threat.project_(threat.step(cur, grad, size), xa, box)
            if momentum != 1.0 and i > 0:
                mixed = cur + momentum * (nxt - cur) + (1 - momentum) * (cur - prev)
                nxt = threat.project_(mixed, xa, box)
            prev, cur = cur, nxt

        if i + 1 < steps:
            loss, grad, logits = attack.input_gradient(model, cur, ya, loss_fn, eot, ta)
        else:  # the last iterate: its gradient would never be used
            logits = attack.logits(model, cur, eot)
            if track:
                loss = loss_fn(logits, ya, ta)

    if track:  # the final point has not entered the best-loss bookkeeping yet
        better = loss > best_loss
        x_best = _where(better, cur, x_best)
    out[act] = x_best if return_best else cur
    return out, success, queries


class Restarts:
    """The points still to attack over several runs (restarts, target classes).

    Each run attacks only ``todo`` (the points no earlier run fooled) and hands its
    ``ascent`` result to :meth:`record`; a point keeps the iterate of the run that fooled
    it, an unfooled one the last run's. Queries add up over runs.

    Args:
        x: clean inputs (N, ...), the starting ``x_adv``.
        success: (N,) bool, points already fooled (not attacked); default none.
        queries: (N,) int64 evaluations already spent (e.g. a clean check); default 0.
    """

    def __init__(self, x: Tensor, success: Tensor | None = None, queries: Tensor | None = None):
        n = x.shape[0]
        self.x_adv = x.clone()
        self.success = (
            torch.zeros(n, dtype=torch.bool, device=x.device) if success is None else success
        )
        self.queries = (
            torch.zeros(n, dtype=torch.long, device=x.device) if queries is None else queries
        )
        self.todo = torch.nonzero(~self.success).squeeze(1)

    def record(self, x_adv: Tensor, fooled: Tensor, queries: Tensor) -> None:
        """One run's result on ``todo``: x_adv (T, ...), fooled (T,), queries (T,)."""
        self.x_adv[self.todo] = x_adv
        self.success[self.todo[fooled]] = True
        self.queries[self.todo] += queries
        self.todo = self.todo[~fooled]

    def result(self) -> AttackResult:
        return AttackResult(self.x_adv, self.success, self.queries)


def _where(cond: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Per-sample select: cond (N,) bool, a and b (N, ...)."""
    return torch.where(cond.reshape(-1, *([1] * (a.dim() - 1))), a, b)


def check_float(name: str, value: float, minimum: float = 0.0) -> float:
    """A finite float hyper-parameter >= ``minimum`` (the toolkit's check, minimum 0 by
    default as every attack's step sizes and radii need)."""
    return _check_float(name, value, minimum)


def target_classes(clean_logits: Tensor, y: Tensor, rank: int) -> Tensor:
    """The ``rank``-th (1-based) highest non-true class per sample, int64 (N,)."""
    masked = clean_logits.scatter(1, y[:, None], float("-inf"))
    return masked.topk(rank, dim=1).indices[:, rank - 1]
