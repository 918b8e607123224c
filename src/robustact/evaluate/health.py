"""Gradient health of a batch, and the escalation that follows when gradients fail.

:func:`gradient_health` says, per point, whether the input gradient an attack would follow
is usable: *zero* (the margin-loss gradient is exactly 0: the network is flat there),
*non-finite* (NaN/inf in the CE or margin gradient) or *underflowing* (the CE gradient is
0 while the margin gradient is not: softmax saturated in float32, e.g. logits scaled up).

:class:`Escalation` is the policy the adaptive protocol ends with and the masking report
runs on the points every gradient attack left correct, instead of reporting a high number:

1. **transfer** from a surrogate (the user's twin, or one derived by swapping the masking
   modules, :func:`robustact.attacks.transfer.derive_surrogate`); on a random model
   (``eot > 1``) then BPDA-PGD with 2x, 4x, 8x the EOT passes while a round finds points;
2. **Square** with a fresh seed per round and a query budget that doubles while a round
   still finds points;
3. **SPSA** (score-based gradient estimate) when gradients are unhealthy on the remaining
   points or an earlier stage still found some; its iterations double while it finds.

Margin/DLR losses, BPDA (built-in, registered, detected) and EOT (randomness detected by
behaviour) are the protocol's earlier entries. After a call, ``notes`` says which stage
found how many points; :meth:`Escalation.describe` carries them into the results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robustact._validate import check_int
from robustact.attacks.adaptive import Adaptive
from robustact.attacks.base import Attack, AttackResult, input_gradient
from robustact.attacks.losses import get_loss
from robustact.attacks.pgd import PGD
from robustact.attacks.spsa import SPSA
from robustact.attacks.square import Square
from robustact.attacks.transfer import Transfer

__all__ = ["Escalation", "GradientHealth", "gradient_health"]


@dataclass(frozen=True)
class GradientHealth:
    """Per-point gradient problems on a batch (bool tensors of shape (N,), on the CPU)."""

    zero: Tensor
    nonfinite: Tensor
    underflow: Tensor

    @property
    def n(self) -> int:
        return int(self.zero.numel())

    @property
    def unhealthy(self) -> Tensor:
        """Points with any of the three problems (N,)."""
        return self.zero | self.nonfinite | self.underflow

    def fractions(self) -> dict[str, float]:
        """``{"zero", "nonfinite", "underflow", "unhealthy"}`` as fractions of the batch."""
        d = {"zero": self.zero, "nonfinite": self.nonfinite, "underflow": self.underflow}
        d["unhealthy"] = self.unhealthy
        return {k: float(v.float().mean()) if self.n else 0.0 for k, v in d.items()}

    def line(self) -> str:
        f = self.fractions()
        return (
            f"gradient health on {self.n} points: zero {100 * f['zero']:.0f}%, non-finite "
            f"{100 * f['nonfinite']:.0f}%, CE underflow {100 * f['underflow']:.0f}%"
        )


def gradient_health(model: nn.Module, x: Tensor, y: Tensor, *, eot: int = 1) -> GradientHealth:
    """Which points of ``(x, y)`` have an unusable input gradient.

    Args:
        model: classifier (eval mode is used; the caller's mode is restored).
        x: inputs (N, ...); y: labels (N,).
        eot: passes averaged per gradient (randomised models).
    Returns:
        :class:`GradientHealth` with per-point masks.
    """
    was = model.training
    try:
        model.eval()
        _, g_m, _ = input_gradient(model, x, y, get_loss("margin"), eot=eot)
        _, g_c, _ = input_gradient(model, x, y, get_loss("ce"), eot=eot)
    finally:
        model.train(was)
    fm, fc = g_m.flatten(1), g_c.flatten(1)
    finite = torch.isfinite(fm).all(1) & torch.isfinite(fc).all(1)
    m_zero = fm.nan_to_num(1.0).abs().amax(1) == 0
    c_zero = fc.nan_to_num(1.0).abs().amax(1) == 0
    return GradientHealth(
        zero=(m_zero & finite).cpu(),
        nonfinite=(~finite).cpu(),
        underflow=(c_zero & ~m_zero & finite).cpu(),
    )


class Escalation(Attack):
    """Transfer, growing Square, then SPSA on the points still correct (see module doc).

    Args:
        eps, norm: threat model.
        eot: passes averaged per query/gradient (randomised models).
        surrogate: the user's differentiable twin for the transfer stage (else derived).
        square_queries: Square's first-round budget; doubled each round that finds points,
            up to ``max_square_queries``.
        spsa_iterations, spsa_samples: SPSA's first round (iterations double while it
            finds points, up to ``max_spsa_iterations``).
        unhealthy: SPSA runs when more than this fraction of the remaining points has an
            unusable gradient (or an earlier stage found points).
        seed: seeds every stage (round ``r`` uses ``seed + r``).
    """

    name = "escalate"

    def __init__(
        self,
        *,
        eps: float,
        norm: str = "Linf",
        eot: int = 1,
        surrogate: nn.Module | None = None,
        square_queries: int = 1000,
        max_square_queries: int = 8000,
        spsa_iterations: int = 50,
        spsa_samples: int = 32,
        max_spsa_iterations: int = 200,
        unhealthy: float = 0.05,
        seed: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, seed=seed)
        self.eot = check_int("eot", eot, 1)
        self.surrogate = surrogate
        self.square_queries = check_int("square_queries", square_queries, 2)
        self.max_square_queries = check_int("max_square_queries", max_square_queries, 2)
        self.spsa_iterations = check_int("spsa_iterations", spsa_iterations, 1)
        self.spsa_samples = check_int("spsa_samples", spsa_samples, 1)
        self.max_spsa_iterations = check_int("max_spsa_iterations", max_spsa_iterations, 1)
        self.unhealthy = float(unhealthy)
        self.notes: list[str] = []
        self.found: dict[str, int] = {}

    def describe(self) -> dict[str, Any]:
        """The declared hyper-parameters (surrogate as ``"given"``/``"derived"``) and, after
        a run, ``escalation`` (one line per stage) and ``found`` (points per stage)."""
        d = dict(super().describe())
        d["surrogate"] = "given" if self.surrogate is not None else "derived"
        if self.notes:
            d["escalation"] = list(self.notes)
            d["found"] = dict(self.found)
        return d

    def _stage(
        self, label: str, attack: Attack, model: nn.Module, x: Tensor, y: Tensor, state: Any
    ) -> int:
        """Run ``attack`` on the points not yet fooled; keep what it fools; count them."""
        x_adv, done = state
        idx = (~done).nonzero().squeeze(1)
        if idx.numel() == 0:
            return 0
        res = attack.run(model, x[idx], y[idx])
        xa = res.x_adv
        model.eval()
        fooled = self.logits(model, xa, eot=self.eot).argmax(1) != y[idx]
        x_adv[idx[fooled]] = xa[fooled]
        done[idx[fooled]] = True
        n = int(fooled.sum())
        self.found[label] = n
        note = str(res.info.get("note", ""))
        self.notes.append(f"{label} found {n} of {idx.numel()} points{': ' + note if note else ''}")
        return n

    def _more_eot(self, model: nn.Module, x: Tensor, y: Tensor, state: Any, seed: int) -> bool:
        """Random model: BPDA-PGD with 2x, 4x, 8x the EOT passes (CE, then margin, ...)
        while a round still finds points. Returns whether any round did."""
        if self.eot == 1:
            return False
        any_found = False
        for r, loss in enumerate(("ce", "margin", "ce"), 1):
            eot = self.eot * 2**r
            pgd = PGD(eps=self.eps, norm=self.norm, steps=50, loss=loss, eot=eot, seed=seed + r)
            att = Adaptive(pgd, bpda=True)
            found = self._stage(f"PGD-50-{loss}+BPDA+EOT{eot}", att, model, x, y, state)
            any_found |= found > 0
            if found == 0 or bool(state[1].all()):
                break
        return any_found

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        """x (N, ...) in [0, 1], y (N,) -> x_adv (N, ...)."""
        self.notes, self.found = [], {}
        seed = self.seed if self.seed is not None else int(torch.randint(0, 2**30, (1,)))
        done = self.logits(model, x, eot=self.eot).argmax(1) != y
        state = (x.clone(), done)
        kw: dict[str, Any] = {"eps": self.eps, "norm": self.norm, "eot": self.eot}
        tr = Transfer(**kw, surrogate=self.surrogate, seed=seed)
        any_found = self._stage("transfer", tr, model, x, y, state) > 0
        any_found |= self._more_eot(model, x, y, state, seed)
        q, r = self.square_queries, 1
        while q <= self.max_square_queries and not bool(done.all()):
            sq = Square(**kw, queries=q, seed=seed + r)
            found = self._stage(f"Square-{q} (round {r})", sq, model, x, y, state)
            any_found |= found > 0
            if found == 0 or x.dim() != 4:
                break
            q, r = 2 * q, r + 1
        rest = (~done).nonzero().squeeze(1)
        if rest.numel():
            health = gradient_health(model, x[rest], y[rest], eot=self.eot)
            self.notes.append(health.line())
            bad = health.fractions()["unhealthy"] > self.unhealthy
            it = self.spsa_iterations
            while (bad or any_found) and it <= self.max_spsa_iterations and not bool(done.all()):
                sp = SPSA(**kw, iterations=it, samples=self.spsa_samples, seed=seed + r)
                found = self._stage(f"SPSA-{it}x{self.spsa_samples}", sp, model, x, y, state)
                if found == 0:
                    break
                it, r, bad = 2 * it, r + 1, True
        info = {"escalation": list(self.notes), "found": dict(self.found)}
        return AttackResult(state[0], done, info=info)
