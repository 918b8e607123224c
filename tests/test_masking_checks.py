"""Each masking check function flags the case it is written for (evaluate/masking_checks)."""

from __future__ import annotations

import torch
from torch import nn

from robustact.evaluate.masking import THRESHOLDS, masking_report
from robustact.evaluate.masking_checks import CHECKS, Probe


def _probe(model: nn.Module, x: torch.Tensor, y: torch.Tensor, acc: dict[str, float]) -> Probe:
    p = Probe(model, x, y, eps=0.1, norm="Linf", seed=0, fast=True, stochastic=False,
              has_st=False, eot=1, passes=1, long_steps=30, queries=150)  # fmt: skip
    p.acc.update(acc)
    return p


def _flags(name: str, p: Probe) -> bool:
    v = CHECKS[name].value(p)
    return v is not None and v > THRESHOLDS[name]


def test_registry_order_and_probes() -> None:
    assert list(CHECKS) == [
        "zero_gradient", "cap_saturation", "fgsm_beats_pgd", "more_steps_help",
        "bpda_beats_plain", "eot_beats_single", "gradient_free_beats", "large_eps_accuracy",
        "stochastic_predictions", "gradient_health",
    ]  # fmt: skip
    assert {c.name for c in CHECKS.values() if c.probe} == {
        "zero_gradient", "cap_saturation", "stochastic_predictions", "gradient_health"
    }  # fmt: skip


def test_attack_comparison_checks_flag_their_gaps() -> None:
    x, y = torch.rand(4, 1, 2, 2), torch.zeros(4, dtype=torch.long)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    # memoised accuracies: the checks read them instead of attacking
    assert _flags("fgsm_beats_pgd", _probe(net, x, y, {"FGSM": 0.3, "PGD-10": 0.5}))
    assert not _flags("fgsm_beats_pgd", _probe(net, x, y, {"FGSM": 0.5, "PGD-10": 0.3}))
    assert _flags("more_steps_help", _probe(net, x, y, {"PGD-10": 0.5, "PGD-30": 0.3}))
    assert not _flags("more_steps_help", _probe(net, x, y, {"PGD-10": 0.3, "PGD-30": 0.3}))
    curve = {"PGD-10": 0.2, "PGD-10 eps=0.2": 0.1, "PGD-10 eps=0.4": 0.05}
    assert _flags("large_eps_accuracy", _probe(net, x, y, {**curve, "PGD-10 eps=0.5": 0.3}))
    p = _probe(net, x, y, {**curve, "PGD-10 eps=0.5": 0.0})
    assert not _flags("large_eps_accuracy", p)
    assert [e for e, _ in p.curve] == [0.1, 0.2, 0.4, 0.5]
    # not applicable without caps / randomness
    assert CHECKS["bpda_beats_plain"].value(p) is None
    assert CHECKS["eot_beats_single"].value(p) is None
    assert CHECKS["stochastic_predictions"].value(p) is None


class _Quantised(nn.Module):
    """Two classes by the mean pixel, read through a rounding: zero gradient everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = (torch.round(x.flatten(1).mean(1) * 8) / 8 - 0.5) * 10
        return torch.stack([-t, t], dim=1)


def test_gradient_free_and_zero_gradient_flag_a_flat_model() -> None:
    g = torch.Generator().manual_seed(0)
    # mean pixel 0.6-0.65: class 1, and within reach of a 0.1 L-inf step below 0.5 + 1/16
    x = (0.625 + 0.02 * (torch.rand(40, 1, 4, 4, generator=g) - 0.5)).clamp(0, 1)
    y = torch.ones(40, dtype=torch.long)
    rep = masking_report(_Quantised(), x, y, eps=0.1, fast=True, seed=0)
    assert rep.check("zero_gradient").value == 1.0 and rep.check("zero_gradient").flagged
    assert rep.accuracies["gradient worst case"] == 1.0  # no gradient attack moves a point
    gf = rep.check("gradient_free_beats")
    assert (
        gf.flagged and gf.value is not None and gf.value > 0.25
    )  # Square breaks many (37.5 % at seed 0)
    assert rep.verdict == "masked"
