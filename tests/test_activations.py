"""Robust activations: the dissertation's theorems, cap gradients, BReLU statistics."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from robustact.activations import (
    BReLU,
    DReLU,
    SReLU,
    brelu,
    cap_parameters,
    drelu_penalty,
    get_activation,
    list_activations,
    make_activation,
    srelu,
)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
caps = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(a=finite, b=finite, m=caps)
def test_theorem_4_1_1_capping_never_increases_perturbation(a: float, b: float, m: float) -> None:
    """|SReLU(A+B) - SReLU(A)| <= |ReLU(A+B) - ReLU(A)| for every A, B and m > 0."""
    A = torch.tensor(a, dtype=torch.float64)
    B = torch.tensor(b, dtype=torch.float64)
    lhs = (srelu(A + B, m) - srelu(A, m)).abs()
    rhs = (torch.relu(A + B) - torch.relu(A)).abs()
    assert lhs <= rhs + 1e-9 * max(1.0, float(rhs))


@settings(max_examples=300, deadline=None)
@given(a=finite, b=finite, m1=caps, m2=caps)
def test_theorem_4_1_2_monotone_in_cap(a: float, b: float, m1: float, m2: float) -> None:
    """A smaller cap never lets more of a perturbation through."""
    lo, hi = sorted((m1, m2))
    A = torch.tensor(a, dtype=torch.float64)
    B = torch.tensor(b, dtype=torch.float64)
    d_lo = (srelu(A + B, lo) - srelu(A, lo)).abs()
    d_hi = (srelu(A + B, hi) - srelu(A, hi)).abs()
    assert d_lo <= d_hi + 1e-9 * max(1.0, float(d_hi))


def test_srelu_values_and_gradient() -> None:
    x = torch.tensor([-1.0, 0.05, 0.5, 2.0], requires_grad=True)
    y = SReLU(0.1)(x)
    assert torch.allclose(y, torch.tensor([0.0, 0.05, 0.1, 0.1]))
    y.sum().backward()
    assert x.grad is not None and torch.equal(x.grad, torch.tensor([0.0, 1.0, 0.0, 0.0]))


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_srelu_rejects_bad_cap(bad: float) -> None:
    with pytest.raises(ValueError, match="max_value"):
        SReLU(bad)


def test_drelu_cap_gradient_only_where_input_exceeds_cap() -> None:
    d = DReLU(3, init_max=1.0)
    x = torch.tensor([[0.5, 2.0, -1.0], [3.0, 0.2, 5.0]], requires_grad=True)
    y = d(x)
    assert torch.allclose(y, torch.tensor([[0.5, 1.0, 0.0], [1.0, 0.2, 1.0]]))
    y.sum().backward()
    # cap j gets one unit of gradient per sample with x > m
    assert d.max_value.grad is not None and x.grad is not None
    assert torch.equal(d.max_value.grad, torch.tensor([1.0, 1.0, 1.0]))
    assert torch.equal(x.grad, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))


def test_drelu_broadcasts_over_conv_channels() -> None:
    d = DReLU(2, init_max=0.5)
    with torch.no_grad():
        d.max_value.copy_(torch.tensor([0.5, 2.0]))
    x = torch.full((4, 2, 3, 3), 1.0)
    y = d(x)
    assert torch.all(y[:, 0] == 0.5) and torch.all(y[:, 1] == 1.0)
    with pytest.raises(ValueError, match="channel dimension"):
        d(torch.ones(4, 3, 3, 3))


def test_drelu_lazy_materialises_from_input() -> None:
    d = DReLU()
    assert d.num_features is None
    d(torch.randn(2, 7, 4, 4))
    assert d.num_features == 7 and torch.all(d.max_value == 100.0)


def test_drelu_penalty_and_cap_parameters() -> None:
    model = nn.Sequential(nn.Linear(4, 3), DReLU(3, init_max=2.0), nn.Linear(3, 2), DReLU(2, 1.0))
    assert len(list(cap_parameters(model))) == 2
    assert drelu_penalty(model).item() == pytest.approx(3 * 4.0 + 2 * 1.0)
    assert drelu_penalty(nn.Linear(2, 2)).item() == 0.0


def test_caps_fall_under_the_penalty_with_sgd() -> None:
    torch.manual_seed(0)
    cap = DReLU(16, init_max=10.0)
    model = nn.Sequential(nn.Linear(8, 16), cap, nn.Linear(16, 3))
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = cap.max_value.detach().clone()
    for _ in range(50):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y) + 0.1 * drelu_penalty(model)
        loss.backward()
        opt.step()
    after = cap.max_value.detach()
    # gradient of 0.1*m^2 is 0.2m: m_t ~ m_0 * (1 - 0.01)^t, so about 40 % lower after 50 steps
    assert torch.all(after < before * 0.7), after


@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
def test_brelu_mean_matches_expectation(alpha: float) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    samples = torch.stack([brelu(x, alpha, generator=g) for _ in range(10_000)])
    p = torch.sigmoid(alpha * x)
    expected = x * p
    # the exact standard error of the mean of x * Bernoulli(p) over n draws
    se = x.abs() * torch.sqrt(p * (1 - p) / len(samples))
    assert torch.all((samples.mean(0) - expected).abs() <= 3 * se + 1e-12)
    # each sample is either 0 or x
    assert torch.all((samples == 0) | (samples == x))


def test_brelu_random_in_eval_mode_and_seedable() -> None:
    x = torch.randn(1000)
    m = BReLU().eval()
    assert not torch.equal(m(x), m(x))
    a = BReLU(generator=torch.Generator().manual_seed(3))(x)
    b = BReLU(generator=torch.Generator().manual_seed(3))(x)
    assert torch.equal(a, b)
    e = BReLU(mode="expected")
    assert torch.equal(e(x), e(x)) and torch.allclose(e(x), x * torch.sigmoid(x))


def test_brelu_gradient_estimator_is_unbiased_for_the_expected_gradient() -> None:
    torch.manual_seed(0)
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)
    grads: list[torch.Tensor] = []
    for _ in range(4000):
        xi = x.clone().requires_grad_(True)
        brelu(xi).sum().backward()
        assert xi.grad is not None
        grads.append(xi.grad)
    g = torch.stack(grads)
    xe = x.clone().requires_grad_(True)
    (xe * torch.sigmoid(xe)).sum().backward()
    assert xe.grad is not None
    se = g.std(0) / math.sqrt(len(g))
    assert torch.all((g.mean(0) - xe.grad).abs() <= 4 * se + 1e-9)


def test_brelu_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="alpha"):
        BReLU(alpha=0)
    with pytest.raises(ValueError, match="mode"):
        BReLU(mode="mean")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Generator"):
        BReLU(generator=3)  # type: ignore[arg-type]


def test_get_activation_covers_the_list_and_rejects_unknown() -> None:
    expected = {"relu", "relu6", "leaky_relu", "prelu", "gelu", "silu", "elu"}
    assert expected | {"srelu", "drelu", "brelu"} == set(list_activations())
    x = torch.randn(3, 4)
    for name in list_activations():
        kw = {"num_features": 4} if name == "drelu" else {}
        assert get_activation(name, **kw)(x).shape == x.shape
    with pytest.raises(ValueError, match="Known: brelu"):
        get_activation("sreluu")
    with pytest.raises(ValueError, match="max_value"):
        get_activation("srelu", cap=0.1)


def test_make_activation_passes_width_only_to_drelu() -> None:
    assert isinstance(make_activation(None), nn.ReLU)
    d = make_activation("drelu", 5)
    assert isinstance(d, DReLU) and d.num_features == 5
    s = make_activation(functools.partial(SReLU, max_value=0.3), 5)
    assert isinstance(s, SReLU) and s.max_value == 0.3
    with pytest.raises(TypeError, match="module instance"):
        make_activation(nn.ReLU(), 3)


def test_drelu_negative_cap_acts_as_zero() -> None:
    d = DReLU(2, init_max=1.0)
    with torch.no_grad():
        d.max_value.copy_(torch.tensor([-0.5, 0.5]))
    y = d(torch.tensor([[2.0, 2.0], [-1.0, 0.25]]))
    assert torch.equal(y, torch.tensor([[0.0, 0.5], [0.0, 0.25]]))
