"""Metrics of robustact.evaluate on hand-computed toy outcomes."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch

from robustact.evaluate.metrics import (
    AttackOutcome,
    CleanOutcome,
    majority_correct,
    summarise,
    summarise_repeats,
    worst_case_pred,
)
from robustact.stats import wilson_interval

Y = torch.tensor([0, 0, 1, 1, 2, 2])
CLEAN_PRED = torch.tensor([0, 0, 1, 0, 2, 2])  # point 3 wrong: clean acc 5/6


def _clean() -> CleanOutcome:
    return CleanOutcome(
        y=Y,
        pred=CLEAN_PRED,
        max_prob=torch.tensor([0.9, 0.8, 0.7, 0.6, 0.9, 0.95]),
        true_prob=torch.tensor([0.9, 0.8, 0.7, 0.3, 0.9, 0.95]),
    )


def _outcome(
    label: str, attacked: list[bool], pred: list[int], counts: bool = True
) -> AttackOutcome:
    n = len(pred)
    return AttackOutcome(
        label=label,
        attacked=torch.tensor(attacked),
        pred=torch.tensor(pred),
        max_prob=torch.tensor([0.6, 0.5, 0.8, 0.6, 0.7, 0.9]),
        true_prob=torch.tensor([0.2, 0.5, 0.8, 0.3, 0.7, 0.05]),
        linf=torch.tensor([0.1, 0.05, 0.02, 0.0, 0.03, 0.3])[:n],
        l2=torch.tensor([1.0, 0.5, 0.2, 0.0, 0.3, 3.0])[:n],
        seconds=1.5,
        describe={"name": label},
        counts=counts,
    )


CLEAN_OK = [True, True, True, False, True, True]
# A fools points 0 and 5; B fools point 1
A: dict[str, Any] = dict(label="A", pred=[1, 0, 1, 0, 2, 0])
B: dict[str, Any] = dict(label="B", pred=[0, 2, 1, 0, 2, 2])


def _individual() -> list[AttackOutcome]:
    return [_outcome(A["label"], CLEAN_OK, A["pred"]), _outcome(B["label"], CLEAN_OK, B["pred"])]


def test_individual_mode_hand_computed() -> None:
    r = summarise(
        _clean(), _individual(), protocol="toy", eps=0.1, norm="Linf", num_classes=3, cascade=False
    )
    assert r.n == 6
    assert r.clean_accuracy == pytest.approx(5 / 6)
    assert r.clean_ci == pytest.approx(wilson_interval(5, 6))
    a, b = r.attacks
    assert a.accuracy == pytest.approx(3 / 6) and b.accuracy == pytest.approx(4 / 6)
    assert a.accuracy_ci == pytest.approx(wilson_interval(3, 6))
    assert a.cumulative_accuracy == pytest.approx(3 / 6)
    assert b.cumulative_accuracy == pytest.approx(2 / 6)
    assert a.success_rate == pytest.approx(2 / 5) and b.success_rate == pytest.approx(1 / 5)
    assert (a.n_attacked, a.n_fooled) == (5, 2)
    # norms over the fooled points only: A fooled 0 and 5
    assert a.mean_linf == pytest.approx((0.1 + 0.3) / 2)
    assert a.mean_l2 == pytest.approx((1.0 + 3.0) / 2)
    assert b.mean_linf == pytest.approx(0.05)
    # confidence over the attacked (clean-correct) points 0,1,2,4,5
    assert a.mean_max_prob == pytest.approx((0.6 + 0.5 + 0.8 + 0.7 + 0.9) / 5)
    assert a.mean_true_prob == pytest.approx((0.2 + 0.5 + 0.8 + 0.7 + 0.05) / 5)
    # worst case: robust points are 2 and 4
    assert r.robust_accuracy == pytest.approx(2 / 6)
    assert r.robust_ci == pytest.approx(wilson_interval(2, 6))
    assert r.robustness_gap == pytest.approx(5 / 6 - 2 / 6)
    assert r.success_rate == pytest.approx(3 / 5)
    assert r.per_class_clean == pytest.approx({0: 1.0, 1: 0.5, 2: 1.0})
    assert r.per_class_robust == pytest.approx({0: 0.0, 1: 0.5, 2: 0.5})
    # worst-case examples: 0 <- A, 1 <- B, 2 <- B (last), 4 <- B (last), 5 <- A
    assert r.mean_true_prob == pytest.approx((0.2 + 0.5 + 0.8 + 0.7 + 0.05) / 5)
    assert r.mean_linf == pytest.approx((0.1 + 0.05 + 0.3) / 3)
    assert a.seconds == 1.5


def test_cascade_mode_has_no_individual_accuracy() -> None:
    attacked_b = [False, True, True, False, True, False]  # still robust after A
    outs = [_outcome("A", CLEAN_OK, A["pred"]), _outcome("B", attacked_b, B["pred"])]
    r = summarise(_clean(), outs, protocol="toy", eps=0.1, norm="Linf", num_classes=3, cascade=True)
    a, b = r.attacks
    assert a.accuracy is None and b.accuracy is None and b.accuracy_ci is None
    assert b.cumulative_accuracy == pytest.approx(2 / 6)
    assert b.success_rate == pytest.approx(1 / 3)
    assert r.robust_accuracy == pytest.approx(2 / 6)
    assert "attack/B/acc" not in r.metrics()
    assert r.metrics()["attack/B/cumulative_acc"] == pytest.approx(2 / 6)


def test_attack_outside_worst_case_is_reported_not_counted() -> None:
    outs = [*_individual(), _outcome("C", CLEAN_OK, [0, 0, 0, 0, 2, 2], counts=False)]
    r = summarise(
        _clean(), outs, protocol="toy", eps=0.1, norm="Linf", num_classes=3, cascade=False
    )
    c = r.attacks[2]
    assert c.accuracy == pytest.approx(4 / 6) and not c.in_worst_case
    assert r.robust_accuracy == pytest.approx(2 / 6)  # C's success on point 2 not counted


def test_serialisation_and_table() -> None:
    r = summarise(
        _clean(), _individual(), protocol="toy", eps=0.1, norm="Linf", num_classes=3, cascade=False
    )
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["robust_accuracy"] == pytest.approx(2 / 6)
    assert d["per_class_clean"]["1"] == pytest.approx(0.5)
    m = r.metrics()
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.values())
    assert m["robustness_gap"] == pytest.approx(0.5)
    assert m["attack/A/success_rate"] == pytest.approx(0.4)
    assert m["robust_acc/class_0"] == 0.0
    text = r.render()
    assert "worst case" in text and "protocol 'toy'" in text and "33.33" in text


def test_no_clean_correct_point_gives_none_not_nan() -> None:
    clean = CleanOutcome(
        y=torch.tensor([0, 1]),
        pred=torch.tensor([1, 0]),
        max_prob=torch.tensor([0.9, 0.9]),
        true_prob=torch.tensor([0.1, 0.1]),
    )
    out = AttackOutcome(
        "A",
        torch.tensor([False, False]),
        torch.tensor([1, 0]),
        torch.ones(2),
        torch.ones(2),
        torch.zeros(2),
        torch.zeros(2),
        0.0,
    )
    r = summarise(clean, [out], protocol="t", eps=0.1, norm="Linf", num_classes=2, cascade=False)
    assert r.success_rate is None and r.attacks[0].success_rate is None
    assert r.mean_linf is None and r.robust_accuracy == 0.0
    json.dumps(r.to_dict(), allow_nan=False)


def test_majority_vote_and_repeats() -> None:
    y = torch.tensor([0, 1, 2])
    preds = torch.tensor([[0, 1, 0], [0, 0, 1], [1, 1, 2]])  # votes: 0:2/3, 1:2/3, 2: tie
    assert majority_correct(preds, y, 3).tolist() == [True, True, False]

    def run(pred: list[int], adv: list[int]) -> tuple[CleanOutcome, list[AttackOutcome]]:
        c = CleanOutcome(y, torch.tensor(pred), torch.ones(3), torch.ones(3))
        ok = c.pred == y
        a = AttackOutcome(
            "A",
            ok,
            torch.tensor(adv),
            torch.ones(3),
            torch.ones(3),
            torch.zeros(3),
            torch.zeros(3),
            0.0,
        )
        return c, [a]

    runs = [run([0, 1, 2], [0, 1, 0]), run([0, 1, 1], [0, 0, 1]), run([0, 1, 2], [0, 1, 2])]
    assert worst_case_pred(*runs[0]).tolist() == [0, 1, 0]
    results = [
        summarise(c, a, protocol="t", eps=0.1, norm="Linf", num_classes=3, cascade=False)
        for c, a in runs
    ]
    s = summarise_repeats(runs, results, 3)
    assert s.repeats == 3
    assert s.mean_sd["clean_acc"].mean == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert s.mean_sd["robust_acc"].mean == pytest.approx((2 / 3 + 1 / 3 + 1) / 3)
    assert s.worst_of_r == pytest.approx({"clean_acc": 2 / 3, "robust_acc": 1 / 3})
    # clean votes: point2 gets 2,1,2 -> correct; robust votes: p1 1,0,1 ok, p2 0,1,2 -> wrong
    assert s.majority_vote == pytest.approx({"clean_acc": 1.0, "robust_acc": 2 / 3})
