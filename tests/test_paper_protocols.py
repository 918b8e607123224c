"""The paper protocols: each experiment's own attacks, PGD with all its steps, and the
attack list a report column names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustact.evaluate import get_protocol, protocol_attacks
from robustact.evaluate.paper_protocols import PaperPGD
from robustact.train import TrainConfig
from robustact.train.loop import _val_attack


def test_each_paper_protocol_holds_the_papers_attacks() -> None:
    assert protocol_attacks("seed-table4_2") == ["FGSM", "PGD-10"]
    assert protocol_attacks("seed-table4_3") == ["FGSM", "PGD-10", "CW-L2"]
    assert protocol_attacks("seed-table4_3", worst_case_only=True) == ["FGSM", "PGD-10"]
    assert protocol_attacks("seed-ch3") == ["PGD-20"]
    assert protocol_attacks("seed-brelu") == ["FGSM", "PGD-20", "CW"]
    assert protocol_attacks({"name": "seed-brelu-pgd7"}) == ["PGD-7"]
    # the Ch.5 list under the old id is unchanged (old stores and cell ids)
    assert protocol_attacks("seed") == ["FGSM", "PGD-10", "APGD-CE", "APGD-DLR", "CW-L2", "Square"]
    spec = {"name": "mine", "attacks": [{"attack": "pgd", "label": "P"}, {"attack": "fgsm"}]}
    assert protocol_attacks(spec) == ["P", "fgsm"]
    with pytest.raises(TypeError, match="a name, a spec entry"):
        protocol_attacks(3)  # type: ignore[arg-type]


def test_paper_protocol_steps_follow_the_seeds() -> None:
    p = get_protocol("seed-table4_2", eps=0.1)
    pgd = p.entries[1].build(nn.Linear(2, 2), 0.1, "Linf")
    assert isinstance(pgd, PaperPGD) and pgd.steps == 10 and pgd.step_size == pytest.approx(0.01)
    assert not p.cascade and p.eot_samples == 1
    b = get_protocol("seed-brelu", eps=0.0314).entries[1].build(nn.Linear(2, 2), 0.0314, "Linf")
    assert isinstance(b, PaperPGD)
    assert b.steps == 20 and b.step_size == pytest.approx(0.00785)


class _Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.lin(x.flatten(1))


def test_paper_pgd_takes_every_step_for_every_point() -> None:
    torch.manual_seed(0)
    model = _Counting()
    x = torch.rand(16, 1, 2, 2)
    y = model(x).argmax(1)
    model.calls = 0
    out = PaperPGD(eps=1.0, steps=7, step_size=0.5, seed=0).run(model, x, y)
    # 7 gradient passes over the whole batch (no early exit) + the base's success check
    assert model.calls >= 7
    assert (out.x_adv - x).abs().max() <= 1.0 + 1e-6
    assert out.success.any()  # eps 1 fools a linear model somewhere


def test_validation_pgd_step_is_configuration() -> None:
    cfg = TrainConfig(val_attack="pgd", val_eps=0.03, val_steps=7, val_step_size=0.00784)
    att = _val_attack(cfg)
    assert (att.steps, att.step_size, att.eps) == (7, 0.00784, 0.03)
    assert _val_attack(cfg.replace(val_step_size=None)).step_size == pytest.approx(2.5 * 0.03 / 7)
    with pytest.raises(ValueError, match="val_step_size"):
        TrainConfig(val_step_size=-0.1)


def test_training_rows_store_the_best_validation_accuracies() -> None:
    from robustact.experiments.cell import training_rows
    from robustact.train import Natural, fit

    torch.manual_seed(0)
    x, y = torch.rand(64, 1, 2, 2), torch.randint(0, 3, (64,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.05, val_attack="pgd", val_eps=0.1,
                      val_steps=2, progress=False)  # fmt: skip
    h = fit(model, Natural(), (x, y), cfg, val_data=(x[:32], y[:32]))
    rows = {(r.attack, r.metric): r.value for r in training_rows(h, 1.0)}
    for k in ("val_acc", "val_robust_acc"):
        assert rows[("best", k)] == max(r[k] for r in h.records)
        assert rows[("final", k)] == h.last[k]
