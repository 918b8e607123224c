"""The attack API: AttackResult, final run/__call__, the unbounded threat, declared
hyper-parameters (describe / with_params) and the Adaptive (BPDA / EOT) wrapper."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from conftest import train_quick
from robustact.activations import BReLU, SReLU
from robustact.attacks import (
    APGD,
    CW,
    DEFAULT_EOT,
    FGSM,
    PGD,
    Adaptive,
    Attack,
    AttackResult,
    Square,
    Unbounded,
    ZeroGradPGD,
    make_threat,
)
from robustact.evaluate import ProtocolEntry
from robustact.surgery import straight_through

Digits = tuple[Tensor, Tensor, Tensor, Tensor]


def _pred(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


@pytest.fixture(scope="module")
def srelu_net(digits: Digits) -> nn.Module:
    """MLP 64-32-10 with a tight S-ReLU cap: plain gradients are mostly zero."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), SReLU(0.05), nn.Linear(32, 10))
    x, y, _, _ = digits
    return train_quick(net, x, y, epochs=8)


# --------------------------------------------------------------------------- AttackResult
@pytest.mark.parametrize(
    "make",
    [
        lambda: FGSM(eps=0.1),
        lambda: PGD(eps=0.1, steps=7, seed=0),
        lambda: PGD(eps=0.1, steps=4, restarts=2, targeted=True, seed=0),
        lambda: APGD(eps=0.1, steps=8, seed=0),
        lambda: Square(eps=0.1, queries=30, seed=0),
        lambda: CW(steps=20, binary_search_steps=2),
        lambda: ZeroGradPGD(eps=0.2, steps=5, step_size=0.02),
    ],
    ids=["fgsm", "pgd", "pgd-t", "apgd", "square", "cw", "zerograd"],
)
def test_result_success_matches_prediction(
    make: Any, digits: Digits, digits_mlp: nn.Module
) -> None:
    _, _, x, y = digits
    x, y = x[:80], y[:80]
    atk = make()
    res = atk.run(digits_mlp, x, y)
    assert isinstance(res, AttackResult)
    assert torch.equal(res.success, _pred(digits_mlp, res.x_adv) != y)
    assert torch.equal(res.x_adv, atk(digits_mlp, x, y))  # same x_adv as __call__
    assert res.queries is not None and res.queries.dtype == torch.int64
    assert res.queries.shape == y.shape and int(res.queries.min()) >= 1
    assert 0.0 < res.success_rate < 1.0


def test_pgd_counts_one_query_per_gradient_pass(digits: Digits, digits_mlp: nn.Module) -> None:
    _, _, x, y = digits
    x, y = x[:100], y[:100]
    steps = 6
    res = PGD(eps=0.03, steps=steps, seed=0).run(digits_mlp, x, y)
    assert res.queries is not None
    # points never fooled: the start pass, steps - 1 gradient passes, one final forward
    survived = ~res.success
    assert bool(survived.any()) and bool((res.queries[survived] == steps + 1).all())
    # points wrong from the start leave after the first pass
    wrong = _pred(digits_mlp, x) != y
    assert bool(wrong.any()) and bool((res.queries[wrong] == 1).all())
    # two restarts: survivors pay for both
    res2 = PGD(eps=0.03, steps=steps, restarts=2, seed=0).run(digits_mlp, x, y)
    assert res2.queries is not None
    assert bool((res2.queries[~res2.success] == 2 * (steps + 1)).all())


def test_bare_tensor_perturb_gets_success_from_run(digits: Digits, digits_mlp: nn.Module) -> None:
    class Shift(Attack):
        name = "shift"

        def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
            return x + self.eps

    _, _, x, y = digits
    res = Shift(eps=0.3).run(digits_mlp, x[:50], y[:50])
    assert res.queries is None
    assert torch.equal(res.success, _pred(digits_mlp, res.x_adv) != y[:50])
    assert float(res.x_adv.max()) <= 1.0  # still projected into the box


