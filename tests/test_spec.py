"""Experiment spec validation: every error has its path and a hint, all are reported at once,
and a valid spec expands to the right cells with stable ids."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from robustact.experiments.records import cell_id
from robustact.experiments.spec import SpecError, load_spec, parse_spec


def base() -> dict[str, Any]:
    return {
        "name": "tiny",
        "grid": {
            "datasets": ["digits"],
            "models": [{"name": "mlp_general", "hidden": [16, 8]}],
            "activations": [
                "relu",
                {"name": "srelu", "max_value": 0.5, "where": "act2"},
                {"name": "drelu", "insert": "before_output", "width": 8},
            ],
            "objectives": [
                "natural",
                {"name": "drelu_penalty", "lam": 0.001},
                {"name": "trades", "beta": 6, "eps": 0.1, "steps": 2},
            ],
            "seeds": [0, 1],
            "exclude": [
                {"activation": "relu", "objective": "drelu_penalty"},
                {"activation": "srelu", "objective": "drelu_penalty"},
            ],
        },
        "training": {"epochs": 3, "batch_size": 64, "lr": 0.01},
        "evaluation": {"protocols": ["seed", "adaptive"], "eps": [0.1, 0.2], "fast": True},
        "quick": {"training": {"epochs": 1}, "evaluation": {"n": 50}, "grid": {"seeds": [0]}},
    }


def errors_of(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(doc, source="spec.yaml")
    lines = str(info.value).splitlines()
    assert lines == info.value.errors
    return lines


def edit(**paths: Any) -> dict[str, Any]:
    """base() with dotted paths set, e.g. edit(**{"grid.seeds": [0]})."""
    doc = base()
    for dotted, value in paths.items():
        node: Any = doc
        *parents, last = dotted.split(".")
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return doc


def test_valid_spec_expands_grid_with_stable_ids() -> None:
    spec = parse_spec(base(), source="spec.yaml")
    cells = spec.cells()
    # 3 activations x 3 objectives - 2 excluded pairs = 7, times 2 seeds
    assert len(cells) == 14
    ids = [c.cell_id for c in cells]
    assert len(set(ids)) == 14
    assert all(c.cell_id == cell_id(c.config) for c in cells)
    again = parse_spec(copy.deepcopy(base()), source="other.yaml").cells()
    assert [c.cell_id for c in again] == ids  # the id depends on the config, not the file
    first = cells[0].config
    assert first["dataset"] == {"name": "digits"}
    assert first["activation"] == {"name": "relu"}
    assert first["training"] == {"val_fraction": 0.2, "epochs": 3, "batch_size": 64, "lr": 0.01}
    assert first["evaluation"]["eps"] == [0.1, 0.2] and first["evaluation"]["norm"] == "Linf"
    assert isinstance(first["training"]["lr"], float)
    # a changed training setting changes every id
    doc = edit(**{"training.lr": 0.02})
    assert not set(ids) & {c.cell_id for c in parse_spec(doc).cells()}


def test_quick_overrides_apply_only_with_quick() -> None:
    spec = parse_spec(base())
    quick = spec.cells(quick=True)
    assert len(quick) == 7  # seeds [0] only
    assert {c.config["training"]["epochs"] for c in quick} == {1}
    assert {c.config["evaluation"]["n"] for c in quick} == {50}
    assert {c.config["training"]["epochs"] for c in spec.cells()} == {3}
    # without a quick block: fast protocols, at most 2 epochs, 500 points
    doc = base()
    del doc["quick"]
    q = parse_spec(doc).cells(quick=True)[0].config
    assert q["training"]["epochs"] == 2 and q["evaluation"]["fast"] and q["evaluation"]["n"] == 500


def test_wrong_type_names_path_and_value() -> None:
    doc = edit(**{"grid.activations.1": {"name": "srelu", "max_value": "abc"}})
    assert errors_of(doc) == [
        'spec.yaml: grid.activations[1].max_value: expected a number > 0, got "abc"'
    ]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "grid.activations.1",
            {"name": "srelu", "max_vale": 0.1},
            'grid.activations[1].max_vale: unknown key; did you mean "max_value"?',
        ),
        ("grid.models.0", "mlp_generl", 'unknown model "mlp_generl"; did you mean "mlp_general"?'),
        ("grid.datasets.0", "digitz", 'unknown dataset "digitz"; did you mean "digits"?'),
        ("grid.activations.0", "srelux", 'unknown activation "srelux"; did you mean "srelu"?'),
        ("grid.objectives.0", "tradez", 'unknown objective "tradez"; did you mean "trades"?'),
        (
            "evaluation.protocols",
            ["adaptiv"],
            'unknown protocol "adaptiv"; did you mean "adaptive"?',
        ),
        ("evaluation.eps", [0.1, -0.1], "evaluation.eps[1]: expected a number >= 0, got -0.1"),
        ("training.batch_sise", 64, 'training.batch_sise: unknown key; did you mean "batch_size"?'),
        ("training.lr", -1, "training.lr: must be a finite number in (0, inf), got -1"),
        ("training.seed", 3, "training.seed: cannot be set here: set seeds in grid.seeds"),
        ("evaluation.norm", "l3", 'evaluation.norm: expected linf or l2, got "l3"'),
        ("grid.seeds", [0, 0], "grid.seeds[1]: duplicate seed 0"),
    ],
)
def test_each_error_kind(path: str, value: Any, expected: str) -> None:
    lines = errors_of(edit(**{path: value}))
    assert len(lines) == 1, lines
    assert lines[0].startswith("spec.yaml: ") and expected in lines[0], lines[0]


def test_impossible_combinations() -> None:
    doc = base()
    doc["grid"]["exclude"] = []  # relu/srelu with the D-ReLU penalty are now in the grid
    lines = errors_of(doc)
    assert len(lines) == 2
    assert all(
        line.startswith("spec.yaml: grid.objectives[1]: the D-ReLU cap penalty") for line in lines
    )
    assert "{activation: relu, objective: drelu_penalty} to grid.exclude" in lines[0]

    mlp_conv = edit(**{"grid.activations.2": {"name": "drelu", "insert": "after_input"}})
    (line,) = errors_of(mlp_conv)
    assert line.startswith("spec.yaml: grid.activations[2].insert: after_input inserts a conv")
    assert "is an MLP" in line

    (line,) = errors_of(edit(**{"grid.activations.1": {"name": "srelu", "where": "act9"}}))
    assert "grid.activations[1].where: match 'act9' selects no activation" in line
    assert "act1 (ReLU), act2 (ReLU)" in line

    lines = errors_of(edit(**{"grid.models": ["mlp_general", "lenet5"]}))
    assert 'grid.models[1]: model "lenet5" cannot take the (1, 8, 8) images' in lines[0]
    # lenet5 names its activations features.act1 ...: the glob "act2" matches none there
    assert "grid.activations[1].where: match 'act2' selects no activation" in lines[1]
    assert len(lines) == 2


def test_quick_block_errors_are_labelled() -> None:
    doc = edit(**{"quick.grid": {"activations": [{"name": "drelu", "insert": "after_input"}]}})
    doc["quick"]["grid"]["objectives"] = ["natural"]
    (line,) = errors_of(doc)
    assert line.startswith("spec.yaml: quick.grid.activations[0].insert: after_input")
    assert line.endswith("(with the quick: overrides)")


def test_all_errors_reported_together(tmp_path: Path) -> None:
    text = """\
