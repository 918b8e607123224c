"""Objectives: finite losses and gradients on every model family, modes, penalty, AT gain."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustact.activations import BReLU, DReLU, SReLU
from robustact.train import (
    Adversarial,
    DReLUPenalty,
    Hybrid,
    Natural,
    Objective,
    Trades,
    TrainConfig,
    TrainingPGD,
    fgsm_at,
    fit,
    fit_then_finetune,
    get_objective,
    pgd_at,
    two_phase,
    with_penalty,
)
from robustact.train._batches import Batches
from robustact.train.loop import robust_accuracy

Digits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


ACTS: dict[str, Callable[[int], nn.Module]] = {
    "relu": lambda n: nn.ReLU(),
    "srelu": lambda n: SReLU(max_value=0.5),
    "drelu": lambda n: DReLU(n, init_max=1.0),
    "brelu": lambda n: BReLU(),
}


def tiny_mlp(act: str) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), ACTS[act](32), nn.Linear(32, 10))


def tiny_cnn(act: str) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), ACTS[act](8), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.1), nn.Linear(8 * 16, 10),
    )  # fmt: skip


def objectives() -> dict[str, Callable[[], Objective]]:
    return {
        "natural": Natural,
        "drelu_penalty": lambda: get_objective("drelu_penalty", lam=1e-2),
        "pgd": lambda: pgd_at(0.1, steps=2),
        "fgsm": lambda: fgsm_at(0.1),
        "fast": lambda: get_objective("fast_at", eps=0.1),
        "mixed": lambda: pgd_at(0.1, steps=2, clean_weight=0.5),
        "trades": lambda: Trades(beta=6.0, eps=0.1, steps=2, step_size=0.05),
        "trades+penalty": lambda: with_penalty(Trades(1.0, eps=0.1, steps=1), 1e-3),
        "hybrid": lambda: Hybrid(eps=0.1, make_attack=lambda e: TrainingPGD(eps=e, steps=2)),
        "two_phase": lambda: two_phase(1, pgd_at(0.1, steps=1), 1),
    }


@pytest.mark.parametrize("obj_name", list(objectives()))
@pytest.mark.parametrize("family", ["mlp", "cnn"])
@pytest.mark.parametrize("act", list(ACTS))
def test_finite_loss_and_gradients(digits: Digits, obj_name: str, family: str, act: str) -> None:
    x, y, _, _ = digits
    x, y = x[:32], y[:32]
    torch.manual_seed(0)
    model = (tiny_mlp if family == "mlp" else tiny_cnn)(act).train()
    obj = objectives()[obj_name]()
    obj.on_epoch_start(1, 2)
    loss, metrics = obj(model, x, y)
    assert loss.dim() == 0 and math.isfinite(float(loss.detach()))
    assert model.training and all(m.training for m in model.modules())  # mode restored
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)
    for v in metrics.values():
        assert math.isfinite(float(v))


def test_real_model_families(digits: Digits) -> None:
    models = pytest.importorskip("robustact.models")
    x, y, _, _ = digits
    for name in ("mlp_general", "shallow_cnn"):
        for act in ("srelu", "drelu", "brelu"):
            m = models.create_model(name, in_channels=1, input_size=8, act_layer=act)
            loss, _ = with_penalty(pgd_at(0.1, steps=1), 1e-4)(m, x[:16], y[:16])
            loss.backward()
            assert math.isfinite(float(loss.detach()))
            assert all(
                bool(torch.isfinite(p.grad).all()) for p in m.parameters() if p.grad is not None
            )


class ModeSpy(nn.Module):
    """Records the training flag of every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return x


