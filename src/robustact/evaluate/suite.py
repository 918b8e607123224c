"""``evaluate_suite``: protocols × eps, the masking report and the diagnostics, in one call.

This is the only place that orchestrates a full evaluation; the experiment cells, the
CLI (``evaluate``, ``diagnose``) and the demo all call it, so they share one set of
defaults and produce the same typed rows (:mod:`robustact.evaluate.rows`) for the same
model, data and seed.

* Every protocol is evaluated at every eps (:func:`~robustact.evaluate.runner.evaluate`,
  seeded with ``seed``). Clean rows are eps-independent and stored once per protocol; an
  attack with its own threat model (``own_threat``, e.g. CW-L2 in an L-inf protocol) runs
  at the first eps only and its rows carry its own threat model.
* The masking report (:func:`~robustact.evaluate.masking.masking_report`) runs at every
  eps on the first ``masking_n`` points.
* Diagnostics (:mod:`robustact.evaluate.diagnose`) run once, in a forked RNG seeded with
  ``seed``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from robustact._validate import is_int
from robustact.attacks.threat import canonical_norm
from robustact.evaluate._notebook import NotebookMixin, display_protocol
from robustact.evaluate.catalog import get_protocol
from robustact.evaluate.diagnose import DiagnosticContext, run_diagnostics
from robustact.evaluate.masking import masking_report
from robustact.evaluate.masking_result import MaskingReport
from robustact.evaluate.protocol import Protocol
from robustact.evaluate.results import EvalResult
from robustact.evaluate.rows import VERDICTS, MetricRow
from robustact.evaluate.runner import evaluate
from robustact.progress import Task, task

__all__ = ["ProtocolSpec", "SuiteResult", "build_protocol", "evaluate_suite"]

#: A protocol name, a spec entry (``{"name": ..., "attacks": [...], ...}``) or a Protocol.
ProtocolSpec = str | Mapping[str, Any] | Protocol


def build_protocol(spec: ProtocolSpec, eps: float, norm: str, fast: bool) -> Protocol:
    """A built-in protocol by name, a spec's custom attack list, or a Protocol, at (eps, norm)."""
    if isinstance(spec, Protocol):
        return spec.with_threat(eps, norm)
    if isinstance(spec, str):
        return get_protocol(spec, eps=eps, norm=norm, fast=fast)
    if "attacks" not in spec:
        return get_protocol(str(spec["name"]), eps=eps, norm=norm, fast=fast)
    opts = {k: spec[k] for k in ("cascade", "eot_samples", "repeats") if k in spec}
    return Protocol.from_spec(
        list(spec["attacks"]), eps=eps, norm=norm, name=str(spec["name"]), fast=fast, **opts
    )


