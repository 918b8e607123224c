"""Masking report: masked for S-ReLU m=0.01 and single-sample BReLU, clean for ReLU and AT.

Digits-sized analogues of the dissertation's MLP (64-128-64-10), trained in seconds.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from robustact.activations import BReLU, SReLU
from robustact.attacks import PGD
from robustact.evaluate import MaskingReport, masking_report

EPS = 0.1
N = 300


def _mlp(act1: type[nn.Module] | functools.partial, act2: type[nn.Module] | functools.partial):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 128), act1(), nn.Linear(128, 64), act2(), nn.Linear(64, 10)
    )


def _train(model: nn.Module, x: Tensor, y: Tensor, epochs: int = 30, adv_from: int | None = None):
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    attack = PGD(eps=EPS, steps=5, step_size=EPS / 2, seed=0)
    for epoch in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 128):
            xb, yb = x[perm[i : i + 128]], y[perm[i : i + 128]]
            if adv_from is not None and epoch >= adv_from:
                xb = attack(model, xb, yb)  # restores train mode
            model.train()
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def reports(digits) -> dict[str, MaskingReport]:
    x_tr, y_tr, x_te, y_te = digits
    x, y = x_te[:N], y_te[:N]
    specs: dict[str, tuple[Any, Any, int | None]] = {
        "relu": (nn.ReLU, nn.ReLU, None),
        "srelu": (nn.ReLU, functools.partial(SReLU, 0.01), None),  # cap on hidden layer 2
        "brelu": (BReLU, BReLU, None),
        "pgd": (nn.ReLU, nn.ReLU, 15),  # 15 natural epochs, then 15 of PGD-5 training
    }
    out = {}
    for name, (a1, a2, adv_from) in specs.items():
        torch.manual_seed(0)
        model = _train(_mlp(a1, a2), x_tr, y_tr, adv_from=adv_from)
        out[name] = masking_report(model, x, y, eps=EPS, fast=True, seed=0)
    return out


@pytest.mark.slow
def test_srelu_cap_is_masked(reports: dict[str, MaskingReport]) -> None:
    r = reports["srelu"]
    assert r.verdict == "masked", r.render()
    assert r.check("zero_gradient").value > 0.5  # type: ignore[operator]
    assert r.check("cap_saturation").flagged
    assert r.check("bpda_beats_plain").value > 0.05  # type: ignore[operator]
    assert r.accuracies["clean"] > 0.9


@pytest.mark.slow
def test_single_sample_brelu_is_masked_by_the_eot_gap(reports: dict[str, MaskingReport]) -> None:
    r = reports["brelu"]
    assert r.verdict == "masked", r.render()
    assert r.check("eot_beats_single").value > 0.05  # type: ignore[operator]
    assert r.check("stochastic_predictions").flagged
    assert r.check("cap_saturation").value is None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["relu", "pgd"])
def test_relu_and_adversarially_trained_show_no_evidence(
    reports: dict[str, MaskingReport], name: str
) -> None:
    r = reports[name]
    assert r.verdict == "no evidence", r.render()
    assert r.check("zero_gradient").value == 0.0
    assert r.check("bpda_beats_plain").value is None  # no caps: not applicable
    curve = r.security_curve
    assert curve[-1][0] == 0.5 and curve[-1][1] <= 0.01  # large eps breaks everything
    if name == "pgd":  # adversarial training makes it more robust than the natural model
        assert r.accuracies["PGD-10"] > reports["relu"].accuracies["PGD-10"] + 0.1


@pytest.mark.slow
def test_report_serialises_and_renders(reports: dict[str, MaskingReport]) -> None:
    r = reports["srelu"]
    d = json.loads(json.dumps(r.to_dict()))
    assert d["verdict"] == "masked" and len(d["checks"]) == len(r.checks) == 10
    assert all(c["citation"] and c["explanation"] for c in d["checks"])
    m = r.metrics()
    assert m["masking/verdict"] == 2.0 and m["masking/bpda_beats_plain/flagged"] == 1.0
    text = r.render()
    assert "MASKED" in text and "Obfuscated Gradients" in text
    assert r.flagged and "bpda_beats_plain" in r.flagged
    with pytest.raises(KeyError, match="no check"):
        r.check("nope")


def test_bad_threshold_and_inputs(digits_mlp, digits) -> None:
    _, _, x, y = digits
    with pytest.raises(ValueError, match="unknown threshold"):
        masking_report(digits_mlp, x[:4], y[:4], eps=0.1, thresholds={"nope": 1.0})
    with pytest.raises(ValueError, match="need x"):
        masking_report(digits_mlp, x[:4], y[:3], eps=0.1)


def test_report_is_reproducible(digits_mlp, digits) -> None:
    _, _, x, y = digits
    a = masking_report(digits_mlp, x[:40], y[:40], eps=0.05, fast=True, seed=1)
    b = masking_report(digits_mlp, x[:40], y[:40], eps=0.05, fast=True, seed=1)
    assert a.accuracies == b.accuracies and a.verdict == b.verdict


def test_each_case_flags_its_checks(reports: dict[str, MaskingReport]) -> None:
    flagged = {name: set(r.flagged) for name, r in reports.items()}
    assert {"zero_gradient", "cap_saturation", "bpda_beats_plain"} <= flagged["srelu"]
    assert {"eot_beats_single", "stochastic_predictions"} <= flagged["brelu"]
    assert not flagged["relu"] and not flagged["pgd"]
    # the typed rows carry every check's flag under its own name, nothing in a string
    rows = {(r.attack, r.item, r.metric): r.value for r in reports["srelu"].rows()}
    assert rows[("check", "bpda_beats_plain", "flagged")] == 1.0
    assert rows[("verdict", None, "level")] == 2.0
    assert rows[("PGD-10", None, "accuracy")] == reports["srelu"].accuracies["PGD-10"]