def test_attack_runs_in_eval_mode_and_training_step_in_train_mode(digits: Digits) -> None:
    x, y, _, _ = digits
    spy = ModeSpy()
    model = nn.Sequential(spy, nn.Flatten(), nn.Linear(64, 10)).train()
    pgd_at(0.1, steps=3)(model, x[:8], y[:8])
    assert spy.modes == [False, False, False, True]  # exactly k attack passes, then training
    spy.modes.clear()
    pgd_at(0.1, steps=2, clean_weight=0.3)(model, x[:8], y[:8])
    assert spy.modes == [False, False, True, True]
    spy.modes.clear()
    Trades(eps=0.1, steps=2)(model, x[:8], y[:8])
    assert spy.modes == [False, False, False, True, True]  # clean probs + 2 steps, then 2
    assert model.training


def test_loss_values_match_their_definitions(digits: Digits) -> None:
    x, y, _, _ = digits
    x, y = x[:64], y[:64]
    torch.manual_seed(0)
    model = tiny_mlp("relu")
    ce = F.cross_entropy(model(x), y)
    # clean_weight=1 is natural training; TRADES with beta=0 is plain CE
    assert torch.allclose(pgd_at(0.1, 2, clean_weight=1.0)(model, x, y)[0], ce)
    assert torch.allclose(Trades(beta=0.0, eps=0.1, steps=2)(model, x, y)[0], ce)
    # the mixed loss is w * CE(x) + (1 - w) * CE(x_adv)
    torch.manual_seed(1)
    loss, m = pgd_at(0.1, 2, clean_weight=0.25)(model, x, y)
    assert float(loss.detach()) == pytest.approx(0.25 * float(m["ce"]) + 0.75 * float(m["adv_ce"]))
    assert float(m["adv_ce"]) > float(ce.detach())  # the attack raised the loss
    # eq. 5.1: CE + lam * sum m^2
    dm = tiny_mlp("drelu")
    loss, m = get_objective("drelu_penalty", lam=0.5)(dm, x, y)
    expected = F.cross_entropy(dm(x), y) + 0.5 * 32 * 1.0**2
    assert (
        float(loss.detach()) == pytest.approx(float(expected.detach()))
        and float(m["cap_penalty"]) == 16.0
    )
    assert isinstance(Natural() + DReLUPenalty(0.1), Objective)
    with pytest.raises(ValueError, match="lam"):
        DReLUPenalty(-1.0)
    with pytest.raises(ValueError, match="clean_weight"):
        Adversarial(TrainingPGD(eps=0.1), clean_weight=1.5)
    with pytest.raises(ValueError, match="unknown objective"):
        get_objective("tradez")


def test_training_pgd_stays_in_ball_and_beats_clean(digits: Digits) -> None:
    x, y, _, _ = digits
    torch.manual_seed(0)
    model = tiny_mlp("relu")
    for norm, eps in (("Linf", 0.1), ("L2", 0.5)):
        x_adv = TrainingPGD(eps=eps, steps=5, norm=norm)(model, x[:64], y[:64])
        d = (x_adv - x[:64]).flatten(1)
        dist = d.abs().amax(1) if norm == "Linf" else d.norm(dim=1)
        assert (
            float(dist.max()) <= eps + 1e-6 and 0 <= float(x_adv.min()) <= float(x_adv.max()) <= 1
        )
        with torch.no_grad():
            assert F.cross_entropy(model(x_adv), y[:64]) > F.cross_entropy(model(x[:64]), y[:64])


def test_strong_penalty_pulls_caps_down(digits: Digits) -> None:
    x, y, _, _ = digits
    caps = {}
    for lam in (0.0, 1.0):
        torch.manual_seed(0)
        model = tiny_mlp("drelu")
        model[2] = DReLU(32, init_max=5.0)
        cfg = TrainConfig(epochs=3, batch_size=64, lr=1e-2, progress=False)
        h = fit(model, get_objective("drelu_penalty", lam=lam), (x, y), cfg)
        caps[lam] = h["caps"][-1]["2"]
    assert caps[0.0]["mean"] > 4.5  # without the penalty caps at 5 barely move
    assert caps[1.0]["max"] < 1.0  # a strong penalty drives every cap far down


