"""Honest robustness evaluation: protocols, metrics, masking report, diagnostics.

See DESIGN.md, "Evaluation soundness".
"""

from robustact.evaluate.diagnostics import (
    LayerDistance,
    NegativeRatio,
    ZeroGradSummary,
    cap_snapshot,
    cap_trajectories,
    layer_distances,
    negative_unit_ratio,
    plot_cap_trajectories,
    plot_layer_distances,
    plot_sensitivity_map,
    sensitivity_map,
    zero_gradient_distance,
)
from robustact.evaluate.metrics import (
    AttackMetrics,
    AttackOutcome,
    CleanOutcome,
    EvalResult,
    StochasticSummary,
    summarise,
)

__all__ = [
    "AttackMetrics",
    "AttackOutcome",
    "CleanOutcome",
    "EvalResult",
    "LayerDistance",
    "NegativeRatio",
    "StochasticSummary",
    "ZeroGradSummary",
    "cap_snapshot",
    "cap_trajectories",
    "layer_distances",
    "negative_unit_ratio",
    "plot_cap_trajectories",
    "plot_layer_distances",
    "plot_sensitivity_map",
    "sensitivity_map",
    "summarise",
    "zero_gradient_distance",
]
