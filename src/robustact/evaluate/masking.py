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
                       (``evaluate.health.Escalation``: transfer, growing Square, 4/n (more
                       SPSA) break among those every gradient attack left        than 4 points)
                       correct (Carlini et al. 2019; Croce & Hein 2020)
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

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from robustact.attacks import DEFAULT_EOT
from robustact.attacks.threat import canonical_norm
from robustact.bpda import bpda_modules
from robustact.evaluate.masking_checks import CHECKS, Probe
from robustact.evaluate.masking_result import MaskingCheck, MaskingReport, Verdict
from robustact.surgery import is_stochastic

__all__ = ["THRESHOLDS", "MaskingCheck", "MaskingReport", "masking_report", "verdict_of"]

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


def _thresholds(overrides: Mapping[str, float] | None, n: int) -> dict[str, float]:
    th = dict(THRESHOLDS)
    for key, v in (overrides or {}).items():
        if key not in th:
            raise ValueError(f"unknown threshold {key!r}; known: {', '.join(th)}")
        th[key] = float(v)
    # a few points that random search breaks and a short PGD misses exist on any network;
    # below the noise floor of ``gradient_free_min_points`` points the 0.2 pp rule is moot
    th["gradient_free_beats"] = max(th["gradient_free_beats"], th["gradient_free_min_points"] / n)
    return th


def verdict_of(checks: list[MaskingCheck], th: Mapping[str, float]) -> tuple[Verdict, str]:
    """The verdict rule (module docstring) applied to the checks: ``(verdict, reason)``."""
    by = {c.name: c for c in checks}
    gaps = [by[n] for n in ("bpda_beats_plain", "eot_beats_single", "gradient_free_beats")]
    big = [c for c in gaps if c.value is not None and c.value > th["masked_gap"]]
    confirm = [c for c in (*gaps[::2], by["large_eps_accuracy"]) if c.flagged]
    zero = by["zero_gradient"].value or 0.0
    if big:
        return "masked", ", ".join(f"{c.name} = {100 * (c.value or 0):.1f} pp" for c in big) + (
            f" > {100 * th['masked_gap']:g} pp"
        )
    if zero > th["masked_zero_gradient"] and confirm:
        names = ", ".join(c.name for c in confirm)
        return "masked", f"{100 * zero:.0f}% zero gradients, confirmed by {names}"
    if any(c.flagged for c in checks):
        return "suspect", "flagged: " + ", ".join(c.name for c in checks if c.flagged)
    return "no evidence", "no check flagged (not a proof of robustness)"


def _run_checks(p: Probe, th: Mapping[str, float]) -> list[MaskingCheck]:
    """Every check of :data:`~robustact.evaluate.masking_checks.CHECKS`, probes first (the
    attacks then run in one fixed order), returned in report order."""
    from robustact.progress import task

    values: dict[str, float | None] = {}
    order = sorted(CHECKS.values(), key=lambda c: not c.probe)
    # one step per check on the run's display (a transient row under the evaluation's)
    with task(f"masking eps={p.eps:g}", total=len(order), transient=True) as row:
        for c in order:
            row.status(check=c.name)
            values[c.name] = c.value(p)
            row.advance()
    fmt = {"steps": p.steps, "long_steps": p.long_steps, "eot": p.eot}
    out = []
    for c in CHECKS.values():
        v, t = values[c.name], th[c.name]
        flagged = v is not None and v > t
        out.append(MaskingCheck(c.name, v, t, flagged, c.citation, c.explanation.format(**fmt)))
    return out


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
        eot_samples: EOT passes for stochastic models (default ``attacks.DEFAULT_EOT``).
        passes: forward passes per accuracy for stochastic models (default 10).
        seed: seeds every attack and the stochastic layers (forked RNG), so reports repeat.
        thresholds: overrides of :data:`THRESHOLDS`.
    Returns:
        :class:`MaskingReport`.
    """
    if y.dim() != 1 or y.shape[0] != x.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"need x (N, ...) and y (N,) with N >= 1, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    th = _thresholds(thresholds, x.shape[0])
    norm = canonical_norm(norm)
    stochastic = is_stochastic(model, x)  # by behaviour: two eval passes differ
    p = Probe(
        model, x, y, float(eps), norm, seed, fast, stochastic,
        has_st=bool(bpda_modules(model, x)),  # built-in, registered or detected as flat
        eot=eot_samples if eot_samples is not None else DEFAULT_EOT,
        passes=(passes if passes is not None else 10) if stochastic else 1,
        long_steps=30 if fast else 100, queries=150 if fast else 1000,
    )  # fmt: skip
    was_training = model.training
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        try:
            model.eval()
            p.acc["clean"] = float(p.correct_prob(x, y).mean())
            checks = _run_checks(p, th)
        finally:
            model.train(was_training)
    verdict, reason = verdict_of(checks, th)
    notes = [
        f"{norm} eps={eps:g}, n={x.shape[0]}{', FAST' if fast else ''}; plain = PGD-CE "
        f"{p.steps} steps of 2.5*eps/{p.steps}, random start, seed {seed}",
        f"stochastic: {stochastic} (EOT {p.eot}, {p.passes} passes per accuracy); "
        f"straight-through modules: {p.has_st}",
        "security curve: " + ", ".join(f"eps {e:g}: {100 * a:.1f}%" for e, a in p.curve),
        "seconds: " + ", ".join(f"{k_} {v:.1f}" for k_, v in p.timing.items()),
        *p.notes,
    ]
    return MaskingReport(
        verdict=verdict, reason=reason, checks=checks, accuracies=p.acc,
        security_curve=p.curve, eps=float(eps), norm=norm, n=int(x.shape[0]), fast=fast,
        notes=notes,
    )  # fmt: skip