name: bad
grid:
  datasets: [digits]
  models: [{name: mlp_general, hiden: [8]}, resnet19]
  activations: [{name: srelu, max_value: -1}, {name: drelu, insert: sideways}]
  objectives: [{name: adversarial, attack: {name: pgdd}}]
  seeds: [0]
training: {epochs: 0}
evaluation: {eps: -0.5, protocols: [seed], n: 0}
bogus: 1
"""
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    lines = info.value.errors
    assert len(lines) == 9, lines
    assert all(line.startswith(f"{path}: ") for line in lines)
    wanted = [
        "bogus: unknown key",
        'grid.models[0].hiden: unknown key; did you mean "hidden"?',
        'grid.models[1]: unknown model "resnet19"; did you mean "resnet18"?',
        "grid.activations[0].max_value: expected a number > 0, got -1",
        'grid.activations[1].insert: expected one of before_output, after_input, got "sideways"',
        'grid.objectives[0].attack.name: unknown attack "pgdd"; did you mean "pgd"?',
        "training.epochs: must be an int >= 1, got 0",
        "evaluation.eps: expected a number >= 0, got -0.5",
        "evaluation.n: expected an integer >= 1, got 0",
    ]
    for w in wanted:
        assert sum(w in line for line in lines) == 1, (w, lines)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(SpecError, match="invalid YAML"):
        load_spec(path)
    path.write_text("name: x\ngrid: [1, 2\n")
    with pytest.raises(SpecError, match=r"line \d+, column \d+: invalid YAML"):
        load_spec(path)
    with pytest.raises(SpecError, match="cannot read the spec"):
        load_spec(tmp_path / "missing.yaml")


def test_custom_protocol_and_two_phase() -> None:
    doc = base()
    doc["evaluation"]["protocols"] = [
        "seed",
        {"name": "mine", "attacks": [{"attack": "pgd", "steps": 5, "bpda": True}]},
    ]
    doc["grid"]["objectives"].append(
        {"name": "two_phase", "second": {"name": "pgd_at", "eps": 0.1}, "switch_fraction": 0.5}
    )
    spec = parse_spec(doc)
    assert len(spec.cells()) == 20
    assert spec.cells()[0].config["evaluation"]["protocols"][1]["attacks"][0]["steps"] == 5
    bad = copy.deepcopy(doc)
    bad["evaluation"]["protocols"][1]["attacks"][0]["eps"] = 0.3
    (line,) = errors_of(bad)
    assert "evaluation.protocols[1].attacks[0].eps: cannot be set here" in line
    bad = copy.deepcopy(doc)
    del bad["grid"]["objectives"][-1]["switch_fraction"]
    bad["grid"]["objectives"][-1]["switch_epoch"] = 2  # fine for 3 epochs, not for quick's 1
    (line,) = errors_of(bad)
    assert "grid.objectives[3].switch_epoch: switches at epoch 2 but training runs 1" in line
    assert line.endswith("(with the quick: overrides)")


def test_defence_axes_include_and_model_training() -> None:
    doc = base()
    doc["grid"]["models"] = [{"name": "mlp_general", "hidden": [16, 8], "training": {"lr": 0.05}}]
    doc["grid"]["include"] = [
        {"activations": ["relu"], "objectives": ["natural"],
         "preprocess": [{"name": "jpeg", "quality": 50}, {"name": "autoencoder", "epochs": 1}]},
        {"activations": ["relu"], "objectives": ["natural"],
         "transforms": [{"name": "spectral_norm"}, {"name": "dropout", "p": 0.2}]},
        {"objectives": ["natural"], "swaps": [{"name": "cap", "max_value": 0.1}]},
    ]  # fmt: skip
    doc["grid"]["exclude"].append({"activation": "relu", "swap": "cap"})
    doc["evaluation"]["diagnostics"] = ["zero_gradient", {"name": "layer_growth", "n": 50}]
    spec = parse_spec(doc)
    cells = spec.cells()
    # main grid 7 x 2 seeds; includes add 2 + 2 preprocess/transform cells and 2 cap swaps
    # (srelu and drelu), each x 2 seeds; "none" values stay out of the cell config
    assert len(cells) == 14 + 2 * (2 + 2 + 2)
    plain = cells[0].config
    assert not {"preprocess", "transform", "swap"} & set(plain)
    assert plain["training"]["lr"] == 0.05 and "training" not in plain["model"]
    assert plain["evaluation"]["diagnostics"][0] == {"name": "zero_gradient"}
    preps = [c.config["preprocess"] for c in cells if "preprocess" in c.config]
    assert {"name": "autoencoder", "epochs": 1} in preps and len(preps) == 4
    swaps = {c.config["activation"]["name"] for c in cells if "swap" in c.config}
    assert swaps == {"srelu", "drelu"}
    assert any("preprocess=jpeg(quality=50)" in c.label for c in cells)
    # quick training keys beat the per-model ones
    assert {c.config["training"]["lr"] for c in spec.cells(quick=True)} == {0.05}
    doc["quick"]["training"]["lr"] = 0.002
    assert {c.config["training"]["lr"] for c in parse_spec(doc).cells(quick=True)} == {0.002}
    # specs without the new keys keep their ids (a none axis value adds nothing)
    explicit = base()
    explicit["grid"].update(preprocess=["none"], transforms=["none"], swaps=["none"])
    assert [c.cell_id for c in parse_spec(explicit).cells()] == [
        c.cell_id for c in parse_spec(base()).cells()
    ]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("grid.preprocess", [{"name": "jpegg"}], 'unknown preprocessing defence "jpegg"; did '),
        (
            "grid.preprocess",
            [{"name": "autoencoder", "in_channels": 3}],
            "grid.preprocess[0].in_channels: cannot be set here: set from the dataset",
        ),
        ("grid.preprocess", [{"name": "jpeg", "quality": 0}], "grid.preprocess[0]:"),
        (
            "grid.transforms",
            [{"name": "dropout", "p": 1.5}],
            "grid.transforms[0].p: expected a number in [0, 1), got 1.5",
        ),
        ("grid.transforms", [{"name": "spectral"}], 'did you mean "spectral_norm"?'),
        (
            "grid.swaps",
            [{"name": "relu", "where": "act1", "count": 1}],
            "grid.swaps[0]: give where: or count:, not both",
        ),
        (
            "grid.swaps",
            [{"name": "relu", "count": 9}],
            "grid.swaps[0].count: activation index 2 out of range",
        ),
        ("grid.swaps", [{"name": "cap"}], 'grid.swaps[0]: missing required key "max_value"'),
        ("evaluation.diagnostics", ["layer_grow"], 'did you mean "layer_growth"?'),
        (
            "evaluation.diagnostics",
            [{"name": "zero_gradient", "stepz": 3}],
            'evaluation.diagnostics[0].stepz: unknown key; did you mean "steps"?',
        ),
        (
            "evaluation.diagnostics",
            [{"name": "pgd_steps", "steps": [0, 2]}],
            "expected a non-empty list of integers >= 1",
        ),
        (
            "grid.models",
            [{"name": "mlp_general", "training": {"lr": -1}}],
            "grid.models[0].training.lr: must be a finite number in (0, inf), got -1",
        ),
        ("grid.include", [{}], "grid.include[0]: an empty include block would repeat"),
        ("grid.include", [{"seed": [1]}], "grid.include[0].seed: unknown key; did you mean"),
    ],
)
def test_extension_errors(path: str, value: Any, expected: str) -> None:
    lines = errors_of(edit(**{path: value}))
    assert any(expected in line for line in lines), lines


def test_cap_swap_needs_caps() -> None:
    doc = edit(**{"grid.swaps": [{"name": "cap", "max_value": 0.1}]})
    lines = errors_of(doc)
    assert len(lines) == 1 and "grid.swaps[0]: sets S-ReLU/D-ReLU caps" in lines[0]
    assert 'activation "relu"' in lines[0]
