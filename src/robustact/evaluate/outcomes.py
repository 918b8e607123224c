"""Per-point outcomes of an evaluation run (what :mod:`~robustact.evaluate.metrics` reads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["AttackOutcome", "CleanOutcome", "cat_outcomes", "majority_correct", "worst_case_pred"]


@dataclass
class CleanOutcome:
    """Per-point clean predictions.

    Attributes:
        y: labels (N,) int64.
        pred: predicted labels (N,) int64.
        max_prob: max softmax probability (N,).
        true_prob: softmax probability of the true class (N,).
    """

    y: Tensor
    pred: Tensor
    max_prob: Tensor
    true_prob: Tensor


@dataclass
class AttackOutcome:
    """Per-point result of one attack of a protocol.

    Attributes:
        label: the attack's label in the protocol.
        attacked: bool (N,), the attack ran on the point.
        pred: predictions (N,) at the adversarial example (clean prediction if not attacked).
        max_prob: max softmax probability (N,) at the adversarial example.
        true_prob: true-class probability (N,) at the adversarial example.
        linf: L-inf norm (N,) of the perturbation (0 where not attacked).
        l2: L2 norm (N,) of the perturbation (0 where not attacked).
        seconds: wall-clock seconds the attack took (summed over batches).
        describe: the attack's hyper-parameters and protocol options (JSON-serialisable).
        counts: the attack is part of the worst case. False for an attack reported as its
            own column under a different threat model (e.g. the seeds' CW-L2 in an L-inf
            protocol): it then always runs on all clean-correct points.
    """

    label: str
    attacked: Tensor
    pred: Tensor
    max_prob: Tensor
    true_prob: Tensor
    linf: Tensor
    l2: Tensor
    seconds: float
    describe: dict[str, Any] = field(default_factory=dict)
    counts: bool = True


def _cat(ts: list[Tensor]) -> Tensor:
    return torch.cat([t.detach().cpu() for t in ts])


def cat_outcomes(
    parts: list[tuple[CleanOutcome, list[AttackOutcome]]],
) -> tuple[CleanOutcome, list[AttackOutcome]]:
    """Concatenate per-batch outcomes (same protocol on every batch) into one record."""
    if not parts:
        raise ValueError("no batches to concatenate; the data was empty")
    cleans = [c for c, _ in parts]
    clean = CleanOutcome(
        y=_cat([c.y for c in cleans]),
        pred=_cat([c.pred for c in cleans]),
        max_prob=_cat([c.max_prob for c in cleans]),
        true_prob=_cat([c.true_prob for c in cleans]),
    )
    attacks: list[AttackOutcome] = []
    for k, first in enumerate(parts[0][1]):
        rows = [p[1][k] for p in parts]
        attacks.append(
            AttackOutcome(
                label=first.label,
                attacked=_cat([r.attacked for r in rows]),
                pred=_cat([r.pred for r in rows]),
                max_prob=_cat([r.max_prob for r in rows]),
                true_prob=_cat([r.true_prob for r in rows]),
                linf=_cat([r.linf for r in rows]),
                l2=_cat([r.l2 for r in rows]),
                seconds=float(sum(r.seconds for r in rows)),
                describe=first.describe,
                counts=first.counts,
            )
        )
    return clean, attacks


def worst_case_pred(clean: CleanOutcome, attacks: list[AttackOutcome]) -> Tensor:
    """Prediction (N,) at each point's worst-case adversarial example (see module doc)."""
    y = clean.y
    clean_ok = clean.pred == y
    pred = clean.pred.clone()
    settled = ~clean_ok
    for a in attacks:
        if not a.counts:
            continue
        att = a.attacked & clean_ok
        pred = torch.where(att & ~settled, a.pred, pred)
        settled |= att & (a.pred != y)
    return pred


def majority_correct(preds: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """bool (N,): votes for y strictly exceed votes for every other class. preds (R, N)."""
    votes = torch.nn.functional.one_hot(preds, num_classes).sum(dim=0)  # (N, K)
    for_y = votes.gather(1, y[:, None]).squeeze(1)
    other = votes.scatter(1, y[:, None], -1).amax(dim=1)
    return for_y > other
