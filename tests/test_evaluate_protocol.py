"""Protocols and the evaluate() runner: hand-computed toy runs, reproducibility, inputs."""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor, nn

from robustact.activations import BReLU
from robustact.attacks import Attack
from robustact.evaluate import (
    Protocol,
    ProtocolEntry,
    evaluate,
    get_protocol,
    list_protocols,
)


class _Shift(Attack):
    """Deterministic toy attack: adds ``eps`` to feature 1 (pushes towards class 1)."""

    name = "shift"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        d = torch.zeros_like(x)
        d[:, 1] = self.eps
        self.logits(model, x)
        return x + d


def _identity_model() -> nn.Module:
    lin = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(2))
    return lin  # logits = x


X = torch.tensor([[0.9, 0.1], [0.6, 0.5], [0.55, 0.5], [0.2, 0.8], [0.3, 0.4], [0.5, 0.1]])
Y = torch.tensor([0, 0, 0, 1, 0, 1])
# clean preds: 0,0,0,1,1,0 -> correct: T,T,T,T,F,F (4/6)
# shift by eps=0.2 on feature 1: point0 .9 vs .3 ok; point1 .6 vs .7 fooled; point2 fooled;
# point3 (class 1) stays class 1.


def _toy(cascade: bool) -> Protocol:
    entries = (
        ProtocolEntry("shift", _Shift),
        ProtocolEntry("shift-small", _Shift, {"eps": 0.05}, own_threat=True),
    )
    return Protocol("toy", entries, eps=0.2, norm="Linf", cascade=cascade)


@pytest.mark.parametrize("cascade", [False, True])
def test_runner_on_a_linear_model(cascade: bool) -> None:
    r = evaluate(_identity_model(), X, Y, protocol=_toy(cascade), batch_size=4)
    assert r.clean_accuracy == pytest.approx(4 / 6)
    assert r.robust_accuracy == pytest.approx(2 / 6)
    assert r.robustness_gap == pytest.approx(2 / 6)
    assert r.success_rate == pytest.approx(2 / 4)
    shift, small = r.attacks
    assert shift.n_attacked == 4 and shift.n_fooled == 2
    assert shift.mean_linf == pytest.approx(0.2) and shift.mean_l2 == pytest.approx(0.2)
    # eps 0.05 flips nothing (point 2 ties at .55/.55 and argmax keeps class 0)
    assert not small.in_worst_case and small.n_attacked == 4 and small.n_fooled == 0
    assert small.accuracy == pytest.approx(4 / 6)
    # softmax of logits at the adversarial points, true class
    xa = X + torch.tensor([0.0, 0.2])
    p = torch.softmax(xa, 1)
    ok = torch.tensor([0, 1, 2, 3])
    assert shift.mean_true_prob == pytest.approx(float(p[ok, Y[ok]].mean()), rel=1e-5)
    assert shift.mean_max_prob == pytest.approx(float(p[ok].amax(1).mean()), rel=1e-5)
    assert r.per_class_clean == pytest.approx({0: 3 / 4, 1: 1 / 2})
    assert r.per_class_robust == pytest.approx({0: 1 / 4, 1: 1 / 2})
    if cascade:
        assert shift.accuracy is None
    else:
        assert shift.accuracy == pytest.approx(2 / 6)
    assert "protocol 'toy'" in r.render()


def test_named_protocols_and_fast_label() -> None:
    assert {"seed", "seed-brelu", "adaptive", "autoattack"} <= set(list_protocols())
    seed = get_protocol("seed", eps=0.1)
    labels = [e.label for e in seed.entries]
    assert labels == ["FGSM", "PGD-10", "APGD-CE", "APGD-DLR", "CW-L2", "Square"]
    pgd = seed.entries[1]
    assert pgd.kwargs["steps"] == 10 and pgd.kwargs["step_size"] == pytest.approx(0.01)
    cw = seed.entries[4].kwargs
    assert (cw["steps"], cw["lr"], cw["c"], cw["binary_search_steps"]) == (10_000, 0.01, 0.001, 9)
    assert not seed.cascade and not any(e.bpda for e in seed.entries)
    ad = get_protocol("adaptive", eps=0.1, fast=True)
    assert ad.fast and ad.cascade and all(e.eot == "auto" for e in ad.entries)
    assert "QUICK" in str(ad)
    # gradient-free entries (Square, the escalation) need no BPDA
    assert all(e.bpda for e in ad.entries if e.attack != "square" and e.label != "Escalation")
    json.dumps(ad.describe())
    aa = get_protocol("autoattack", eps=8 / 255)
    assert aa.entries[-1].kwargs["queries"] == 5000
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("nope", eps=0.1)


