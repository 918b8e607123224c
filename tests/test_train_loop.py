"""The training loop: config validation, schedules, early stopping, history, cap groups."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from robustact.activations import DReLU
from robustact.train import (
    DEFAULT_CAP_LR,
    ConfigError,
    EarlyStopping,
    Natural,
    Objective,
    TrainConfig,
    build_optimizer,
    fit,
    get_objective,
)

Digits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def mlp(act: nn.Module | None = None, hidden: int = 32) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, hidden), act or nn.ReLU(), nn.Linear(hidden, 10)
    )


def quiet(**kw: object) -> TrainConfig:
    return TrainConfig(progress=False, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ config validation
@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("epochs", 0, "int >= 1"),
        ("batch_size", 2.5, "int >= 1"),
        ("optimizer", "adagrad", "one of"),
        ("lr", -1.0, "(0, inf)"),
        ("lr", float("nan"), "finite"),
        ("momentum", 1.0, "[0, 1)"),
        ("schedule", "step", "one of"),
        ("plateau_factor", 1.5, "(0, 1)"),
        ("cap_lr", -0.1, "[0, inf)"),
        ("early_stopping", 0, "int >= 1"),
        ("device", "gpu7", "torch device"),
        ("val_attack", "cw", "one of"),
        ("seed", -3, "int >= 0"),
        ("betas", (0.9, 1.2), "[0, 1)"),
    ],
)
def test_bad_config_fails_naming_field_value_and_allowed(
    field: str, value: object, allowed: str
) -> None:
    with pytest.raises(ConfigError) as e:
        TrainConfig(**{field: value})  # type: ignore[arg-type]
    msg = str(e.value)
    assert "\n" not in msg
    assert f"TrainConfig.{field} = {value!r}" in msg
    assert allowed in msg


def test_nesterov_needs_sgd_with_momentum() -> None:
    with pytest.raises(ConfigError, match="nesterov"):
        TrainConfig(optimizer="adam", nesterov=True)
    with pytest.raises(ConfigError, match="nesterov"):
        TrainConfig(optimizer="sgd", momentum=0.0, nesterov=True)
    assert TrainConfig(optimizer="SGD", nesterov=True).optimizer == "sgd"


def test_piecewise_needs_milestones() -> None:
    with pytest.raises(ConfigError, match="milestones"):
        TrainConfig(schedule="piecewise")
    with pytest.raises(ConfigError, match="milestones"):
        TrainConfig(schedule="piecewise", milestones=(3, 2))


def test_config_round_trips_through_dict() -> None:
    c = TrainConfig.dissertation(epochs=3, milestones=(1, 2))
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"epochz": 3})


def test_bad_inputs_fail_before_any_training(digits: Digits) -> None:
    x, y, _, _ = digits
    model = mlp()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(TypeError, match="int64"):
        fit(model, Natural(), (x, y.float()), quiet(epochs=1))
    with pytest.raises(ValueError, match="y must be"):
        fit(model, Natural(), (x, y[:-1]), quiet(epochs=1))
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        fit(model, Natural(), (x, y), quiet(epochs=1), resume=True)
    with pytest.raises(ValueError, match="unknown objective"):
        fit(model, "naturall", (x, y), quiet(epochs=1))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


# ------------------------------------------------------------------ optimisers and caps
def test_caps_get_their_own_group_and_lr() -> None:
    model = mlp(DReLU(32))
    for name in ("adam", "adamw", "sgd"):
        opt = build_optimizer(model, quiet(optimizer=name, lr=1e-3, weight_decay=1e-4))
        weights, caps = opt.param_groups
        assert caps["name"] == "caps" and caps["lr"] == DEFAULT_CAP_LR
        assert caps["weight_decay"] == 0.0 and weights["weight_decay"] == 1e-4
        assert len(caps["params"]) == 1 and caps["params"][0].shape == (32,)
        assert len(weights["params"]) == 4
    opt = build_optimizer(model, quiet(optimizer="sgd", nesterov=True, cap_lr=0.5))
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[0]["nesterov"]
    assert len(build_optimizer(mlp(), quiet()).param_groups) == 1


# ------------------------------------------------------------------ natural training + history
def test_natural_training_learns_and_history_is_sane(digits: Digits) -> None:
    x, y, xt, yt = digits
    model = mlp(DReLU(32, init_max=2.0))
    h = fit(model, Natural(), (x, y), quiet(epochs=4, batch_size=64, lr=1e-2), val_data=(xt, yt))
    assert len(h) == 4 and h["epoch"] == [0, 1, 2, 3]
    assert h["loss"][-1] < h["loss"][0] < 2.5
    assert h["val_acc"][-1] > 0.9 and 0.9 < h["acc"][-1] <= 1.0
    for r in h.records:
        assert r["lr"] == 1e-2 and r["lr_caps"] == DEFAULT_CAP_LR
        assert r["seconds"] > 0 and r["peak_mem_mb"] > 10
        (stats,) = r["caps"].values()
        assert stats["min"] <= stats["mean"] <= stats["max"]
        assert math.isfinite(r["val_loss"]) and r["monitored"] == r["val_loss"]
    assert not model.training  # fit leaves the model in eval mode


def test_data_forms_agree(digits: Digits) -> None:
    """Tensors, a dataset of pairs and a robustact dataset train identically (same order)."""
    x, y, _, _ = digits
    x, y = x[:300], y[:300]

    class Pairs(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
        def __len__(self) -> int:
            return len(y)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            return x[i], y[i]

    class WithTensors:
        def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
            return x, y

    finals = []
    for data in ((x, y), Pairs(), WithTensors()):
        m = mlp()
        fit(m, Natural(), data, quiet(epochs=2, batch_size=50, seed=3))
        finals.append(m.get_parameter("1.weight").detach().clone())
    assert torch.equal(finals[0], finals[1]) and torch.equal(finals[0], finals[2])
    # a plain loader of batches works too (its own order)
    loader = [(x[i : i + 50], y[i : i + 50]) for i in range(0, 300, 50)]
    h = fit(mlp(), Natural(), loader, quiet(epochs=1))
    assert len(h) == 1 and math.isfinite(h["loss"][0])


def test_seed_controls_data_order(digits: Digits) -> None:
    x, y, _, _ = digits
    runs = []
    for seed in (0, 0, 1):
        m = mlp()
        fit(m, "natural", (x[:200], y[:200]), quiet(epochs=1, batch_size=20, seed=seed))
        runs.append(m.get_parameter("1.weight").detach().clone())
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


# ------------------------------------------------------------------ schedules
class _FixedLoss(Objective):
    """A loss that is identically zero, so it never improves."""

    name = "fixed"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        return (model(x) * 0.0).sum(), {}


def test_plateau_halves_lr_and_early_stopping_stops(digits: Digits) -> None:
    """With a loss that never improves: lr halves after patience+1 bad epochs, stop at 10."""
    x, y, _, _ = digits
    cfg = quiet(epochs=30, schedule="plateau", early_stopping=10, lr=0.1, batch_size=700)
    h = fit(mlp(), _FixedLoss(), (x, y), cfg)
    assert h.stopped_early and len(h) == 11  # epoch 0 sets best, 10 bad epochs follow
    # ReduceLROnPlateau(patience=5): the 6th non-improving epoch (index 6) halves the rate
    assert h["lr"][:7] == [0.1] * 7 and h["lr"][7] == 0.05
    assert h["lr"][7:] == [0.05] * 4  # the counter restarts after a reduction


def test_early_stopping_unit() -> None:
    es = EarlyStopping(patience=2, min_delta=0.1)
    assert [es.step(v) for v in (1.0, 0.95, 0.5, 0.45, 0.44)] == [False, False, False, False, True]


@pytest.mark.parametrize(
    ("schedule", "extra"),
    [("cosine", {}), ("piecewise", {"milestones": (2, 3), "gamma": 0.5}), ("onecycle", {})],
)
def test_schedules_shape_lr(digits: Digits, schedule: str, extra: dict[str, object]) -> None:
    x, y, _, _ = digits
    cfg = quiet(epochs=4, schedule=schedule, lr=0.1, batch_size=700, **extra)
    lrs = fit(mlp(), Natural(), (x, y), cfg)["lr"]
    if schedule == "cosine":
        expected = [0.05 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
        assert lrs == pytest.approx(expected)
    elif schedule == "piecewise":
        assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.025])
    else:  # OneCycle: starts at max_lr / 25, peaks at max_lr, ends far below the start
        assert lrs[0] == pytest.approx(0.1 / 25)
        assert max(lrs) > lrs[0] and lrs[-1] < lrs[1]


def test_nan_loss_fails_with_advice(digits: Digits) -> None:
    x, y, _, _ = digits

    class Nan(Objective):
        def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
            return model(x).sum() * float("nan"), {}

    with pytest.raises(FloatingPointError, match=r"diverged.*lower the learning rate"):
        fit(mlp(), Nan(), (x, y), quiet(epochs=1))


def test_progress_bar_runs(digits: Digits) -> None:
    x, y, _, _ = digits
    h = fit(mlp(), Natural(), (x[:200], y[:200]), TrainConfig(epochs=1, progress=True))
    assert len(h) == 1


def test_validation_robust_accuracy_under_cheap_attack(digits: Digits) -> None:
    x, y, xt, yt = digits
    cfg = quiet(epochs=2, lr=1e-2, val_attack="fgsm", val_eps=0.2)
    h = fit(mlp(), Natural(), (x, y), cfg, val_data=(xt, yt))
    for r in h.records:
        assert 0.0 <= r["val_robust_acc"] < r["val_acc"] - 0.2  # FGSM at 0.2 hurts a lot
    h = fit(mlp(), Natural(), (x, y), cfg.replace(val_attack="pgd", val_steps=3), val_data=(xt, yt))
    assert h.last["val_robust_acc"] < h.last["val_acc"]


def test_robustact_datasets_train(digits: Digits) -> None:
    data = pytest.importorskip("robustact.data")
    ds = data.load_dataset("digits", split="train")
    train, val = data.train_val_split(ds, 0.2, 0)
    h = fit(mlp(), Natural(), train, quiet(epochs=2, lr=1e-2), val_data=val)
    assert h.last["val_acc"] > 0.8


def test_lazy_caps_are_materialised_before_the_optimiser(digits: Digits) -> None:
    x, y, _, _ = digits
    model = mlp(DReLU(init_max=4.0))
    h = fit(model, get_objective("drelu_penalty", lam=0.1), (x, y), quiet(epochs=1))
    stats = h.last["caps"]["2"]
    assert model[2].max_value.shape == (32,) and stats["max"] < 4.0  # the caps trained
    json.dumps(h.to_dict())  # the history is plain JSON


def test_fit_leaves_global_rng_untouched(digits: Digits) -> None:
    x, y, _, _ = digits
    model = mlp()  # (seeds torch itself)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(model, Natural(), (x[:100], y[:100]), quiet(epochs=1))
    assert torch.equal(torch.rand(3), expected)


def test_caps_are_clamped_at_min_cap(digits: Digits) -> None:
    """A huge cap lr with a strong penalty would push caps below zero; min_cap stops that."""
    x, y, _, _ = digits
    for min_cap, below in ((0.0, False), (None, True)):
        cap = DReLU(32, init_max=0.5)
        model = mlp(cap)
        cfg = quiet(epochs=1, cap_lr=1.0, min_cap=min_cap)
        fit(model, get_objective("drelu_penalty", lam=10.0), (x, y), cfg)
        assert bool((cap.max_value < 0).any()) is below