def test_empty_batch_gives_an_empty_result(digits_mlp: nn.Module) -> None:
    res = PGD(eps=0.1).run(digits_mlp, torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))
    assert res.x_adv.shape == (0, 1, 8, 8) and res.success.shape == (0,)
    assert math.isnan(res.success_rate)


# --------------------------------------------------------------------------- final methods
@pytest.mark.parametrize("method", ["__call__", "run"])
def test_overriding_a_final_method_is_refused(method: str) -> None:
    def body(self: Attack, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return x

    with pytest.raises(TypeError, match=f"overrides Attack.{method}, which is final"):
        type("Bad", (PGD,), {method: body})


# --------------------------------------------------------------------------- unbounded threat
@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(["Linf", "L2"]),
    st.integers(0, 2**31 - 1),
    st.floats(0.0, 5.0, allow_nan=False),
)
def test_unbounded_projection_is_the_box_only(norm: str, seed: int, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 1, 3, 3, generator=g)
    far = x + scale * torch.randn(x.shape, generator=g)
    threat = make_threat(norm, math.inf)
    assert isinstance(threat, Unbounded) and threat.norm == norm
    p = threat.project(far, x)
    assert torch.equal(p, far.clamp(0.0, 1.0))  # no radius: only the box applies
    assert torch.equal(threat.project(p, x), p)  # a projection: idempotent
    assert torch.equal(threat.step(x, far, 0.1), make_threat(norm, 0.1).step(x, far, 0.1))


def test_unbounded_threat_refuses_a_random_start_and_finite_attacks_refuse_inf() -> None:
    with pytest.raises(ValueError, match="no random start"):
        Unbounded("Linf").init(torch.rand(2, 4))
    with pytest.raises(ValueError, match="pgd needs a radius"):
        PGD(eps=math.inf)
    assert isinstance(CW().threat, Unbounded) and math.isinf(CW().eps)
    assert isinstance(CW(eps=math.inf).threat, Unbounded)
    assert isinstance(ZeroGradPGD(eps=math.inf, steps=2, step_size=0.1).threat, Unbounded)


# --------------------------------------------------------------------------- describe
def test_describe_lists_the_declared_hyper_parameters() -> None:
    class Toy(Attack):
        name = "toy"

        def __init__(self, *, eps: float, steps: int = 3, scale: float = 0.5) -> None:
            super().__init__(eps=eps)
            self.steps, self.scale = steps, scale
            self._cache: list[int] = []  # private state is not a hyper-parameter

        def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
            return x

    d = Toy(eps=0.2, steps=9).describe()
    assert d == {"name": "toy", "eps": 0.2, "norm": "Linf", "seed": None, "steps": 9, "scale": 0.5}
    assert Toy(eps=0.2).with_params(steps=4).describe()["steps"] == 4
    with pytest.raises(ValueError, match="has no hyper-parameter eot"):
        Toy(eps=0.2).with_params(eot=2)

    class Forgetful(Toy):
        def __init__(self, *, eps: float, depth: int = 2) -> None:
            super().__init__(eps=eps)

    with pytest.raises(AttributeError, match=r"\['depth'\]"):
        Forgetful(eps=0.1).describe()


def test_describe_of_the_built_in_attacks() -> None:
    pgd = PGD(eps=0.1, steps=5, loss="margin", seed=3).describe()
    assert pgd == {
        "name": "pgd", "eps": 0.1, "norm": "Linf", "seed": 3, "steps": 5,
        "step_size": pytest.approx(0.05), "loss": "margin", "random_start": True,
        "restarts": 1, "targeted": False, "eot": 1,
    }  # fmt: skip
    cw = CW(c=0.5, steps=7).describe()
    assert cw["eps"] is None and cw["c"] == 0.5 and cw["norm"] == "L2"
    json.dumps(cw)
    assert APGD(eps=0.1, loss="dlr").with_params(eot=3).describe()["eot"] == 3
    assert set(Square(eps=0.1).describe()) >= {"queries", "p_init", "restarts", "resample"}


