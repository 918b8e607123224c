"""The paper protocols: what each source paper ran for one experiment, and nothing more.

The built-in ``seed`` protocol is the dissertation's Chapter 5 list (FGSM, PGD-10, APGD-CE,
APGD-DLR, CW-L2, Square). An experiment of Chapter 3 or 4, or of the BReLU paper, ran fewer
attacks; its worst case over Chapter 5's list would hide the very gap a recipe reproduces
(a capped ReLU that looks robust to FGSM and PGD, the only attacks Table 4.2 ran, also
falls to Square). So each recipe names the protocol of its own experiment:

``seed-table4_2``
    Dissertation §4.5.3 (Table 4.2, also the paper protocol of §4.6's models): FGSM and
    PGD with 10 steps of eps/10 (0.01 at eps 0.1, as §4.5.5 states).
``seed-table4_3``
    Dissertation §4.5.5 (Table 4.3): FGSM, PGD-10 (step 0.01 at eps 0.1) and CW-L2 with
    10 000 iterations, learning rate 0.01, initial constant 0.001 and 9 binary-search
    steps; Chapter 4 states no L2 bound, so CW is unbounded (its own threat model, a
    column of its own, not in the worst case).
``seed-ch3``
    Dissertation §3.1 (Figs 3.1-3.2): PGD with 20 iterations of step eps/10 (2/256 at
    eps 20/256).
``seed-brelu``
    The BReLU paper's Tables 2-3 (seeds/003 §4.2): FGSM, PGD-20 and CW at eps 0.0314; the
    paper gives PGD's step only for PGD-7 (0.00784 at eps 0.03 ~ eps/4), so PGD-20 takes
    eps/4; CW's settings are unstated (torchattacks' defaults: c 1, kappa 0, 50 steps,
    lr 0.01, unbounded, its own column).
``seed-brelu-pgd7``
    The BReLU paper's PGD-7 (Table 1's robust accuracy, Table 4, Fig 4): 7 steps of eps/4
    (0.00784 at eps 0.03, the training attack's settings).

Every PGD here runs as the papers' PGD did (:class:`PaperPGD`): all steps for every point
and the last iterate returned, with one forward pass per gradient. The evaluation PGD
(``robustact.attacks.PGD``) instead stops a point at its first fooling iterate, which on a
stochastic model (BReLU) means the first time one random forward pass misclassified it:
a stronger attack than the paper ran, so it would understate the paper's number. All
paper protocols run every attack on all clean-correct points (the papers report one
column per attack), with plain gradients, no EOT and no BPDA.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from robustact.evaluate.catalog import PROTOCOLS, _entry, get_protocol
from robustact.evaluate.protocol import Protocol, ProtocolEntry
from robustact.train.adversary import TrainingPGD

__all__ = ["PAPER_PGD", "PaperPGD", "protocol_attacks"]


class PaperPGD(TrainingPGD):
    """PGD as the source papers ran it (torchattacks' ``PGD``): a random start, all
    ``steps`` steps for every point, the last iterate returned; no early exit and no
    EOT, so on a stochastic model each gradient and the final check are one random
    forward pass each.

    Args:
        eps: radius; norm: ``"Linf"`` or ``"L2"``.
        steps: gradient steps.
        step_size: step length; default ``2.5 * eps / steps``.
        loss: ``"ce"`` (the papers), ``"margin"`` or ``"dlr"``.
        random_start: start uniformly in the ball (else at x).
        seed: seed of the random start (None: torch's RNG, which ``evaluate`` seeds).
    """

    name = "pgd_full"


#: The attack factory of every paper protocol's PGD (registered nowhere else: the
#: evaluation attack ``pgd`` keeps its early exit).
PAPER_PGD = PaperPGD


def _pgd(label: str, steps: int, step_size: float) -> ProtocolEntry:
    return ProtocolEntry(
        label=label,
        attack=PaperPGD,
        kwargs={"steps": steps, "step_size": step_size, "random_start": True},
    )


def _paper(
    name: str, entries: tuple[ProtocolEntry, ...], eps: float, norm: str, fast: bool
) -> Protocol:
    return Protocol(
        name, entries, eps, norm, fast=fast, cascade=False, eot_samples=1,
        repeats=3 if fast else 5,
    )  # fmt: skip


@PROTOCOLS.register("seed-table4_2")
def _table4_2(eps: float, norm: str, fast: bool) -> Protocol:
    entries = (_entry("FGSM", "fgsm", random_start=False), _pgd("PGD-10", 10, eps / 10))
    return _paper("seed-table4_2", entries, eps, norm, fast)


@PROTOCOLS.register("seed-table4_3")
def _table4_3(eps: float, norm: str, fast: bool) -> Protocol:
    cw = _entry(
        "CW-L2", "cw", c=0.001, kappa=0.0, steps=100 if fast else 10_000, lr=0.01,
        binary_search_steps=3 if fast else 9, own_threat=True,
    )  # fmt: skip
    entries = (_entry("FGSM", "fgsm", random_start=False), _pgd("PGD-10", 10, eps / 10), cw)
    return _paper("seed-table4_3", entries, eps, norm, fast)


@PROTOCOLS.register("seed-ch3")
def _ch3(eps: float, norm: str, fast: bool) -> Protocol:
    return _paper("seed-ch3", (_pgd("PGD-20", 20, eps / 10),), eps, norm, fast)


@PROTOCOLS.register("seed-brelu")
def _brelu(eps: float, norm: str, fast: bool) -> Protocol:
    cw = _entry(
        "CW", "cw", c=1.0, kappa=0.0, steps=20 if fast else 50, lr=0.01,
        binary_search_steps=1, own_threat=True,
    )  # fmt: skip
    entries = (_entry("FGSM", "fgsm", random_start=False), _pgd("PGD-20", 20, eps / 4), cw)
    return _paper("seed-brelu", entries, eps, norm, fast)


@PROTOCOLS.register("seed-brelu-pgd7")
def _brelu_pgd7(eps: float, norm: str, fast: bool) -> Protocol:
    return _paper("seed-brelu-pgd7", (_pgd("PGD-7", 7, eps / 4),), eps, norm, fast)


def protocol_attacks(
    protocol: str | Mapping[str, Any] | Protocol,
    *,
    norm: str = "Linf",
    worst_case_only: bool = False,
) -> list[str]:
    """The attack labels a protocol holds, in order (what its report column names).

    Args:
        protocol: a built-in name (``list_protocols()``), a spec entry as a cell's config
            stores it (``{"name": ...}`` or ``{"name": ..., "attacks": [...]}``) or a
            :class:`Protocol`.
        norm: the threat model's norm (decides whether CW-L2 counts in ``seed``).
        worst_case_only: leave out the attacks with their own threat model (reported as
            their own column, not in the protocol's worst case).

    Returns:
        e.g. ``["FGSM", "PGD-10"]`` for ``"seed-table4_2"``.
    """
    if isinstance(protocol, Protocol):
        proto = protocol
    elif isinstance(protocol, str):
        proto = get_protocol(protocol, eps=0.1, norm=norm)
    elif isinstance(protocol, Mapping) and "attacks" in protocol:
        proto = Protocol.from_spec(list(protocol["attacks"]), eps=0.1, norm=norm)
    elif isinstance(protocol, Mapping) and "name" in protocol:
        proto = get_protocol(str(protocol["name"]), eps=0.1, norm=norm)
    else:
        raise TypeError(
            f"protocol must be a name, a spec entry with a 'name' or a Protocol, got {protocol!r}"
        )
    return [e.label for e in proto.entries if not (worst_case_only and e.own_threat)]
