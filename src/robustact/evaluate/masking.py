"""Gradient-masking report: does a plain gradient attack under-report success?

``masking_report(model, x, y, eps=..., norm=...)`` runs a small battery of attacks and
sanity checks and returns a :class:`MaskingReport` whose ``verdict`` is ``"masked"``,
``"suspect"`` or ``"no evidence"``, with every number behind it.

The *plain* attack is what the seeds ran: PGD on cross-entropy with ordinary gradients, one
forward pass per gradient. Accuracies are over all given points; for stochastic models each
accuracy is the expected single-pass accuracy (mean over ``passes`` forward passes), so two
attacks are compared without the noise of one draw.

Checks (value, threshold; a check is *flagged* when value > threshold):

=====================  =========================================================  ==========
check                  value                                                      threshold
=====================  =========================================================  ==========
zero_gradient          fraction of inputs whose margin-loss input gradient is     0.05
                       exactly zero everywhere (Athalye et al. 2018; AutoAttack's
                       zero-gradient flag; Pintor et al. 2022 "silent" failure)
cap_saturation         fraction of the active (input > 0) capped values that sit   0.5
                       at the cap (``surgery.cap_summary``; dissertation Ch. 3-4)
fgsm_beats_pgd         acc(PGD) − acc(FGSM) (Carlini et al. 2019 §"iterative       0.01
                       attacks should beat single-step")
more_steps_help        acc(PGD-k) − acc(PGD-10k) (Carlini et al. 2019: increase    0.01
                       iterations until it stops helping; Pintor et al. 2022
                       "unconverged attack")
bpda_beats_plain       acc(PGD) − acc(PGD with BPDA through caps) (Athalye 2018)  0.01
eot_beats_single       acc(PGD) − acc(PGD with EOT) (Athalye et al. 2018 §4.1)    0.01
gradient_free_beats    fraction of all points that Square, then the escalation    0.002 and
                       (transfer, growing Square, SPSA: ``evaluate.health``),   4/n (more
                       break among those every gradient attack left correct     than 4 points)
                       (Carlini et al. 2019 §"gradient-free attacks"; Croce &
                       Hein 2020)
large_eps_accuracy     plain PGD-10 accuracy at a large eps (0.5 Linf; 0.5·sqrt(d) 0.1
                       L2), or the largest rise along the security curve
                       (Carlini et al. 2019 "accuracy should reach 0")
gradient_health        fraction of inputs whose CE gradient underflows while the  0.05
                       margin gradient does not, or is non-finite
                       (``evaluate.health.gradient_health``)
stochastic_predictions fraction of inputs whose prediction changes between        0.0
                       forward passes (robustbench's randomised-defence flag)
=====================  =========================================================  ==========

Verdict rule:

* ``"masked"`` — a stronger attack beats the plain one by a large margin: BPDA, EOT or
  gradient-free gap > 0.05 (5 pp); or zero-gradient fraction > 0.5 *and* a stronger-attack
  check (BPDA, gradient-free or large eps) is flagged, confirming that the zero gradients
  hide adversarial examples.
* ``"suspect"`` — any check is flagged.
* ``"no evidence"`` — no check is flagged. This is not a proof of robustness.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from robustact.attacks import FGSM, PGD, Attack, input_gradient
from robustact.attacks.losses import get_loss
from robustact.bpda import bpda_modules
from robustact.evaluate.health import Escalation, gradient_health
from robustact.evaluate.masking_result import MaskingCheck, MaskingReport, Verdict
from robustact.surgery import cap_summary, is_stochastic, straight_through

__all__ = ["THRESHOLDS", "MaskingCheck", "MaskingReport", "masking_report"]

#: Default thresholds (fractions, i.e. 0.01 = 1 percentage point).
THRESHOLDS: dict[str, float] = {
    "zero_gradient": 0.05,
    "cap_saturation": 0.5,
    "fgsm_beats_pgd": 0.01,
    "more_steps_help": 0.01,
    "bpda_beats_plain": 0.01,
    "eot_beats_single": 0.01,
    "gradient_free_beats": 0.002,
    "gradient_free_min_points": 4,
    "large_eps_accuracy": 0.1,
    "stochastic_predictions": 0.0,
    "gradient_health": 0.05,
    # verdict rule
    "masked_gap": 0.05,
    "masked_zero_gradient": 0.5,
}

_CARLINI = "Carlini et al. 2019, On Evaluating Adversarial Robustness"
_ATHALYE = "Athalye et al. 2018, Obfuscated Gradients"
_CROCE = "Croce & Hein 2020, AutoAttack (robustbench checks)"
_PINTOR = "Pintor et al. 2022, Indicators of Attack Failure"


def _correct_prob(model: nn.Module, x: Tensor, y: Tensor, passes: int) -> Tensor:
    """Per-point fraction (N,) of ``passes`` forward passes that classify correctly."""
    with torch.no_grad():
        hits = sum((model(x).argmax(1) == y).float() for _ in range(passes))
    assert isinstance(hits, Tensor)
    return hits / passes


def _run(model: nn.Module, attack: Attack, x: Tensor, y: Tensor, bpda: bool = False) -> Tensor:
    with straight_through(model, x) if bpda else nullcontext():
        return attack(model, x, y)


def _zero_grad_fraction(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Fraction of inputs whose margin-loss input gradient is exactly 0 in every entry.

    The margin (logit difference) is used, not cross-entropy, because a confident
    prediction makes the float32 softmax saturate and the CE gradient underflow to zero
    even where the network itself is not flat.
    """
    _, g, _ = input_gradient(model, x, y, get_loss("margin"))
    return float((g.flatten(1).abs().amax(1) == 0).float().mean())


