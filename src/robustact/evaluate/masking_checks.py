"""The gradient-masking checks, one small function each (the verdict is in
:mod:`robustact.evaluate.masking`).

A check reads a :class:`Probe` — the model, the points, the threat model and every
attack accuracy measured so far — and returns its value (None: not applicable to this
model). Attacks are :class:`~robustact.evaluate.protocol.ProtocolEntry` objects run
through the protocol runner (:func:`robustact.evaluate.runner.run_entry`), and each is
run once per report however many checks read it. :data:`CHECKS` holds them in report
order; *probes* (no attack) run first, then the attack checks in order, so the attacks
always run in the same order and a seeded report repeats exactly.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustact.attacks import input_gradient
from robustact.attacks.losses import get_loss
from robustact.evaluate.protocol import ProtocolEntry
from robustact.evaluate.runner import run_entry
from robustact.surgery import cap_summary

__all__ = ["CHECKS", "Check", "Probe", "check"]

_CARLINI = "Carlini et al. 2019, On Evaluating Adversarial Robustness"
_ATHALYE = "Athalye et al. 2018, Obfuscated Gradients"
_CROCE = "Croce & Hein 2020, AutoAttack (robustbench checks)"
_PINTOR = "Pintor et al. 2022, Indicators of Attack Failure"


@dataclass
class Probe:
    """What the checks share: the setting and the accuracies measured so far.

    Attributes:
        model, x, y: the classifier (eval mode) and the points (N, ...), (N,).
        eps, norm, seed, fast: the threat model, the attacks' seed, cut-down attacks.
        stochastic, has_st: the model is random / has straight-through modules (caps).
        eot: EOT passes for the stochastic attacks; passes: forward passes per accuracy.
        steps, long_steps, queries: plain PGD steps, the longer PGD, Square's queries.
        correct: attack label -> per-point expected correctness (N,); acc: label ->
            accuracy; timing: label -> seconds; curve: the security curve
            ``[(eps, plain-PGD accuracy), ...]`` once ``large_eps_accuracy`` ran.
    """

    model: nn.Module
    x: Tensor
    y: Tensor
    eps: float
    norm: str
    seed: int
    fast: bool
    stochastic: bool
    has_st: bool
    eot: int
    passes: int
    steps: int = 10
    long_steps: int = 100
    queries: int = 1000
    correct: dict[str, Tensor] = field(default_factory=dict)
    acc: dict[str, float] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    curve: list[tuple[float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def correct_prob(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-point fraction (N,) of ``passes`` forward passes that classify correctly."""
        with torch.no_grad():
            hits = sum((self.model(x).argmax(1) == y).float() for _ in range(self.passes))
        assert isinstance(hits, Tensor)
        return hits / self.passes

    def attack(
        self, entry: ProtocolEntry, x: Tensor, y: Tensor, eps: float | None = None
    ) -> Tensor:
        """``entry``'s adversarial examples of ``(x, y)`` through the protocol runner."""
        e = self.eps if eps is None else eps
        return run_entry(self.model, x, y, entry, e, self.norm, self.eot)[0]

    def measure(self, entry: ProtocolEntry, eps: float | None = None) -> float:
        """Accuracy under ``entry`` on all points (memoised by its label)."""
        if entry.label not in self.acc:
            t0 = time.perf_counter()
            ok = self.correct_prob(self.attack(entry, self.x, self.y, eps), self.y)
            self.correct[entry.label] = ok
            self.acc[entry.label] = float(ok.mean())
            self.timing[entry.label] = time.perf_counter() - t0
        return self.acc[entry.label]

    # the attacks of the checks ----------------------------------------------------
    def pgd(self, steps: int | None = None, label: str = "", **kw: Any) -> ProtocolEntry:
        """PGD-CE (the seeds' plain attack) with ``steps``; ``kw``: bpda, eot, loss."""
        n = self.steps if steps is None else steps
        opts = {k: kw.pop(k) for k in ("bpda", "eot") if k in kw}
        return ProtocolEntry(label or f"PGD-{n}", "pgd", {"steps": n, "seed": self.seed, **kw},
                             **opts)  # fmt: skip

    def gradient_entries(self) -> list[ProtocolEntry]:
        """Every gradient attack of the report, plain first, the strongest last."""
        out = [ProtocolEntry("FGSM", "fgsm", {"seed": self.seed}), self.pgd(),
               self.pgd(self.long_steps)]  # fmt: skip
        if self.has_st:
            out.append(self.pgd(label=f"PGD-{self.steps}+BPDA", bpda=True))
        if self.stochastic:
            out.append(self.pgd(label=f"PGD-{self.steps}+EOT{self.eot}", eot=self.eot))
        # the strongest gradient attack here: margin loss, BPDA, EOT, more steps
        out.append(self.pgd(self.long_steps, label=f"PGD-{self.long_steps}-margin+BPDA+EOT",
                            loss="margin", bpda=self.has_st,
                            eot=self.eot if self.stochastic else 1))  # fmt: skip
        return out


