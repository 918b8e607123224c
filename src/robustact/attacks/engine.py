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

from robustact.attacks.base import Attack, AttackResult
from robustact.attacks.losses import LossFn
from robustact.attacks.threat import Threat

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
    return _ascent_one_pass(attack, model, x, y, x_start, loss_fn, steps, step_size,
                            momentum, schedule, return_best, eot, target)  # fmt: skip


def _ascent_one_pass(
    attack: Attack, model: nn.Module, x: Tensor, y: Tensor, x_start: Tensor, loss_fn: LossFn,
    steps: int, step_size: float, momentum: float, schedule: Schedule | None,
    return_best: bool, eot: int, target: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """`ascent` on a deterministic model (``eot`` <= 1): each point stops at its first
    fooling iterate (the active set shrinks as points are fooled)."""
    threat = attack.threat
    out = x_start.clone()
    success = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    queries = torch.full((x.shape[0],), steps + 1, dtype=torch.long, device=x.device)
    cur = x_start
    # plain PGD keeps no reference to past iterates or gradients: update them in place
    track = return_best or schedule is not None
    inplace = not track and momentum == 1.0
    if inplace:
        cur = cur.clone()  # never write into the caller's start (often x itself)

    loss, grad, logits = attack.input_gradient(model, cur, y, loss_fn, eot, target)
    s = _Active.start(x, y, target, cur, grad, step_size, threat.box(x))
    best = _Best.start(loss, cur, grad) if track else None
    checks = _Checkpoints(schedule, steps) if schedule is not None else None
    for i in range(steps + 1):
        if s.record(logits, i, out, success, queries):
            return out, success, queries
        if s.n_done and (s.n_done >= COMPACT_FRACTION * s.act.numel() or i == steps):
            s.compact(momentum, best)  # pays only once enough points are done
        if i == steps:
            break
        if best is not None and i > 0:  # APGD bookkeeping at the new point
            best.update(s.cur, s.grad)
        if checks is not None and best is not None and i > 0:
            checks.tick(s, best)
        s.step(threat, i, step_size if checks is None else None, momentum, inplace)
        if i + 1 < steps:
            loss, s.grad, logits = attack.input_gradient(model, s.cur, s.ya, loss_fn, eot, s.ta)
            if best is not None:
                best.loss = loss
        else:  # the last iterate: its gradient would never be used
            logits = attack.logits(model, s.cur, eot)
            if best is not None:
                best.loss = loss_fn(logits, s.ya, s.ta)

    out[s.act] = best.final(s.cur) if best is not None and return_best else s.cur
    return out, success, queries


@dataclass
class _Active:
    """The active set of one ascent: the points not yet fooled, as indices into the batch
    (``act`` (A,)) and their per-point state (inputs, labels, targets, iterate, gradient,
    step sizes, previous iterate, box bounds); ``done`` (A,) marks the fooled ones not yet
    dropped."""

    act: Tensor
    xa: Tensor
    ya: Tensor
    ta: Tensor | None
    cur: Tensor
    grad: Tensor
    eta: Tensor
    prev: Tensor
    box: tuple[Tensor, Tensor] | None
    done: Tensor
    n_done: int = 0

    @classmethod
    def start(
        cls, x: Tensor, y: Tensor, target: Tensor | None, cur: Tensor, grad: Tensor,
        step_size: float, box: tuple[Tensor, Tensor] | None,
    ) -> _Active:  # fmt: skip
        n = x.shape[0]
        eta = torch.full((n,), float(step_size), device=x.device, dtype=x.dtype)
        arange = torch.arange(n, device=x.device)
        none_done = torch.zeros(n, dtype=torch.bool, device=x.device)
        return cls(arange, x, y, target, cur, grad, eta, cur, box, none_done)

    def record(self, logits: Tensor, i: int, out: Tensor, success: Tensor, queries: Tensor) -> bool:
        """Record the points the last pass fooled (they stop counting from now on); True
        when no active point is left."""
        f = fooled(logits, self.ya)
        if self.n_done:
            f &= ~self.done
        n_new = int(f.sum())
        if n_new:
            idx = self.act[f]
            out[idx] = self.cur[f]
            success[idx] = True
            queries[idx] = i + 1
            self.n_done += n_new
            if self.n_done == self.act.numel():
                return True
            self.done |= f
        return False

    def compact(self, momentum: float, best: _Best | None) -> None:
        """Drop the fooled points from every per-point tensor (in batches: copying the
        survivors costs a few percent of a gradient pass)."""
        keep = ~self.done
        self.act, self.xa, self.ya, self.cur, self.grad, self.eta, self.done = (
            t[keep] for t in (self.act, self.xa, self.ya, self.cur, self.grad, self.eta, self.done)
        )
        self.prev = self.prev[keep] if momentum != 1.0 else self.cur  # only momentum reads prev
        self.n_done = 0
        self.ta = self.ta[keep] if self.ta is not None else None
        self.box = (self.box[0][keep], self.box[1][keep]) if self.box is not None else None
        if best is not None:
            best.keep(keep)

    def step(
        self, threat: Threat, i: int, fixed: float | None, momentum: float, inplace: bool
    ) -> None:
        """One projected step: of size ``fixed``, or each point's ``eta`` (a schedule);
        with APGD momentum after the first one."""
        if inplace:
            assert fixed is not None
            self.cur = threat.project_(threat.step_(self.cur, self.grad, fixed), self.xa, self.box)
            return
        size = self.eta if fixed is None else fixed
        nxt = threat.project_(threat.step(self.cur, self.grad, size), self.xa, self.box)
        if momentum != 1.0 and i > 0:
            cur, prev = self.cur, self.prev
            mixed = cur + momentum * (nxt - cur) + (1 - momentum) * (cur - prev)
            nxt = threat.project_(mixed, self.xa, self.box)
        self.prev, self.cur = self.cur, nxt


@dataclass
class _Best:
    """Best-loss bookkeeping per active point (for ``return_best`` and APGD's schedule):
    the current loss, the best loss with its iterate and gradient, the loss of the previous
    step, how many steps increased it since the last checkpoint, and the state at that
    checkpoint."""

    loss: Tensor
    best_loss: Tensor
    x_best: Tensor
    grad_best: Tensor
    prev_loss: Tensor
    n_incr: Tensor
    best_at_check: Tensor
    halved_last: Tensor

    @classmethod
    def start(cls, loss: Tensor, x: Tensor, grad: Tensor) -> _Best:
        ones = torch.ones_like(loss, dtype=torch.bool)
        return cls(loss, loss, x, grad, loss, torch.zeros_like(loss), loss, ones)

    def keep(self, keep: Tensor) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name)[keep])

    def update(self, cur: Tensor, grad: Tensor) -> None:
        """Enter the iterate ``cur`` (its loss is ``self.loss``) into the bookkeeping."""
        better = self.loss > self.best_loss
        self.best_loss = torch.where(better, self.loss, self.best_loss)
        self.x_best = _where(better, cur, self.x_best)
        self.grad_best = _where(better, grad, self.grad_best)
        self.n_incr = self.n_incr + (self.loss > self.prev_loss).to(self.n_incr.dtype)
        self.prev_loss = self.loss

    def final(self, cur: Tensor) -> Tensor:
        """The best iterate, the last one ``cur`` (not yet entered) included."""
        return _where(self.loss > self.best_loss, cur, self.x_best)


