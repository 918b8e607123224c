"""The seeds' published numbers (recipes/paper/*.yaml): format, fidelity to the seed text,
row matching against every recipe's full grid, and the join with measured values."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

from robustact.experiments import load_spec
from robustact.experiments.paper import (
    PaperFileError,
    PaperNumbers,
    list_paper_files,
    parse_paper_numbers,
)
from robustact.experiments.paper import load_paper_numbers as _load_paper_numbers
from robustact.experiments.paper_join import (
    join_measured,
    joined_markdown,
    no_row_reason,
    row_for_config,
)

RECIPES = Path(__file__).resolve().parents[1] / "src" / "robustact" / "recipes"
RECIPE_NAMES = sorted(p.stem for p in RECIPES.glob("*.yaml"))
_SEED_CANDIDATES = [
    Path(__file__).resolve().parents[1] / ".." / "shared" / "seeds",
    Path("/work/shared/seeds"),
]
SEEDS = next((p for p in _SEED_CANDIDATES if p.is_dir()), None)
needs_seeds = pytest.mark.skipif(
    SEEDS is None, reason="../shared/seeds (the seed texts) is not present"
)


@functools.cache
def load_paper_numbers(name: str) -> PaperNumbers:
    """The loader, parsed once per test session (the files are read-only package data)."""
    return _load_paper_numbers(name)


@functools.cache
def _seed_lines(file: str) -> list[str]:
    assert SEEDS is not None
    return (SEEDS / file).read_text(encoding="utf-8").split("\n")


def _seed_line(file: str, line: int) -> str:
    return _seed_lines(file)[line - 1]


def test_every_recipe_has_a_paper_file() -> None:
    assert len(RECIPE_NAMES) == 18
    assert list_paper_files() == RECIPE_NAMES


@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_file_loads_and_values_are_in_range(name: str) -> None:
    paper = load_paper_numbers(name)
    assert paper.recipe == name
    for _, n in paper.all_numbers():
        assert 0.0 <= n.fraction <= 1.0
        scale = 100.0 if n.unit == "%" else 1.0
        assert n.fraction == pytest.approx(float(n.value) / scale, abs=1e-12)
    for t in paper.tables:
        assert (len(t.numbers) > 0) != (t.numbers_none is not None)
        assert t.protocol, f"{name}/{t.id} states no protocol"


@needs_seeds
@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_every_quote_is_on_its_cited_seed_line(name: str) -> None:
    paper = load_paper_numbers(name)
    raw = yaml.safe_load((RECIPES / "paper" / f"{name}.yaml").read_text(encoding="utf-8"))
    seed = raw["seed"]
    for t in paper.tables:
        assert t.source.quote in _seed_line(t.source.file or seed, t.source.line), t.id
        for p in t.protocol:
            if p.source is not None:
                assert p.source.quote in _seed_line(p.source.file, p.source.line), (t.id, p.text)
        for n in t.numbers:
            assert n.value in n.source.quote, (t.id, n.row, n.column)
            assert n.source.quote in _seed_line(n.source.file, n.source.line), (
                t.id,
                n.row,
                n.column,
            )


# (recipe, table, row, column, value as printed, seed file, line, tab column of the seed line)
# typed by hand from the seed text, independently of tools/paper_transcribe.py
DISS, BRELU = "000_db23c60551cd3451.txt", "003_5e2aec47b23b8998.txt"
SPOT = [
    ("table4_2", "table4_2", "MNIST / Max = 0.01", "PGD (eps=0.1)", "89.61", DISS, 873, 5),
    ("table4_2", "table4_2", "MNIST / No Max", "PGD (eps=0.1)", "9.47", DISS, 873, 2),
    ("table4_2", "table4_2", "FMNIST / Max = 1", "FGSM (eps=0.05)", "46.46", DISS, 875, 3),
    ("table4_2", "table4_2", "EMNIST / Max = 0.1", "PGD (eps=0.1)", "65.75", DISS, 888, 4),
    ("table4_2", "table4_2", "KMNIST / No Max", "Clean", "92.34", DISS, 879, 2),
    ("table4_3", "table4_3", "Max Val. 0.01 / Adv. Training FGSM", "PGD", "96.36", DISS, 906, 4),
    ("table4_3", "table4_3", "Max Val. - / Adv. Training PGD", "CW(L2)", "0.10", DISS, 907, 5),
    (
        "ch5_cifar_tables5_2_to_5_5",
        "table5_2",
        "Resnet50 / D-ReLU-10^4",
        "AP_DLR",
        "78.40",
        DISS,
        1102,
        6,
    ),
    (
        "ch5_cifar_tables5_2_to_5_5",
        "table5_3",
        "MobilenetV2 / TRADES-1",
        "PGD",
        "9.47",
        DISS,
        1173,
        4,
    ),
    ("ch5_cifar_tables5_2_to_5_5", "table5_4", "Shallow CNN / AT", "CW_L2", "10.60", DISS, 1208, 7),
    (
        "ch5_cifar_tables5_2_to_5_5",
        "table5_5",
        "CIFAR100 / Resnet101 / TRADES-6",
        "Clean",
        "10.67",
        DISS,
        1293,
        4,
    ),
    (
        "brelu_tables1_3_6",
        "brelu_table1",
        "ResNet-18 / BReLU (ours)",
        "Robust Acc.",
        "63.9",
        BRELU,
        106,
        2,
    ),
    ("brelu_tables1_3_6", "brelu_table3", "VGG-16 / BReLU (ours)", "CW", "72.3", BRELU, 144, 6),
    ("brelu_tables1_3_6", "brelu_table3", "ResNet-18 / ELU", "CW", "4.6", BRELU, 143, 3),
    (
        "brelu_tables1_3_6",
        "brelu_table6",
        "ResNet-18 / BReLU",
        "Layer 17 Post",
        "27",
        BRELU,
        258,
        14,
    ),
    ("brelu_tables1_3_6", "brelu_table6", "ResNet-18 / PReLU", "Layer 2 Post", "0", BRELU, 252, 6),
    (
        "brelu_table4_dropout",
        "brelu_table4",
        "LReLU + Dropout ($p = 0.5$)",
        "Val Acc.",
        "72.9",
        BRELU,
        166,
        1,
    ),
    (
        "brelu_table5_vbrelu",
        "brelu_table5",
        "VBReLU (alpha 0.05)",
        "Robust acc.",
        "40.4",
        BRELU,
        243,
        3,
    ),
    ("brelu_table5_vbrelu", "brelu_table5", "BReLU (alpha 1)", "Val acc.", "88.3", BRELU, 240, 2),
]


@pytest.mark.parametrize(("recipe", "table", "row", "column", "value", "file", "line", "tab"), SPOT)
def test_spot_checks_against_the_seed(
    recipe: str, table: str, row: str, column: str, value: str, file: str, line: int, tab: int
) -> None:
    n = load_paper_numbers(recipe).number(table, row, column)
    assert n is not None
    assert (n.value, n.source.file, n.source.line) == (value, file, line)
    assert n.fraction == pytest.approx(float(value) / 100)
    if SEEDS is None:
        pytest.skip("../shared/seeds is not present: the seed-side half of the check needs it")
    cell = _seed_line(file, line).split("\t")[tab].strip()
    assert cell.split(" ")[0].split("(")[0].rstrip("~") == value, cell


def test_ambiguous_table5_1_keeps_only_identifiable_columns() -> None:
    t = load_paper_numbers("table5_1").table("table5_1")
    assert t.ambiguous and "scrambled" in t.ambiguous
    assert {n.column for n in t.numbers} == {"CW_L2", "Clean"}
    assert load_paper_numbers("table5_1").number("table5_1", "Dense / D-ReLU-10^2", "Clean") is None
    assert load_paper_numbers("table5_1").number("table5_1", "Dense / AT", "CW_L2").value == "12.57"  # type: ignore[union-attr]


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_row_for_config_maps_every_grid_cell(name: str, quick: bool) -> None:
    """Each cell maps to exactly one row of each table, or to a declared no_row reason; in the
    full grid every row that has a match: is reproduced by some cell."""
    paper = load_paper_numbers(name)
    cells = load_spec(RECIPES / f"{name}.yaml").cells(quick=quick)
    any_hit, has_rows = False, False
    for t in paper.tables:
        if not any(r.match for r in t.rows):
            continue
        hit = set()
        for c in cells:
            row = row_for_config(paper, t.id, c.config, quick=quick)  # raises if two rows match
            reason = no_row_reason(paper, t.id, c.config, quick=quick)
            assert (row is None) != (reason is None), f"{name}/{t.id}: {c.label}: {row}, {reason}"
            if row is not None:
                hit.add(row)
        matchable = {r.label for r in t.rows if r.match is not None}
        any_hit, has_rows = any_hit or bool(hit), True
        if not quick:
            assert matchable <= hit, f"{name}/{t.id}: rows no cell reproduces: {matchable - hit}"
    if quick and has_rows:
        assert any_hit, f"{name}: no quick cell stands in for any row of any table"


def test_quick_digits_cells_stand_in_for_mnist_rows() -> None:
    paper = load_paper_numbers("table4_2")
    cells = load_spec(RECIPES / "table4_2.yaml").cells(quick=True)
    rows = sorted(str(row_for_config(paper, "table4_2", c.config, quick=True)) for c in cells)
    assert rows == ["MNIST / Max = 0.01", "MNIST / Max = 0.1", "MNIST / Max = 1", "MNIST / No Max"]
    assert all(row_for_config(paper, "table4_2", c.config) is None for c in cells)


def test_row_for_config_flagship_cells() -> None:
    p42 = load_paper_numbers("table4_2")
    cfg = {
        "dataset": {"name": "mnist"},
        "activation": {"name": "srelu", "max_value": 0.01, "where": "act2"},
        "model": {"name": "mlp_general"},
        "objective": {"name": "natural"},
    }
    assert row_for_config(p42, "table4_2", cfg) == "MNIST / Max = 0.01"
    assert row_for_config(p42, "table4_2", {**cfg, "dataset": {"name": "digits"}}) is None
    p5 = load_paper_numbers("ch5_cifar_tables5_2_to_5_5")
    drelu = {
        "dataset": {"name": "cifar100"},
        "model": {"name": "resnet101"},
        "activation": {"name": "drelu", "init_max": 100.0, "insert": "before_output"},
        "objective": {"name": "drelu_penalty", "lam": 1.0},
    }
    assert row_for_config(p5, "table5_3", drelu) == "Resnet101 / D-ReLU-1"
    assert row_for_config(p5, "table5_2", drelu) is None
    assert no_row_reason(p5, "table5_2", drelu) is not None
    p4 = load_paper_numbers("brelu_table4_dropout")
    plain = {
        "dataset": {"name": "cifar10"},
        "model": {"name": "resnet18"},
        "activation": {"name": "relu"},
        "objective": {"name": "pgd_at"},
    }
    assert row_for_config(p4, "brelu_table4", plain) == "ReLU"
    drop = {**plain, "transform": {"name": "dropout", "p": 0.2}}
    assert row_for_config(p4, "brelu_table4", drop) == "ReLU + Dropout ($p = 0.2$)"


def test_join_puts_measured_beside_paper() -> None:
    paper = load_paper_numbers("table4_2")
    key = ("table4_2", "MNIST / Max = 0.01", "PGD (eps=0.1)")
    extra = ("table4_2", "MNIST / Max = 0.01", "APGD-DLR (eps=0.1)")
    rows = join_measured(
        paper,
        {
            key: {"seed_protocol": 0.89, "adaptive": 0.16, "verdict": "masked"},
            extra: {"adaptive": 0.12},
        },
    )
    assert len(rows) == len(paper.all_numbers()) + 1
    by = {(r.table, r.row, r.column): r for r in rows}
    flag = by[key]
    assert flag.paper == pytest.approx(0.8961)
    assert (flag.seed_protocol, flag.adaptive, flag.worst_case, flag.verdict) == (
        0.89,
        0.16,
        0.16,
        "masked",
    )
    assert flag.cells(2) == [
        "table4_2",
        "MNIST / Max = 0.01",
        "PGD (eps=0.1)",
        "0.90",
        "0.89",
        "0.16",
        "0.16",
        "masked",
    ]
    unmeasured = by[("table4_2", "MNIST / No Max", "Clean")]
    assert unmeasured.seed_protocol is None and unmeasured.cells()[4:] == ["not run"] * 4
    assert rows[-1].paper is None and rows[-1].worst_case == 0.12 and rows[-1].cells()[3] == "-"
    md = joined_markdown(rows, 2).splitlines()
    assert md[0].startswith(
        "| table | row | column | paper | paper protocol (ours) | adaptive (ours) |"
    )
    assert (
        "| table4_2 | MNIST / Max = 0.01 | PGD (eps=0.1) | 0.90 | 0.89 | 0.16 | 0.16 | masked |"
        in md
    )
    assert len(md) == 2 + len(rows)
    with pytest.raises(ValueError, match="no table 'table9_9'"):
        join_measured(paper, {("table9_9", "a", "b"): {"adaptive": 0.1}})
    with pytest.raises(ValueError, match="not a fraction"):
        join_measured(paper, {key: {"adaptive": 16.0}})


def _raw(name: str) -> dict[str, Any]:
    data = yaml.safe_load((RECIPES / "paper" / f"{name}.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (
            lambda d: d["tables"][0]["numbers"][0].update(fraction=0.5),
            "$.tables[0].numbers[0].fraction",
        ),
        (lambda d: d["tables"][0]["numbers"][0].update(row="MNIST / Max = 7"), "unknown row"),
        (
            lambda d: d["tables"][0]["numbers"][0].update(value="198.49", fraction=1.9849),
            "outside its unit's range",
        ),
        (lambda d: d["tables"][0]["numbers"][0].update(value=98.49), "as printed, as a string"),
        (lambda d: d["tables"][0].pop("protocol"), "missing key(s) ['protocol']"),
        (lambda d: d["tables"][0].update(kind="plot"), "unknown kind"),
        (
            lambda d: [d["tables"][0]["protocol"][0].pop(k) for k in ("line", "quote")],
            "needs line: and quote:",
        ),
        (lambda d: d["tables"][0].update(numbers_none="no numbers"), "exactly one"),
        (lambda d: d["tables"][0]["rows"][0].update(colour="red"), "unknown key(s) ['colour']"),
    ],
)
def test_bad_file_gives_one_line_error(mutate: Any, needle: str) -> None:
    data = copy.deepcopy(_raw("table4_2"))
    mutate(data)
    with pytest.raises(PaperFileError) as info:
        parse_paper_numbers(data, file="t42.yaml")
    msg = str(info.value)
    assert needle in msg and msg.startswith("t42.yaml: $.") and "fix:" in msg and "\n" not in msg


def test_unknown_recipe_lists_known_files() -> None:
    with pytest.raises(FileNotFoundError, match=r"known: .*table4_2"):
        _load_paper_numbers("table9_9")