# --------------------------------------------------------------------------- Adaptive
def test_adaptive_bpda_reproduces_the_context_manager_path(
    digits: Digits, srelu_net: nn.Module
) -> None:
    _, _, x, y = digits
    x, y = x[:120], y[:120]
    with straight_through(srelu_net):
        old = PGD(eps=0.1, steps=10, seed=0)(srelu_net, x, y)
    res = Adaptive(PGD(eps=0.1, steps=10, seed=0), bpda=True).run(srelu_net, x, y)
    assert torch.equal(res.x_adv, old)
    plain = PGD(eps=0.1, steps=10, seed=0)(srelu_net, x, y)
    acc = {
        k: float((_pred(srelu_net, v) == y).float().mean())
        for k, v in (("bpda", old), ("plain", plain))
    }
    assert acc["bpda"] < acc["plain"] - 0.1, acc  # BPDA does matter on this model
    assert res.info["bpda"] is True and res.info["eot"] == 1
    # the flags are restored: a plain run afterwards is the plain attack again
    assert torch.equal(PGD(eps=0.1, steps=10, seed=0)(srelu_net, x, y), plain)


def test_protocol_entry_builds_the_complete_attack(digits: Digits, srelu_net: nn.Module) -> None:
    _, _, x, y = digits
    x, y = x[:80], y[:80]
    entry = ProtocolEntry("PGD+BPDA", "pgd", {"steps": 8}, bpda=True)
    atk = entry.build(srelu_net, 0.1, "Linf")
    assert isinstance(atk, Adaptive) and atk.describe()["bpda"] is True
    torch.manual_seed(5)
    new = atk(srelu_net, x, y)
    torch.manual_seed(5)
    with straight_through(srelu_net):
        old = PGD(eps=0.1, steps=8)(srelu_net, x, y)
    assert torch.equal(new, old)
    assert not isinstance(ProtocolEntry("PGD", "pgd").build(srelu_net, 0.1, "Linf"), Adaptive)


def test_eot_auto_is_the_default_on_brelu_and_one_on_relu(
    digits: Digits, digits_mlp: nn.Module
) -> None:
    torch.manual_seed(0)
    brelu = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), BReLU(), nn.Linear(16, 10)).eval()
    auto = Adaptive(PGD(eps=0.1, steps=2, seed=0), eot="auto")
    assert auto.resolved(brelu).describe()["eot"] == DEFAULT_EOT == 20
    assert auto.resolved(digits_mlp).describe()["eot"] == 1
    _, _, x, y = digits
    assert auto.run(brelu, x[:8], y[:8]).info["eot"] == DEFAULT_EOT
    assert auto.run(digits_mlp, x[:8], y[:8]).info["eot"] == 1
    assert auto.describe()["eot"] == "auto"
    # an int forces the count; a count > 1 needs an attack with an eot parameter
    assert Adaptive(PGD(eps=0.1), eot=3).resolved(digits_mlp).describe()["eot"] == 3
    with pytest.raises(ValueError, match="no eot parameter"):
        Adaptive(CW(), eot=3)
    with pytest.raises(ValueError, match="eot must be"):
        Adaptive(PGD(eps=0.1), eot=0)


def test_adaptive_eot_matches_the_attacks_own_eot(digits: Digits) -> None:
    torch.manual_seed(0)
    brelu = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), BReLU(), nn.Linear(16, 10)).eval()
    _, _, x, y = digits
    x, y = x[:30], y[:30]
    torch.manual_seed(1)
    own = PGD(eps=0.1, steps=3, eot=4, seed=0)(brelu, x, y)
    torch.manual_seed(1)
    wrapped = Adaptive(PGD(eps=0.1, steps=3, seed=0), eot=4)(brelu, x, y)
    assert torch.equal(own, wrapped)