@dataclass(frozen=True)
class Check:
    """One named check: ``value(probe)``; flagged when the value exceeds its threshold.

    Attributes:
        name: the check id (and its threshold's key in ``masking.THRESHOLDS``).
        value: computes the value from a :class:`Probe` (None: not applicable).
        citation: where the check comes from.
        explanation: one line, formatted with the probe's fields.
        probe: it runs no attack (probes run before every attack check).
    """

    name: str
    value: Callable[[Probe], float | None]
    citation: str
    explanation: str
    probe: bool = False


#: The checks in report order (see the table in :mod:`robustact.evaluate.masking`).
CHECKS: dict[str, Check] = {}


def check(name: str, citation: str, explanation: str, *, probe: bool = False) -> Callable[
    [Callable[[Probe], float | None]], Callable[[Probe], float | None]
]:  # fmt: skip
    """Decorator: register a check function under ``name`` (appended to :data:`CHECKS`)."""

    def deco(fn: Callable[[Probe], float | None]) -> Callable[[Probe], float | None]:
        if name in CHECKS:
            raise ValueError(f"masking check {name!r} is registered twice")
        CHECKS[name] = Check(name, fn, citation, explanation, probe)
        return fn

    return deco


@check("zero_gradient", f"{_ATHALYE}; {_CROCE}; {_PINTOR}",
       "inputs whose margin-loss input gradient is exactly zero: gradient attacks cannot move",
       probe=True)  # fmt: skip
def zero_gradient(p: Probe) -> float:
    """Fraction of inputs whose margin-loss input gradient is exactly 0 in every entry.

    The margin (logit difference) is used, not cross-entropy, because a confident
    prediction makes the float32 softmax saturate and the CE gradient underflow to zero
    even where the network itself is not flat.
    """
    _, g, _ = input_gradient(p.model, p.x, p.y, get_loss("margin"))
    return float((g.flatten(1).abs().amax(1) == 0).float().mean())


@check("cap_saturation", "dissertation Ch. 3-4 (S-ReLU); surgery.cap_summary",
       "capped units sitting at their cap pass no gradient (n/a: no caps)", probe=True)  # fmt: skip
def cap_saturation(p: Probe) -> float | None:
    """Fraction of the *active* (input > 0) capped values that sit at the cap, pooled over
    capped layers; the inactive ones pass no gradient under any ReLU and are left out."""
    stats = cap_summary(p.model, p.x)
    if not stats:
        return None
    sat = sum(s.saturated * s.units for s in stats)
    active = sum((1.0 - s.inactive) * s.units for s in stats)
    return sat / active if active > 0 else 0.0


@check("fgsm_beats_pgd", _CARLINI,
       "a single step should never beat an iterative attack of the same budget")  # fmt: skip
def fgsm_beats_pgd(p: Probe) -> float:
    """acc(PGD) - acc(FGSM)."""
    fgsm, pgd = p.gradient_entries()[:2]
    a_fgsm = p.measure(fgsm)
    return p.measure(pgd) - a_fgsm


@check("more_steps_help", f"{_CARLINI}; {_PINTOR}",
       "PGD-{long_steps} beats PGD-{steps}: the short attack had not converged")  # fmt: skip
def more_steps_help(p: Probe) -> float:
    """acc(PGD-k) - acc(PGD-10k)."""
    return p.measure(p.pgd()) - p.measure(p.pgd(p.long_steps))


@check("bpda_beats_plain", _ATHALYE,
       "a straight-through gradient through caps finds what plain gradients miss")  # fmt: skip
def bpda_beats_plain(p: Probe) -> float | None:
    """acc(PGD) - acc(PGD with BPDA through the caps); None without caps."""
    if not p.has_st:
        return None
    return p.measure(p.pgd()) - p.measure(p.pgd(label=f"PGD-{p.steps}+BPDA", bpda=True))


@check("eot_beats_single", _ATHALYE,
       "averaging {eot} stochastic passes per gradient beats single-sample gradients")  # fmt: skip
def eot_beats_single(p: Probe) -> float | None:
    """acc(PGD) - acc(PGD with EOT); None on a deterministic model."""
    if not p.stochastic:
        return None
    return p.measure(p.pgd()) - p.measure(p.pgd(label=f"PGD-{p.steps}+EOT{p.eot}", eot=p.eot))


