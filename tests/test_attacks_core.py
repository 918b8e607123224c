"""FGSM, PGD and APGD: the attack contract, threat models, losses and the shared loop."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from robustact.attacks import (
    APGD,
    ATTACKS,
    FGSM,
    L2,
    PGD,
    Attack,
    Linf,
    get_attack,
    input_gradient,
    list_attacks,
    losses,
    make_threat,
)
from robustact.attacks.engine import Schedule, target_classes

Digits = tuple[Tensor, Tensor, Tensor, Tensor]

# (name, factory(eps, norm, seed)) for every attack of this module
FACTORIES: list[tuple[str, Callable[[float, str, int], Attack]]] = [
    ("fgsm", lambda e, n, s: FGSM(eps=e, norm=n)),
    ("fgsm-rs", lambda e, n, s: FGSM(eps=e, norm=n, random_start=True, seed=s)),
    ("pgd", lambda e, n, s: PGD(eps=e, norm=n, steps=10, seed=s)),
    ("pgd-margin", lambda e, n, s: PGD(eps=e, norm=n, steps=10, loss="margin", seed=s)),
    ("pgd-t", lambda e, n, s: PGD(eps=e, norm=n, steps=10, targeted=True, restarts=2, seed=s)),
    ("apgd-ce", lambda e, n, s: APGD(eps=e, norm=n, steps=20, seed=s)),
    ("apgd-dlr", lambda e, n, s: APGD(eps=e, norm=n, loss="dlr", steps=20, seed=s)),
    ("apgd-t", lambda e, n, s: APGD(eps=e, norm=n, targeted=True, steps=20, seed=s)),
]
# a moderate and a large radius per norm (8x8 digits in [0, 1])
EPS = {"Linf": (0.1, 0.4), "L2": (0.8, 4.0)}


def _acc(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@pytest.mark.parametrize("norm", ["Linf", "L2"])
@pytest.mark.parametrize("name,factory", FACTORIES, ids=[f[0] for f in FACTORIES])
def test_contract(
    name: str,
    factory: Callable[[float, str, int], Attack],
    norm: str,
    digits: Digits,
    digits_mlp: nn.Module,
) -> None:
    _, _, x, y = digits
    x, y = x[:200], y[:200]
    model = digits_mlp
    model.train()  # the attack must switch to eval and back
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    small, large = EPS[norm]

    x_adv = factory(small, norm, 3)(model, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert float(make_threat(norm, small).distance(x_adv, x).max()) <= small + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    model.eval()

    # same seed -> same output; a large eps -> near 0 % robust accuracy
    a1, a2 = factory(large, norm, 7), factory(large, norm, 7)
    x1, x2 = a1(model, x, y), a2(model, x, y)
    assert torch.equal(x1, x2)
    assert float(make_threat(norm, large).distance(x1, x).max()) <= large + 1e-6
    assert _acc(model, x1, y) <= 0.03, name
    # run() returns the same x_adv; success tells which points it fools; queries counted
    r1 = factory(large, norm, 7).run(model, x, y)
    assert torch.equal(r1.x_adv, x1)
    with torch.no_grad():
        assert torch.equal(r1.success, model(x1).argmax(1) != y)
    assert r1.queries is not None and r1.queries.shape == y.shape
    assert int(r1.queries.min()) >= 1


def test_attacks_beat_natural_model_at_moderate_eps(digits: Digits, digits_mlp: nn.Module) -> None:
    _, _, x, y = digits
    clean = _acc(digits_mlp, x, y)
    assert clean > 0.95
    fgsm = _acc(digits_mlp, FGSM(eps=0.1)(digits_mlp, x, y), y)
    pgd = _acc(digits_mlp, PGD(eps=0.1, steps=20, seed=0)(digits_mlp, x, y), y)
    apgd = _acc(digits_mlp, APGD(eps=0.1, steps=50, seed=0)(digits_mlp, x, y), y)
    apgdt = _acc(digits_mlp, APGD(eps=0.1, steps=50, targeted=True, seed=0)(digits_mlp, x, y), y)
    # iterative attacks are at least as strong as one step, APGD-T the strongest here
    assert pgd < fgsm < clean - 0.3
    assert apgd <= pgd + 0.01
    assert apgdt <= apgd + 0.01


def test_seed_none_follows_torch_global_rng(digits: Digits, digits_mlp: nn.Module) -> None:
    _, _, x, y = digits
    x, y = x[:50], y[:50]
    attack = PGD(eps=0.1, steps=3)
    torch.manual_seed(5)
    x1 = attack(digits_mlp, x, y)
    torch.manual_seed(5)
    x2 = attack(digits_mlp, x, y)
    x3 = attack(digits_mlp, x, y)
    assert torch.equal(x1, x2)
    assert not torch.equal(x2, x3)


def test_zero_eps_returns_input(digits: Digits, digits_mlp: nn.Module) -> None:
    _, _, x, y = digits
    for attack in (FGSM(eps=0.0), PGD(eps=0.0, steps=3), APGD(eps=0.0, steps=5)):
        assert torch.equal(attack(digits_mlp, x[:20], y[:20]), x[:20])


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda x, y: (x.clone().fill_(float("nan")), y), "NaN"),
        (lambda x, y: (x * 2 + 0.5, y), r"\[0, 1\]"),
        (lambda x, y: (x, y[:-1]), "N ="),
        (lambda x, y: (x, y.float()), "int64"),
        (lambda x, y: (x, y + 10), "out of range"),
        (lambda x, y: (x, y - 20), ">= 0"),
        (lambda x, y: (x.long(), y), "float"),
    ],
)
def test_bad_inputs_raise_clear_errors(
    mutate: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    match: str,
    digits: Digits,
    digits_mlp: nn.Module,
) -> None:
    _, _, x, y = digits
    xb, yb = mutate(x[:8], y[:8])
    with pytest.raises((ValueError, TypeError), match=match):
        PGD(eps=0.1, steps=2)(digits_mlp, xb, yb)


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: PGD(eps=-0.1), "eps"),
        (lambda: PGD(eps=float("nan")), "eps"),
        (lambda: PGD(eps=0.1, norm="L3"), "norm"),
        (lambda: PGD(eps=0.1, steps=0), "steps"),
        (lambda: PGD(eps=0.1, loss="hinge"), "loss"),
        (lambda: APGD(eps=0.1, restarts=0), "restarts"),
        (lambda: APGD(eps=0.1, eot=0), "eot"),
        (lambda: PGD(eps=0.1, seed=1.5), "seed"),  # type: ignore[arg-type]
        (lambda: get_attack("pgdd", eps=0.1), "pgd"),
    ],
)
def test_bad_hyper_parameters_raise(build: Callable[[], Attack], match: str) -> None:
    with pytest.raises((ValueError, TypeError, KeyError), match=match):
        build()


def test_hyper_parameters_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        PGD(0.1)  # type: ignore[call-arg]


def test_mode_restored_when_the_model_fails(digits: Digits) -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(64, 10)

        def forward(self, x: Tensor) -> Tensor:
            raise RuntimeError("boom")

    model = Broken().train()
    _, _, x, y = digits
    with pytest.raises(RuntimeError, match="boom"):
        PGD(eps=0.1, steps=2)(model, x[:4], y[:4])
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_registry_and_describe() -> None:
    for name in ("fgsm", "pgd", "apgd", "apgd-ce", "apgd-dlr", "apgd-t"):
        assert name in list_attacks() and name in ATTACKS
    a = get_attack("apgd-t", eps=0.3, steps=10, seed=1)
    d = a.describe()
    assert d["targeted"] is True and d["loss"] == "dlr" and d["n_target_classes"] == 9
    assert get_attack("APGD_DLR", eps=0.1).describe()["loss"] == "dlr"
    assert PGD(eps=0.3, steps=10).step_size == pytest.approx(0.075)
    assert "PGD(eps=0.3" in repr(PGD(eps=0.3))


# ----------------------------------------------------------------------------- the loop
class CountingMLP(nn.Module):
    """Records the number of rows of every forward pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.rows.append(x.shape[0])
        return self.model(x)


