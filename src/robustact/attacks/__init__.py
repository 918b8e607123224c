"""Adversarial attacks: ``attack.run(model, x, y) -> AttackResult``, ``attack(model, x, y) ->
x_adv`` (see :mod:`robustact.attacks.base`, which also says how to write one).

Threat models are step objects (:mod:`~robustact.attacks.threat`, ``Unbounded`` for
eps = inf), losses pure functions (:mod:`~robustact.attacks.losses`). Every attack registers
itself in :data:`ATTACKS`: fgsm, pgd, apgd (+ apgd-ce, apgd-dlr, apgd-t), cw, square,
zerograd_pgd, fab (+ fab-t), fmn. BPDA and EOT compose as a wrapper:
:class:`~robustact.attacks.adaptive.Adaptive`.
"""

from robustact.attacks import losses
from robustact.attacks.adaptive import DEFAULT_EOT, Adaptive, bpda_scope, resolve_eot
from robustact.attacks.apgd import APGD, APGDCE, APGDDLR, APGDT
from robustact.attacks.base import (
    ATTACKS,
    Attack,
    AttackResult,
    get_attack,
    input_gradient,
    list_attacks,
)
from robustact.attacks.cw import CW
from robustact.attacks.fab import FAB, FABT
from robustact.attacks.fgsm import FGSM
from robustact.attacks.fmn import FMN
from robustact.attacks.pgd import PGD
from robustact.attacks.square import Square
from robustact.attacks.threat import L2, Linf, Threat, Unbounded, make_threat
from robustact.attacks.zerograd import ZeroGradPGD, ZeroGradResult

__all__ = [
    "APGD",
    "APGDCE",
    "APGDDLR",
    "APGDT",
    "ATTACKS",
    "CW",
    "DEFAULT_EOT",
    "FAB",
    "FABT",
    "FGSM",
    "FMN",
    "L2",
    "PGD",
    "Adaptive",
    "Attack",
    "AttackResult",
    "Linf",
    "Square",
    "Threat",
    "Unbounded",
    "ZeroGradPGD",
    "ZeroGradResult",
    "bpda_scope",
    "get_attack",
    "input_gradient",
    "list_attacks",
    "losses",
    "make_threat",
    "resolve_eot",
]