def test_from_spec_and_errors() -> None:
    p = Protocol.from_spec(
        [{"attack": "pgd", "steps": 5, "bpda": True, "eot": "auto"}, {"attack": "pgd"}],
        eps=0.1,
    )
    assert [e.label for e in p.entries] == ["pgd", "pgd#1"]
    assert p.entries[0].kwargs == {"steps": 5} and p.entries[0].bpda
    with pytest.raises(ValueError, match="unknown attack 'nope'"):
        Protocol.from_spec([{"attack": "nope"}], eps=0.1)
    with pytest.raises(ValueError, match="eot must be"):
        Protocol.from_spec([{"attack": "pgd", "eot": 0}], eps=0.1)
    with pytest.raises(ValueError, match="non-empty list"):
        Protocol.from_spec([], eps=0.1)
    with pytest.raises(ValueError, match="has no eot parameter"):
        bad = Protocol.from_spec([{"attack": "cw", "eot": 3, "own_threat": True}], eps=0.1)
        bad.entries[0].build(nn.Linear(2, 2), 0.1, "Linf")
    with pytest.raises(ValueError, match="conflicts"):
        evaluate(_identity_model(), X, Y, protocol=_toy(False), eps=0.3)
    with pytest.raises(ValueError, match="needs eps"):
        evaluate(_identity_model(), X, Y, protocol="seed")


def test_dataset_and_loader_inputs_match_tensors() -> None:
    class _DS:
        def tensors(self) -> tuple[Tensor, Tensor]:
            return X, Y

    m = _identity_model()
    a = evaluate(m, X, Y, protocol=_toy(True))
    b = evaluate(m, _DS(), protocol=_toy(True))
    c = evaluate(m, [(X[:3], Y[:3]), (X[3:], Y[3:])], protocol=_toy(True))
    for r in (b, c):
        assert r.robust_accuracy == a.robust_accuracy and r.n == 6


def _no_time(d: dict) -> dict:
    return {k: v for k, v in d.items() if "seconds" not in k}


def test_adaptive_fast_is_reproducible_with_a_seed(digits, digits_mlp) -> None:
    _, _, x, y = digits
    x, y = x[:60], y[:60]
    p = Protocol.from_spec(
        [
            {"attack": "pgd", "steps": 5, "loss": "margin", "bpda": True},
            {"attack": "square", "queries": 30},
        ],
        eps=0.05,
    )
    r1 = evaluate(digits_mlp, x, y, protocol=p, seed=3)
    r2 = evaluate(digits_mlp, x, y, protocol=p, seed=3)
    assert _no_time(r1.metrics()) == _no_time(r2.metrics())
    assert 0.0 < r1.robust_accuracy < r1.clean_accuracy


def test_stochastic_model_gets_repeats(digits) -> None:
    x_tr, y_tr, x, y = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), BReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x_tr), y_tr).backward()
        opt.step()
    p = Protocol.from_spec(
        [{"attack": "pgd", "steps": 3, "eot": "auto"}], eps=0.05, eot_samples=2, repeats=3
    )
    r = evaluate(model, x[:50], y[:50], protocol=p, seed=0)
    s = r.stochastic
    assert s is not None and s.repeats == 3
    assert r.attacks[0].describe["eot"] == 2
    assert s.worst_of_r["robust_acc"] <= s.mean_sd["robust_acc"].mean + 1e-9
    assert s.worst_of_r["clean_acc"] <= s.mean_sd["clean_acc"].mean + 1e-9
    m = r.metrics()
    assert {
        "robust_acc_mean",
        "robust_acc_sd",
        "robust_acc_worst_of_r",
        "clean_acc_majority",
    } <= set(m)