def test_fooled_points_stop_and_restarts_skip_them(digits: Digits, digits_mlp: nn.Module) -> None:
    _, _, x, y = digits
    x, y = x[:100], y[:100]
    counting = CountingMLP(digits_mlp)
    attack = PGD(eps=0.1, steps=5, restarts=3, seed=0)
    attack(counting, x, y)
    rows = counting.rows
    # per restart: 5 gradient passes + 1 final forward, each over the active set only
    assert len(rows) <= 3 * 6
    assert rows[0] == 100 and all(b <= a for a, b in itertools.pairwise(rows[:6]))
    assert rows[6] < 100  # the second restart starts from the survivors only
    assert sum(rows) < 100 * 18 * 0.8
    # a model that gets every point wrong costs exactly one (gradient) pass
    wrong = CountingMLP(digits_mlp)
    y_wrong = (wrong.model(x).argmax(1) + 1) % 10
    wrong.rows.clear()
    x_adv = PGD(eps=0.1, steps=10, random_start=False)(wrong, x, y_wrong)
    assert wrong.rows == [100] and torch.equal(x_adv, x)


def test_eot_averages_passes() -> None:
    calls: list[int] = []

    class Noisy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x: Tensor) -> Tensor:
            calls.append(1)
            return self.lin(x.flatten(1) * (1 + 0.1 * torch.randn_like(x.flatten(1))))

    torch.manual_seed(0)
    model = Noisy()
    x = torch.rand(6, 4)
    y = torch.zeros(6, dtype=torch.int64)
    _, grad, logits = input_gradient(model, x, y, losses.get_loss("ce"), eot=8)
    assert len(calls) == 8 and grad.shape == x.shape and logits.shape == (6, 3)
    # the average over many passes approaches the noiseless gradient
    _, g_many, _ = input_gradient(model, x, y, losses.get_loss("ce"), eot=400)
    clean = nn.Sequential(model.lin)
    _, g_true, _ = input_gradient(clean, x, y, losses.get_loss("ce"))
    assert float((g_many - g_true).abs().max()) < 0.1 * float(g_true.abs().max()) + 1e-3


