"""BReLU App. B as a diagnostic: logit/softmax variability over repeated forward passes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustact.activations import BReLU
from robustact.evaluate.diagnose import DiagnosticContext, run_diagnostics
from robustact.evaluate.rows import MetricRow
from robustact.experiments.spec import SpecError, parse_spec


def _ctx(act: nn.Module) -> DiagnosticContext:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 32), act, nn.Linear(32, 3)).eval()
    x = torch.rand(40, 1, 3, 4)
    with torch.no_grad():
        y = model[:2](x).sum(1).gt(0).long()  # labels the model can reach: 0 or 1
    return DiagnosticContext(model, x, y, eps=[0.1], norm="Linf", seed=3)


def test_stochastic_model_varies_and_deterministic_one_does_not() -> None:
    rows, extra = run_diagnostics(_ctx(BReLU()), [{"name": "logit_variability", "runs": 6}])
    got = {r.metric: r for r in rows}
    assert all(isinstance(r, MetricRow) and r.kind == "diagnostic" for r in rows)
    assert got["logit_std"].value > 0.01 and got["logit_std"].n == 40
    assert got["true_prob_min"].value < got["true_prob_max"].value
    assert 0.0 < got["prediction_changes"].value <= 1.0
    assert extra["logit_variability"]["runs"] == 6
    again, _ = run_diagnostics(_ctx(BReLU()), [{"name": "logit_variability", "runs": 6}])
    assert [r.value for r in again] == [r.value for r in rows]  # seeded
    det = {r.metric: r.value for r in run_diagnostics(_ctx(nn.ReLU()), ["logit_variability"])[0]}
    assert det["logit_std"] == 0.0 and det["prediction_changes"] == 0.0
    assert det["true_prob_min"] == det["true_prob_max"]


def test_spec_accepts_its_options() -> None:
    doc: dict[str, Any] = {
        "name": "t",
        "grid": {"datasets": ["digits"], "models": ["mlp_general"]},
        "evaluation": {"eps": [0.1], "diagnostics": [{"name": "logit_variability", "runs": 3}]},
    }
    assert parse_spec(doc).evaluation.diagnostics[0]["runs"] == 3
    doc["evaluation"]["diagnostics"] = [{"name": "logit_variability", "repeats": 3}]
    try:
        parse_spec(doc)
    except SpecError as e:
        assert "repeats" in str(e)
    else:
        raise AssertionError("unknown option accepted")