@check("gradient_free_beats", f"{_CARLINI}; {_CROCE}",
       "Square breaks points every gradient attack missed: gradients are uninformative",
       )  # fmt: skip
def gradient_free_beats(p: Probe) -> float:
    """Fraction of all points Square breaks among those every gradient attack left correct."""
    entries = p.gradient_entries()
    for e in entries:
        p.measure(e)
    # per point, the best any gradient attack did (expected correctness)
    grad_min = torch.stack([p.correct[e.label] for e in entries]).amin(dim=0)
    p.acc["gradient worst case"] = float(grad_min.mean())
    surv = grad_min > 0.5
    gain = 0.0
    t0 = time.perf_counter()
    # Square is query-bound: in fast mode it averages fewer passes per query on stochastic
    # models; it only has to find points the gradient attacks missed
    sq_eot = (min(p.eot, 4) if p.fast else p.eot) if p.stochastic else 1
    square = ProtocolEntry(f"Square-{p.queries}", "square",
                           {"queries": p.queries, "seed": p.seed}, eot=sq_eot)  # fmt: skip
    if bool(surv.any()):
        pc = p.correct_prob(p.attack(square, p.x[surv], p.y[surv]), p.y[surv])
        gain = float((grad_min[surv] - pc).sum()) / p.x.shape[0]
        gain += _escalate(p, p.x[surv][pc > 0.5], p.y[surv][pc > 0.5], pc[pc > 0.5], sq_eot)
    p.acc[f"gradient worst case+{square.label}"] = p.acc["gradient worst case"] - gain
    p.timing[square.label] = time.perf_counter() - t0
    return gain


def _escalate(p: Probe, x: Tensor, y: Tensor, before: Tensor, eot: int) -> float:
    """The escalation (``evaluate.health.Escalation``: transfer, growing Square, SPSA) on
    the points Square left; its per-stage counts go to ``p.notes``. Returns its gain as a
    fraction of all points."""
    from robustact.evaluate.health import Escalation

    if x.shape[0] == 0:
        p.notes.append("escalation after Square: not needed")
        return 0.0
    budget = (150, 600, 20) if p.fast else (1000, 8000, 50)
    esc = Escalation(eps=p.eps, norm=p.norm, eot=eot, seed=p.seed, square_queries=budget[0],
                     max_square_queries=budget[1], spsa_iterations=budget[2])  # fmt: skip
    after = p.correct_prob(esc(p.model, x, y), y)
    p.model.eval()
    p.notes.append("escalation after Square: " + "; ".join(esc.notes))
    return float((before - after).sum()) / p.x.shape[0]


def large_eps(norm: str, x: Tensor) -> float:
    """The "huge" budget of the security curve: 0.5 (L-inf) or 0.5 * sqrt(d) (L2)."""
    return 0.5 if norm == "Linf" else 0.5 * math.sqrt(x[0].numel())


@check("large_eps_accuracy", _CARLINI,
       "at a huge eps accuracy must reach ~0 and fall monotonically with eps")  # fmt: skip
def large_eps_accuracy(p: Probe) -> float:
    """Plain PGD accuracy at a large eps, or the largest rise along the security curve."""
    p.curve = [(float(p.eps), p.measure(p.pgd()))]
    for e in (2 * p.eps, 4 * p.eps, large_eps(p.norm, p.x)):
        if e > p.curve[-1][0]:
            p.curve.append((e, p.measure(p.pgd(label=f"PGD-{p.steps} eps={e:g}"), eps=e)))
    rise = max((b[1] - a[1] for a, b in itertools.pairwise(p.curve)), default=0.0)
    return max(p.curve[-1][1], rise)


@check("stochastic_predictions", _CROCE,
       "predictions change between passes: a randomised defence, evaluate with EOT",
       probe=True)  # fmt: skip
def stochastic_predictions(p: Probe) -> float | None:
    """Fraction of inputs whose prediction changes over 10 passes; None if deterministic."""
    if not p.stochastic:
        return None
    with torch.no_grad():
        preds = torch.stack([p.model(p.x).argmax(1) for _ in range(10)])
    return float((preds != preds[:1]).any(dim=0).float().mean())


@check("gradient_health", f"{_CROCE}; {_PINTOR}",
       "inputs whose CE gradient underflows (saturated softmax) or is non-finite",
       probe=True)  # fmt: skip
def gradient_health(p: Probe) -> float:
    """Fraction of inputs whose CE input gradient is zero while the margin gradient is not,
    or whose gradient is non-finite (``evaluate.health.gradient_health``)."""
    from robustact.evaluate.health import gradient_health as health

    h = health(p.model, p.x, p.y)
    p.notes.append(h.line())
    return float((h.nonfinite | h.underflow).float().mean())