@dataclass
class SuiteResult(NotebookMixin):
    """Everything :func:`evaluate_suite` measured.

    Attributes:
        evaluations: one :class:`EvalResult` per (protocol, eps), protocol-major.
        masking: eps -> :class:`MaskingReport` (empty when masking was off).
        diagnostics: diagnostic name -> its full result (JSON).
        rows: the typed rows of all of it (results, masking, diagnostics).
        seconds: wall time of "evaluate", "masking" and "diagnostics".
        seed: the seed of every attack.
    """

    evaluations: list[EvalResult]
    masking: dict[float, MaskingReport] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    rows: list[MetricRow] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    seed: int = 0

    def masking_summary(self) -> dict[str, Any] | None:
        """The most severe eps's verdict, reason and checks on top, every eps's report in
        ``by_eps`` (None when masking was off)."""
        if not self.masking:
            return None
        reports = [rep.to_dict() for rep in self.masking.values()]
        worst = max(reports, key=lambda r: VERDICTS.index(r["verdict"]))
        return {
            "verdict": worst["verdict"], "reason": worst["reason"], "eps": worst["eps"],
            "checks": worst["checks"], "by_eps": reports,
        }  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON: evaluations keyed ``<protocol>@<eps>``, masking keyed by eps, diagnostics,
        the typed rows and the seed."""
        return {
            "evaluations": {f"{r.protocol}@{r.eps:g}": r.to_dict() for r in self.evaluations},
            "masking": {f"{eps:g}": rep.to_dict() for eps, rep in self.masking.items()},
            "diagnostics": self.diagnostics,
            "rows": [r.to_dict() for r in self.rows],
            "seed": self.seed,
        }

    def __repr__(self) -> str:
        evals = ", ".join(f"{display_protocol(r.protocol)}@{r.eps:g}" for r in self.evaluations)
        masks = ", ".join(f"{e:g}: {rep.verdict}" for e, rep in self.masking.items())
        return (
            f"<SuiteResult {len(self.evaluations)} evaluations ({evals or 'none'}), masking "
            f"({masks or 'off'}), {len(self.diagnostics)} diagnostics, seed {self.seed}>"
        )

    def _repr_html_(self) -> str:
        """Every evaluation's and masking report's HTML view, in order."""
        parts = [r._repr_html_() for r in self.evaluations]
        parts += [rep._repr_html_() for rep in self.masking.values()]
        return "<div>" + "".join(parts) + "</div>"

    def to_records(self) -> list[dict[str, Any]]:
        """The typed rows of everything as dicts (long format; fractions)."""
        return [r.to_dict() for r in self.rows]


def _once(proto: Protocol) -> Protocol | None:
    """``proto`` without its own-threat attacks (already run at the first eps); None when
    nothing is left."""
    entries = tuple(e for e in proto.entries if not e.own_threat)
    if len(entries) == len(proto.entries):
        return proto
    return replace(proto, entries=entries) if entries else None


def _evaluations(
    model: nn.Module, x: Tensor, y: Tensor, protocols: Sequence[ProtocolSpec],
    eps: Sequence[float], norm: str, fast: bool, seed: int, batch_size: int, progress: Task,
) -> tuple[list[EvalResult], list[MetricRow]]:  # fmt: skip
    results: list[EvalResult] = []
    rows: list[MetricRow] = []
    for spec in protocols:
        for i, e in enumerate(eps):
            proto = build_protocol(spec, float(e), norm, fast)
            run = proto if i == 0 else _once(proto)
            if run is None:
                continue
            res = evaluate(model, x, y, protocol=run, batch_size=batch_size, seed=seed)
            results.append(res)
            rows += res.rows(with_clean=i == 0)
            progress.advance(status=f"{run.name} eps={run.eps:g}")
    return results, rows


def evaluate_suite(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: Sequence[float],
    protocols: Sequence[ProtocolSpec] = ("seed", "adaptive"),
    norm: str = "Linf",
    fast: bool = False,
    seed: int = 0,
    batch_size: int = 512,
    masking: bool = False,
    masking_n: int = 200,
    diagnostics: Sequence[Mapping[str, Any] | str] = (),
    history: Sequence[Mapping[str, Any]] = (),
) -> SuiteResult:
    """Evaluate ``model`` under every protocol and eps, with masking report and diagnostics.

    Args:
        model: classifier mapping images (N, C, H, W) in [0, 1] to logits (N, K).
        x, y: test points (N, C, H, W) and labels (N,), on the model's device.
        eps: the budgets; norm: "Linf" or "L2"; fast: the protocols' cut-down settings.
        protocols: names, spec entries or :class:`Protocol` objects (default: seed and
            adaptive, side by side).
        seed: seeds every attack (same seed, same numbers).
        batch_size: points per attack call.
        masking: run the masking report at each eps on the first ``masking_n`` points.
        diagnostics: names or ``{"name": ..., **options}`` of
            :data:`robustact.evaluate.diagnose.DIAGNOSTICS`.
        history: training records (for the ``cap_trajectory`` diagnostic).
    Returns:
        :class:`SuiteResult`.
    """
    if not eps:
        raise ValueError("evaluate_suite needs at least one eps, e.g. eps=[0.1]")
    if not is_int(masking_n) or masking_n < 1:
        raise ValueError(f"masking_n must be an int >= 1, got {masking_n!r}")
    steps = len(protocols) * len(eps) + (len(eps) if masking else 0) + (1 if diagnostics else 0)
    with task("evaluation", total=steps) as progress:
        t0 = time.perf_counter()
        evals, rows = _evaluations(
            model, x, y, protocols, eps, norm, fast, seed, batch_size, progress
        )
        out = SuiteResult(
            evals, rows=rows, seed=seed, seconds={"evaluate": time.perf_counter() - t0}
        )
        norm = canonical_norm(norm)
        if masking:
            t0 = time.perf_counter()
            m = min(len(y), masking_n)
            for e in eps:
                rep = masking_report(
                    model, x[:m], y[:m], eps=float(e), norm=norm, fast=fast, seed=seed
                )
                out.masking[float(e)] = rep
                out.rows += rep.rows()
                progress.advance(status=f"masking eps={float(e):g}")
            out.seconds["masking"] = time.perf_counter() - t0
        if diagnostics:
            t0 = time.perf_counter()
            ctx = DiagnosticContext(model, x, y, [float(e) for e in eps], norm, seed, list(history))
            devices = [x.device] if x.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                drows, out.diagnostics = run_diagnostics(ctx, diagnostics)
            out.rows += drows
            out.seconds["diagnostics"] = time.perf_counter() - t0
            progress.advance(status="diagnostics")
        return out
