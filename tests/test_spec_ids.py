"""Cell ids are the store's keys: every recipe (full and --quick) and a spec using every
feature expand to exactly the cells, in the same order and with the same ids and labels, as
when these digests were taken (main at 3be78b4, before the schema-first spec rewrite)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from robustact.experiments.spec import Cell, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "src" / "robustact" / "recipes").glob("*.yaml"))
PINNED: dict[str, Any] = json.loads((ROOT / "tests" / "data" / "recipe_cell_ids.json").read_text())


def digest(cells: list[Cell]) -> dict[str, Any]:
    ids = [c.cell_id for c in cells]
    return {
        "cells": len(ids),
        "sha256": hashlib.sha256(",".join(ids).encode()).hexdigest(),
        "first": ids[:2],
        "last": ids[-1],
        "labels_sha256": hashlib.sha256("\n".join(c.label for c in cells).encode()).hexdigest(),
    }


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_cell_ids_are_pinned(path: Path) -> None:
    spec = load_spec(path)
    assert digest(spec.cells()) == PINNED[path.stem]
    assert digest(spec.cells(quick=True)) == PINNED[f"{path.stem}@quick"]


def test_every_recipe_is_pinned() -> None:
    assert {k.split("@")[0] for k in PINNED} == {p.stem for p in RECIPES}


def every_feature() -> dict[str, Any]:
    return {
        "name": "all",
        "grid": {
            "datasets": ["digits", {"name": "digits", "size": 8}],
            "models": [{"name": "mlp_general", "hidden": [16, 8], "training": {"lr": 0.05}}],
            "activations": [
                "relu",
                {"name": "srelu", "max_value": 1, "where": "act2"},
                {"name": "srelu", "max_value": 0.5, "where": {"type": "relu"}},
                {"name": "drelu", "insert": "before_output", "width": 8},
                {"name": "brelu", "alpha": 2, "where": [0]},
            ],
            "objectives": [
                "natural",
                {"name": "drelu_penalty", "lam": 1},
                {"name": "trades", "beta": 6, "eps": 0.1, "steps": 2},
                {"name": "adversarial", "attack": {"name": "training_pgd", "eps": 0.1,
                                                   "steps": 2}, "clean_weight": 0.5},
                {"name": "two_phase", "second": {"name": "pgd_at", "eps": 0.1},
                 "switch_fraction": 0.5, "penalty": 0.01},
            ],
            "seeds": [0, 3],
            "exclude": [{"activation": "relu", "objective": "drelu_penalty"},
                        {"activation": "srelu", "objective": "drelu_penalty"},
                        {"activation": "brelu", "objective": "drelu_penalty"},
                        {"activation": "relu", "objective": "two_phase"},
                        {"activation": "srelu", "objective": "two_phase"},
                        {"activation": "brelu", "objective": "two_phase"},
                        {"activation": "relu", "swap": "cap"},
                        {"activation": "brelu", "swap": "cap"}],
            "include": [
                {"activations": ["relu"], "objectives": ["natural"],
                 "preprocess": [{"name": "jpeg", "quality": 50},
                                {"name": "autoencoder", "epochs": 1, "lr": 1}]},
                {"activations": ["relu"], "objectives": ["natural"],
                 "transforms": [{"name": "spectral_norm", "n_power_iterations": 2},
                                {"name": "dropout", "p": 0, "where": "act1"}]},
                {"objectives": ["natural"], "swaps": [{"name": "cap", "max_value": 1},
                                                      {"name": "relu", "count": 1}]},
            ],
        },
        "training": {"epochs": 3, "batch_size": 64, "lr": 1, "betas": [0.9, 0],
                     "val_fraction": 0.25},
        "evaluation": {
            "protocols": ["seed", {"name": "mine", "attacks": [
                {"attack": "pgd", "steps": 5, "bpda": True, "step_size": 1},
                {"attack": "fgsm", "label": "F"}], "eot_samples": 2}],
            "eps": [0, 0.1], "norm": "l2", "n": 50, "fast": True, "masking": False,
            "batch_size": 100,
            "diagnostics": ["zero_gradient", {"name": "layer_growth", "n": 5, "eps": 1},
                            {"name": "pgd_steps", "steps": [5, 1, 5]}],
        },
        "quick": {"training": {"epochs": 1}, "evaluation": {"n": 10}, "grid": {"seeds": [0]}},
    }  # fmt: skip


def test_every_feature_spec_cell_configs_are_pinned() -> None:
    spec = parse_spec(every_feature())
    want = json.loads((ROOT / "tests" / "data" / "every_feature_cells.json").read_text())
    for mode, quick in (("full", False), ("quick", True)):
        got = [[c.cell_id, c.label, c.config] for c in spec.cells(quick=quick)]
        assert json.loads(json.dumps(got)) == want[mode], mode
