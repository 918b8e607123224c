"""Method labels for runner records: one method per combination of varying config keys."""

from __future__ import annotations

from robustact.report.build import guess_method_key, with_method_labels


def rec(act: str, m: float | None, obj: str, seed: int, **extra: object) -> dict[str, object]:
    r: dict[str, object] = {
        "cfg.dataset.name": "digits",
        "cfg.model.name": "mlp_general",
        "cfg.activation.name": act,
        "cfg.objective.name": obj,
        "cfg.seed": seed,
        "metric": "accuracy",
        "value": 0.5,
    }
    if m is not None:
        r["cfg.activation.max_value"] = m
    r.update(extra)
    return r


def test_labels_separate_activation_arguments_and_objectives_but_not_seeds() -> None:
    recs = [
        rec("relu", None, "natural", 0),
        rec("relu", None, "natural", 1),
        rec("relu", None, "pgd_at", 0),
        rec("srelu", 0.1, "natural", 0),
        rec("srelu", 0.01, "natural", 0),
    ]
    out = with_method_labels(recs)
    assert [r["method"] for r in out] == [
        "relu + natural",
        "relu + natural",
        "relu + pgd_at",
        "srelu(max_value=0.1) + natural",
        "srelu(max_value=0.01) + natural",
    ]
    assert "method" not in recs[0]  # the input records are not modified
    assert guess_method_key(out) == "method"


def test_explicit_method_key_wins_and_single_method_is_named() -> None:
    recs = [rec("relu", None, "natural", 0, **{"cfg.method": "mine"})]
    assert "method" not in with_method_labels(recs)[0]
    assert guess_method_key(recs) == "cfg.method"
    same = with_method_labels([rec("relu", None, "natural", 0), rec("relu", None, "natural", 1)])
    assert {r["method"] for r in same} == {"all"}


def test_summary_protocols_pick_the_seed_style_and_adaptive_pair() -> None:
    from robustact.report.build import summary_protocols

    assert summary_protocols(["seed", "adaptive", "masking"]) == ("seed", "adaptive")
    assert summary_protocols(["seed-brelu", "adaptive"]) == ("seed-brelu", "adaptive")
    assert summary_protocols(["masking", "pgd-only", "my-adaptive"]) == ("pgd-only", "my-adaptive")