def test_hybrid_schedule_and_alpha(digits: Digits) -> None:
    x, y, xt, yt = digits
    h = Hybrid(eps=0.3)
    assert [round(h.eps_at(e, 4), 6) for e in range(4)] == [0.03, 0.12, 0.21, 0.3]
    assert Hybrid(eps=0.3, ramp_epochs=2).eps_at(3, 10) == pytest.approx(0.3)
    # a model that is always wrong: 0/0 -> alpha = 0.5
    logits = nn.Linear(64, 10)
    always_wrong = nn.Sequential(nn.Flatten(), logits)
    with torch.no_grad():
        logits.weight.zero_()
        logits.bias.copy_(torch.arange(10.0) * 0 + torch.eye(10)[9] * 5)
    val = Batches((xt[yt != 9], yt[yt != 9]), 128, torch.device("cpu"), "val")
    h.alpha = 0.1
    out = h.on_epoch_end(always_wrong, val)
    assert out["hybrid_acc_clean"] == 0.0 and h.alpha == 0.5
    # inside fit: alpha = acc_adv / (acc_adv + acc_clean) of the previous epoch
    torch.manual_seed(0)
    hist = fit(tiny_mlp("relu"), Hybrid(eps=0.2), (x, y), TrainConfig(epochs=3, lr=1e-2,
               progress=False), val_data=(xt, yt))  # fmt: skip
    assert hist["hybrid_alpha"][0] == 0.5
    for prev, r in zip(hist.records, hist.records[1:], strict=False):
        a, c = prev["hybrid_acc_adv"], prev["hybrid_acc_clean"]
        assert r["hybrid_alpha"] == pytest.approx(a / (a + c))
    assert hist["hybrid_eps"] == pytest.approx([0.02, 0.11, 0.2])
    with pytest.raises(ValueError, match="needs val_data"):
        fit(tiny_mlp("relu"), Hybrid(eps=0.2), (x, y), TrainConfig(epochs=1, progress=False))


def test_two_phase_and_fit_then_finetune(tmp_path: Path, digits: Digits) -> None:
    x, y, xt, yt = digits
    cfg = TrainConfig(epochs=3, progress=False)
    h = fit(tiny_mlp("relu"), two_phase(2, pgd_at(0.1, 1), 1), (x, y), cfg)
    assert h["phase"] == [1.0, 1.0, 2.0] and "adv_acc" in h.records[2]
    assert "adv_acc" not in h.records[0]
    with pytest.raises(ValueError, match="spans 3 epochs"):
        fit(tiny_mlp("relu"), two_phase(2, pgd_at(0.1, 1), 1), (x, y), cfg.replace(epochs=4))
    h2 = fit_then_finetune(
        tiny_mlp("relu"), (x, y), 2, pgd_at(0.1, 1), 1, cfg, val_data=(xt, yt),
        checkpoint_dir=tmp_path,
    )  # fmt: skip
    assert h2["phase"] == ["natural", "natural", "finetune"] and h2["epoch"] == [0, 1, 2]
    assert (tmp_path / "natural" / "epoch_0001.json").is_file()
    assert (tmp_path / "finetune" / "epoch_0000.json").is_file()


def test_pgd_training_raises_pgd_accuracy_by_30pp(digits: Digits) -> None:
    from robustact.attacks import get_attack

    x, y, xt, yt = digits
    eps = 0.2
    test = Batches((xt, yt), 500, torch.device("cpu"), "test")
    acc = {}
    for name, obj in (("natural", Natural()), ("pgd", pgd_at(eps, steps=3))):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        fit(model, obj, (x, y), TrainConfig(epochs=10, batch_size=64, lr=1e-2, progress=False))
        # evaluated with the library's evaluation PGD-20, not the training attack
        acc[name] = robust_accuracy(model, test, get_attack("pgd", eps=eps, steps=20))
    assert acc["pgd"] - acc["natural"] >= 0.30, acc