def _cap_saturation(model: nn.Module, x: Tensor) -> float | None:
    """Fraction of the *active* (input > 0) capped values that sit at the cap, pooled over
    capped layers; the inactive ones pass no gradient under any ReLU and are left out."""
    stats = cap_summary(model, x)
    if not stats:
        return None
    sat = sum(s.saturated * s.units for s in stats)
    active = sum((1.0 - s.inactive) * s.units for s in stats)
    return sat / active if active > 0 else 0.0


def _prediction_flips(model: nn.Module, x: Tensor, passes: int) -> float:
    with torch.no_grad():
        preds = torch.stack([model(x).argmax(1) for _ in range(passes)])
    return float((preds != preds[:1]).any(dim=0).float().mean())


def _esc_budget(fast: bool) -> dict[str, Any]:
    """Escalation budgets: first Square round and cap, SPSA first round."""
    if fast:
        return {"square_queries": 150, "max_square_queries": 600, "spsa_iterations": 20}
    return {"square_queries": 1000, "max_square_queries": 8000, "spsa_iterations": 50}


def _large_eps(norm: str, x: Tensor) -> float:
    return 0.5 if norm == "Linf" else 0.5 * math.sqrt(x[0].numel())


def masking_report(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: str = "Linf",
    fast: bool = False,
    eot_samples: int | None = None,
    passes: int | None = None,
    seed: int = 0,
    thresholds: Mapping[str, float] | None = None,
) -> MaskingReport:
    """Run the masking checks on ``model`` at ``(x, y)`` under threat model (eps, norm).

    Args:
        model: classifier (eval mode is used and restored by every attack).
        x: inputs (N, ...) in [0, 1]; y: labels (N,). A few hundred points suffice.
        eps, norm: the threat model the plain evaluation used.
        fast: fewer steps and queries (for tests); labelled in the notes.
        eot_samples: EOT passes for stochastic models (default 16).
        passes: forward passes per accuracy for stochastic models (default 10).
        seed: seeds every attack and the stochastic layers (forked RNG), so reports repeat.
        thresholds: overrides of :data:`THRESHOLDS`.
    Returns:
        :class:`MaskingReport`.
    """
    th = dict(THRESHOLDS)
    for key, v in (thresholds or {}).items():
        if key not in th:
            raise ValueError(f"unknown threshold {key!r}; known: {', '.join(th)}")
        th[key] = float(v)
    if y.dim() != 1 or y.shape[0] != x.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"need x (N, ...) and y (N,) with N >= 1, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    stochastic = is_stochastic(model, x)  # by behaviour: two eval passes differ
    has_st = bool(bpda_modules(model, x))  # built-in, registered or detected as flat
    k = eot_samples if eot_samples is not None else 16
    p = (passes if passes is not None else 10) if stochastic else 1
    steps = 10
    long_steps = 30 if fast else 100
    queries = 150 if fast else 1000
    # Square is query-bound: in fast mode it averages fewer passes per query on stochastic
    # models; it only has to find points the gradient attacks missed
    sq_eot = (min(k, 4) if fast else k) if stochastic else 1
    n = x.shape[0]
    was_training = model.training
    devices = [x.device] if x.device.type == "cuda" else []
    acc: dict[str, float] = {}
    timing: dict[str, float] = {}
    correct: dict[str, Tensor] = {}
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        try:
            model.eval()

            def measure(label: str, attack: Attack, bpda: bool = False) -> float:
                t0 = time.perf_counter()
                correct[label] = _correct_prob(model, _run(model, attack, x, y, bpda), y, p)
                acc[label] = float(correct[label].mean())
                timing[label] = time.perf_counter() - t0
                model.eval()
                return acc[label]

            def pgd(e: float, n_steps: int, **kw: Any) -> PGD:
                return PGD(eps=e, norm=norm, steps=n_steps, seed=seed, **kw)

            acc["clean"] = float(_correct_prob(model, x, y, p).mean())
            health = gradient_health(model, x, y)
            zero = _zero_grad_fraction(model, x, y)
            sat = _cap_saturation(model, x)
            flips = _prediction_flips(model, x, 10) if stochastic else None
            a_fgsm = measure("FGSM", FGSM(eps=eps, norm=norm, seed=seed))
            a_pgd = measure(f"PGD-{steps}", pgd(eps, steps))
            a_long = measure(f"PGD-{long_steps}", pgd(eps, long_steps))
            a_bpda = a_eot = None
            if has_st:
                a_bpda = measure(f"PGD-{steps}+BPDA", pgd(eps, steps), bpda=True)
            if stochastic:
                a_eot = measure(f"PGD-{steps}+EOT{k}", pgd(eps, steps, eot=k))
            # the strongest gradient attack here: margin loss, BPDA, EOT, more steps
            strong = pgd(eps, long_steps, loss="margin", eot=k if stochastic else 1)
            measure(f"PGD-{long_steps}-margin+BPDA+EOT", strong, bpda=has_st)
            # per point, the best any gradient attack did (expected correctness)
            grad_min = torch.stack(list(correct.values())).amin(dim=0)
            acc["gradient worst case"] = float(grad_min.mean())
            # gradient-free attack on the points every gradient attack left correct
            surv = grad_min > 0.5
            gain = 0.0
            escalation_notes: list[str] = []
            t0 = time.perf_counter()
            if bool(surv.any()):
                from robustact.attacks.square import Square

                sq = Square(eps=eps, norm=norm, queries=queries, eot=sq_eot, seed=seed)
                xs = _run(model, sq, x[surv], y[surv])
                model.eval()
                pc = _correct_prob(model, xs, y[surv], p)
                gain = float((grad_min[surv] - pc).sum()) / n
                left = pc > 0.5  # escalate (transfer, growing Square, SPSA) on the rest
                if bool(left.any()):
                    esc = Escalation(eps=eps, norm=norm, eot=sq_eot, seed=seed, **_esc_budget(fast))
                    xe = _run(model, esc, x[surv][left], y[surv][left])
                    model.eval()
                    gain += float((pc[left] - _correct_prob(model, xe, y[surv][left], p)).sum()) / n
                    escalation_notes = esc.notes
            acc[f"gradient worst case+Square-{queries}"] = acc["gradient worst case"] - gain
            timing[f"Square-{queries}+escalation"] = time.perf_counter() - t0
            curve = [(float(eps), a_pgd)]
            for e in (2 * eps, 4 * eps, _large_eps(norm, x)):
                if e > curve[-1][0]:
                    curve.append((e, measure(f"PGD-{steps} eps={e:g}", pgd(e, steps))))
        finally:
            model.train(was_training)

    rise = max((b[1] - a[1] for a, b in itertools.pairwise(curve)), default=0.0)
    large_val = max(curve[-1][1], rise)

    # a few points that random search breaks and a short PGD misses exist on any network;
    # below the noise floor of ``gradient_free_min_points`` points the 0.2 pp rule is moot
    th["gradient_free_beats"] = max(th["gradient_free_beats"], th["gradient_free_min_points"] / n)

    def chk(name: str, value: float | None, cite: str, expl: str) -> MaskingCheck:
        t = th[name]
        return MaskingCheck(name, value, t, value is not None and value > t, cite, expl)

    checks = [
        chk(
            "zero_gradient",
            zero,
            f"{_ATHALYE}; {_CROCE}; {_PINTOR}",
            "inputs whose margin-loss input gradient is exactly zero: gradient attacks cannot move",
        ),
        chk(
            "cap_saturation",
            sat,
            "dissertation Ch. 3-4 (S-ReLU); surgery.cap_summary",
            "capped units sitting at their cap pass no gradient (n/a: no caps)",
        ),
        chk(
            "fgsm_beats_pgd",
            a_pgd - a_fgsm,
            _CARLINI,
            "a single step should never beat an iterative attack of the same budget",
        ),
        chk(
            "more_steps_help",
            a_pgd - a_long,
            f"{_CARLINI}; {_PINTOR}",
            f"PGD-{long_steps} beats PGD-{steps}: the short attack had not converged",
        ),
        chk(
            "bpda_beats_plain",
            None if a_bpda is None else a_pgd - a_bpda,
            _ATHALYE,
            "a straight-through gradient through caps finds what plain gradients miss",
        ),
        chk(
            "eot_beats_single",
            None if a_eot is None else a_pgd - a_eot,
            _ATHALYE,
            f"averaging {k} stochastic passes per gradient beats single-sample gradients",
        ),
        chk(
            "gradient_free_beats",
            gain,
            f"{_CARLINI}; {_CROCE}",
            "Square/escalation break points every gradient attack missed: gradients mislead",
        ),
        chk(
            "large_eps_accuracy",
            large_val,
            _CARLINI,
            "at a huge eps accuracy must reach ~0 and fall monotonically with eps",
        ),
        chk(
            "gradient_health",
            float((health.nonfinite | health.underflow).float().mean()),
            f"{_CROCE}; {_PINTOR}",
            "inputs whose CE gradient underflows (saturated softmax) or is non-finite",
        ),
        chk(
            "stochastic_predictions",
            flips,
            _CROCE,
            "predictions change between passes: a randomised defence, evaluate with EOT",
        ),
    ]
    by = {c.name: c for c in checks}
    gaps = [by[n] for n in ("bpda_beats_plain", "eot_beats_single", "gradient_free_beats")]
    big = [c for c in gaps if c.value is not None and c.value > th["masked_gap"]]
    confirm = [c for c in (*gaps[::2], by["large_eps_accuracy"]) if c.flagged]
    verdict: Verdict
    if big:
        verdict = "masked"
        reason = ", ".join(f"{c.name} = {100 * (c.value or 0):.1f} pp" for c in big) + (
            f" > {100 * th['masked_gap']:g} pp"
        )
    elif zero > th["masked_zero_gradient"] and confirm:
        verdict = "masked"
        reason = (
            f"{100 * zero:.0f}% zero gradients, confirmed by {', '.join(c.name for c in confirm)}"
        )
    elif any(c.flagged for c in checks):
        verdict = "suspect"
        reason = "flagged: " + ", ".join(c.name for c in checks if c.flagged)
    else:
        verdict, reason = "no evidence", "no check flagged (not a proof of robustness)"
    notes = [
        f"{norm} eps={eps:g}, n={x.shape[0]}{', FAST' if fast else ''}; plain = PGD-CE "
        f"{steps} steps of 2.5*eps/{steps}, random start, seed {seed}",
        f"stochastic: {stochastic} (EOT {k}, {p} passes per accuracy); "
        f"straight-through modules: {has_st}",
        "security curve: " + ", ".join(f"eps {e:g}: {100 * a:.1f}%" for e, a in curve),
        "seconds: " + ", ".join(f"{k_} {v:.1f}" for k_, v in timing.items()),
        health.line(),
        "escalation after Square: " + ("; ".join(escalation_notes) or "not needed"),
    ]
    return MaskingReport(
        verdict=verdict,
        reason=reason,
        checks=checks,
        accuracies=acc,
        security_curve=curve,
        eps=float(eps),
        norm=norm,
        n=int(x.shape[0]),
        fast=fast,
        notes=notes,
    )
