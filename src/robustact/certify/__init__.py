"""Certified lower bounds on robust accuracy: IBP and CROWN for feed-forward networks.

``certified_accuracy(model, x, y, eps, norm, method)`` returns a :class:`CertifyResult`;
its ``certified`` points provably keep their label everywhere in the eps-ball intersected
with [0, 1], so certified accuracy <= true robust accuracy <= any attack's accuracy.
"""

from robustact.certify.api import (
    METHODS,
    NORMS,
    CertifyResult,
    certified_accuracy,
    margin_bounds,
)
from robustact.certify.chain import SUPPORTED
from robustact.certify.relax import clip_relaxation, maxpool_relaxation

__all__ = [
    "METHODS",
    "NORMS",
    "SUPPORTED",
    "CertifyResult",
    "certified_accuracy",
    "clip_relaxation",
    "margin_bounds",
    "maxpool_relaxation",
]