def test_apgd_checkpoints_follow_the_paper() -> None:
    first, decr, min_len = Schedule().lengths(100)
    points, p, length = [], 0, first
    while p + length <= 100:
        p += length
        points.append(p)
        length = max(length - decr, min_len)
    assert points == [22, 41, 57, 70, 80, 87, 93, 99]


def test_target_classes_rank_non_true_logits() -> None:
    z = torch.tensor([[0.0, 5.0, 3.0, 4.0], [9.0, 1.0, 2.0, 3.0]])
    y = torch.tensor([1, 3])
    assert target_classes(z, y, 1).tolist() == [3, 0]
    assert target_classes(z, y, 2).tolist() == [2, 2]


# ----------------------------------------------------------------------------- threat models
@pytest.mark.parametrize("cls", [Linf, L2])
def test_threat_init_step_project(cls: type[Linf] | type[L2]) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 5, 5, generator=g)
    t = cls(0.5)
    x0 = t.init(x, g)
    assert float(t.distance(x0, x).max()) <= 0.5 + 1e-6 and float(x0.min()) >= 0
    assert float(x0.max()) <= 1
    far = x + 10 * torch.randn(x.shape, generator=g)
    p = t.project(far, x)
    assert float(t.distance(p, x).max()) <= 0.5 + 1e-6
    assert float(p.min()) >= 0 and float(p.max()) <= 1
    assert torch.allclose(t.project(p, x), p, atol=1e-6)  # idempotent
    grad = torch.randn(x.shape, generator=g)
    step = t.step(x, grad, torch.full((16,), 0.25))
    assert torch.allclose(t.distance(step, x), torch.full((16,), 0.25), atol=1e-5)
    if cls is Linf:
        assert torch.equal((step - x).sign(), grad.sign())


def test_make_threat_names() -> None:
    assert isinstance(make_threat("linf", 1), Linf) and isinstance(make_threat("l2", 1), L2)
    with pytest.raises(ValueError, match="norm"):
        make_threat("L1", 1.0)
    with pytest.raises(ValueError, match="eps"):
        Linf(-1)


# ----------------------------------------------------------------------------- losses
def test_losses_signs_and_invariances() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(64, 10, generator=g) * 3
    y = torch.randint(0, 10, (64,), generator=g)
    wrong = z.argmax(1) != y
    m = losses.margin(z, y)
    assert torch.equal(m > 0, wrong)
    assert torch.equal(losses.dlr(z, y) > 0, wrong)
    # DLR is invariant to shifting and positive scaling of the logits
    assert torch.allclose(losses.dlr(2.5 * z + 7, y), losses.dlr(z, y), atol=1e-5)
    ce_ref = torch.nn.functional.cross_entropy(z, y, reduction="none")
    assert torch.allclose(losses.ce(z, y), ce_ref)
    assert float(losses.margin(z, y, kappa=0.5).max()) <= 0.5
    t = (y + 1) % 10
    assert torch.equal(losses.margin_targeted(z, t) > 0, z.argmax(1) == t)
    assert torch.allclose(losses.ce_targeted(z, t), -losses.ce(z, t))
    dt = losses.dlr_targeted(z, y, t)
    top = z.topk(4, dim=1).values
    expect = (z.gather(1, t[:, None]) - z.gather(1, y[:, None])).squeeze(1) / (
        top[:, 0] - (top[:, 2] + top[:, 3]) / 2
    )
    assert torch.allclose(dt, expect, atol=1e-5)
    assert torch.allclose(losses.dlr_targeted(3 * z - 1, y, t), dt, atol=1e-5)
    # uniform signature for the loop
    assert torch.equal(losses.get_loss("cw")(z, y, None), m)
    assert torch.equal(losses.get_loss("dlr", targeted=True)(z, y, t), dt)
    with pytest.raises(ValueError, match="target"):
        losses.get_loss("ce", targeted=True)(z, y, None)
    with pytest.raises(ValueError, match="loss"):
        losses.get_loss("hinge")
    with pytest.raises(ValueError, match="3 classes"):
        losses.dlr(z[:, :2], y.clamp(max=1))
