"""Honest robustness evaluation: protocols, metrics, masking report, diagnostics, and
:func:`evaluate_suite`, which runs them all (the one orchestration).

See DESIGN.md, "Evaluation soundness".
"""

import sys
from types import ModuleType
from typing import Any

from robustact.evaluate.catalog import PROTOCOLS, get_protocol, list_protocols
from robustact.evaluate.diagnostics import (
    LayerDistance,
    NegativeRatio,
    ZeroGradSummary,
    cap_snapshot,
    cap_trajectories,
    layer_distances,
    negative_unit_ratio,
    sensitivity_map,
    zero_gradient_distance,
)
from robustact.evaluate.masking import THRESHOLDS, MaskingCheck, MaskingReport, masking_report
from robustact.evaluate.metrics import (
    AttackMetrics,
    AttackOutcome,
    CleanOutcome,
    EvalResult,
    StochasticSummary,
    summarise,
)
from robustact.evaluate.paper_protocols import protocol_attacks
from robustact.evaluate.protocol import Protocol, ProtocolEntry
from robustact.evaluate.rows import MetricRow
from robustact.evaluate.runner import evaluate
from robustact.evaluate.suite import SuiteResult, evaluate_suite

__all__ = [
    "PROTOCOLS",
    "THRESHOLDS",
    "AttackMetrics",
    "AttackOutcome",
    "CleanOutcome",
    "EvalResult",
    "LayerDistance",
    "MaskingCheck",
    "MaskingReport",
    "MetricRow",
    "NegativeRatio",
    "Protocol",
    "ProtocolEntry",
    "StochasticSummary",
    "SuiteResult",
    "ZeroGradSummary",
    "cap_snapshot",
    "cap_trajectories",
    "evaluate",
    "evaluate_suite",
    "get_protocol",
    "layer_distances",
    "list_protocols",
    "masking_report",
    "negative_unit_ratio",
    "protocol_attacks",
    "sensitivity_map",
    "summarise",
    "zero_gradient_distance",
]


class _CallablePackage(ModuleType):
    """``robustact.evaluate`` is both this package and its main function: importing the
    package binds it as the ``robustact`` attribute ``evaluate`` (Python's import system
    does that for every subpackage), which hid the top-level ``ra.evaluate(...)`` function
    once anything had imported the package. Calling the package calls the function."""

    def __call__(self, *args: Any, **kwargs: Any) -> EvalResult:
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
