"""The named protocols (``seed``, ``adaptive``, ``autoattack``, ``autoattack-rand``, and
each experiment's paper protocol from :mod:`robustact.evaluate.paper_protocols`:
``seed-table4_2``, ``seed-table4_3``, ``seed-ch3``, ``seed-brelu``, ``seed-brelu-pgd7``)
and their registry; see :mod:`robustact.evaluate.protocol` for what each one runs and why."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from robustact._registry import Registry
from robustact.attacks.adaptive import DEFAULT_EOT
from robustact.attacks.threat import canonical_norm
from robustact.evaluate.health import Escalation
from robustact.evaluate.protocol import Protocol, ProtocolEntry

__all__ = ["PROTOCOLS", "get_protocol", "list_protocols"]

ProtocolBuilder = Callable[[float, str, bool], Protocol]

#: Named protocols: ``builder(eps, norm, fast) -> Protocol``.
PROTOCOLS: Registry[ProtocolBuilder] = Registry("protocol")


def get_protocol(name: str, *, eps: float, norm: str = "Linf", fast: bool = False) -> Protocol:
    """The named protocol (``list_protocols()``) under threat model (eps, norm)."""
    return PROTOCOLS.get(name)(float(eps), canonical_norm(norm), bool(fast))


def list_protocols() -> list[str]:
    """Names of the built-in protocols."""
    return PROTOCOLS.names()


def _entry(label: str, attack: str, **kw: Any) -> ProtocolEntry:
    opts = {k: kw.pop(k) for k in ("bpda", "eot", "own_threat") if k in kw}
    return ProtocolEntry(label=label, attack=attack, kwargs=kw, **opts)


def _protocol(
    name: str,
    entries: tuple[ProtocolEntry, ...],
    eps: float,
    norm: str,
    fast: bool,
    *,
    cascade: bool,
    eot_samples: int = 1,
) -> Protocol:
    """A built-in protocol: a stochastic model runs it 5 times (3 when fast). The paper
    protocols (``cascade=False``) run every attack on every point with no EOT; the others
    cascade, as AutoAttack does."""
    return Protocol(
        name, entries, eps, norm, fast=fast, cascade=cascade, eot_samples=eot_samples,
        repeats=3 if fast else 5,
    )  # fmt: skip


def _through_caps(label: str, attack: str, **kw: Any) -> ProtocolEntry:
    """An adaptive gradient attack: BPDA through caps, EOT over a model's randomness."""
    return _entry(label, attack, bpda=True, eot="auto", **kw)


@PROTOCOLS.register("seed")
def _seed(eps: float, norm: str, fast: bool) -> Protocol:
    cw_bound = 18.0  # dissertation §5.2.1: "the perturbation bound for CW_L2 [is] 18"
    cw_counts = norm == "L2" and eps >= cw_bound
    entries = (
        _entry("FGSM", "fgsm", random_start=False),
        _entry("PGD-10", "pgd", steps=10, step_size=eps / 10, random_start=True),
        _entry("APGD-CE", "apgd", loss="ce", steps=20 if fast else 100),
        _entry("APGD-DLR", "apgd", loss="dlr", steps=20 if fast else 100),
        _entry(
            "CW-L2",
            "cw",
            c=0.001,
            kappa=0.0,
            steps=100 if fast else 10_000,
            lr=0.01,
            binary_search_steps=3 if fast else 9,
            eps=cw_bound,
            own_threat=not cw_counts,
        ),
        _entry("Square", "square", queries=300 if fast else 5000, p_init=0.8),
    )
    return _protocol("seed", entries, eps, norm, fast, cascade=False)


@PROTOCOLS.register("adaptive")
def _adaptive(eps: float, norm: str, fast: bool) -> Protocol:
    steps = 20 if fast else 100
    entries = (
        _through_caps("APGD-CE+BPDA", "apgd", loss="ce", steps=steps),
        _through_caps("APGD-DLR+BPDA", "apgd", loss="dlr", steps=steps),
        _through_caps(
            "PGD-margin+BPDA",
            "pgd",
            loss="margin",
            steps=steps,
            restarts=1 if fast else 5,
            random_start=True,
        ),
        _through_caps(
            "APGD-T+BPDA",
            "apgd",
            loss="dlr",
            targeted=True,
            n_target_classes=3 if fast else 9,
            steps=steps,
        ),
        _entry("Square+EOT", "square", queries=300 if fast else 5000, p_init=0.8, eot="auto"),
        ProtocolEntry(
            label="Escalation",
            attack=Escalation,
            kwargs=(
                {"square_queries": 300, "max_square_queries": 1200, "spsa_iterations": 20}
                if fast
                else {}
            ),
            eot="auto",
        ),
    )
    return _protocol(
        "adaptive", entries, eps, norm, fast, cascade=True, eot_samples=8 if fast else DEFAULT_EOT
    )


@PROTOCOLS.register("autoattack")
def _autoattack(eps: float, norm: str, fast: bool) -> Protocol:
    steps = 20 if fast else 100
    targets = 3 if fast else 9
    entries = (
        _entry("APGD-CE", "apgd", loss="ce", steps=steps),
        _entry(
            "APGD-T",
            "apgd",
            loss="dlr",
            targeted=True,
            n_target_classes=targets,
            steps=steps,
        ),
        # AutoAttack standard: FAB-T with 1 run per target, alpha_max 0.1, eta 1.05, beta 0.9
        _entry("FAB-T", "fab", targeted=True, n_target_classes=targets, steps=steps),
        _entry("Square", "square", queries=300 if fast else 5000, p_init=0.8, resample=False),
    )
    return _protocol("autoattack", entries, eps, norm, fast, cascade=True)


@PROTOCOLS.register("autoattack-rand")
def _autoattack_rand(eps: float, norm: str, fast: bool) -> Protocol:
    # AutoAttack's version='rand' for randomised defences: EOT over 20 passes per gradient
    steps = 20 if fast else 100
    eot = 8 if fast else 20
    entries = (
        _entry("APGD-CE+EOT", "apgd", loss="ce", steps=steps, eot=eot),
        _entry("APGD-DLR+EOT", "apgd", loss="dlr", steps=steps, eot=eot),
    )
    return _protocol("autoattack-rand", entries, eps, norm, fast, cascade=True, eot_samples=eot)


# the per-experiment paper protocols register themselves here (they import this module)
from robustact.evaluate import paper_protocols as _paper_protocols  # noqa: E402, F401