class _Checkpoints:
    """APGD's step-size checkpoints over one ascent (see :class:`Schedule`)."""

    def __init__(self, schedule: Schedule, steps: int) -> None:
        self.rho = schedule.rho
        self.interval, self.decr, self.min_len = schedule.lengths(steps)
        self.since_check = 0

    def tick(self, s: _Active, best: _Best) -> None:
        """One step has passed; at a checkpoint, halve the step of the points that stalled
        and send them back to their best iterate."""
        self.since_check += 1
        if self.since_check != self.interval:
            return
        halve = (best.n_incr <= self.rho * self.interval) | (
            ~best.halved_last & (best.best_at_check >= best.best_loss)
        )
        best.halved_last, best.best_at_check = halve, best.best_loss.clone()
        s.eta = torch.where(halve, s.eta / 2, s.eta)
        s.cur = _where(halve, best.x_best, s.cur)
        s.grad = _where(halve, best.grad_best, s.grad)
        best.n_incr = torch.zeros_like(best.n_incr)
        self.interval, self.since_check = max(self.interval - self.decr, self.min_len), 0


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


def target_classes(clean_logits: Tensor, y: Tensor, rank: int) -> Tensor:
    """The ``rank``-th (1-based) highest non-true class per sample, int64 (N,)."""
    masked = clean_logits.scatter(1, y[:, None], float("-inf"))
    return masked.topk(rank, dim=1).indices[:, rank - 1]
