"""Adversarial attacks: ``attack(model, x, y) -> x_adv`` (see :mod:`robustact.attacks.base`).

Threat models are step objects (:mod:`~robustact.attacks.threat`), losses pure functions
(:mod:`~robustact.attacks.losses`). Every attack registers itself in :data:`ATTACKS`:
fgsm, pgd, apgd (+ apgd-ce, apgd-dlr, apgd-t), cw, square, zerograd_pgd, fab (+ fab-t).
"""

from robustact.attacks import losses
from robustact.attacks.apgd import APGD, APGDCE, APGDDLR, APGDT
from robustact.attacks.base import ATTACKS, Attack, get_attack, input_gradient, list_attacks
from robustact.attacks.cw import CW
from robustact.attacks.fab import FAB, FABT
from robustact.attacks.fgsm import FGSM
from robustact.attacks.pgd import PGD
from robustact.attacks.square import Square
from robustact.attacks.threat import L2, Linf, Threat, make_threat
from robustact.attacks.zerograd import ZeroGradPGD

__all__ = [
    "APGD",
    "APGDCE",
    "APGDDLR",
    "APGDT",
    "ATTACKS",
    "CW",
    "FAB",
    "FABT",
    "FGSM",
    "L2",
    "PGD",
    "Attack",
    "Linf",
    "Square",
    "Threat",
    "ZeroGradPGD",
    "get_attack",
    "input_gradient",
    "list_attacks",
    "losses",
    "make_threat",
]
