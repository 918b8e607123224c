"""Ranking methods across blocks (robustact.report.ranking) and mean ± sd over seeds.

Blocks are datasets (robust tables: dataset × threat model), never attacks; one table per
metric; masked methods marked; ε-independent attacks counted once; a stochastic model's
number is the mean over its runs.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from robustact.evaluate.metrics import (
    AttackOutcome,
    CleanOutcome,
    summarise,
    summarise_repeats,
)
from robustact.report.ranking import (
    cd_figures,
    headline_records,
    masking_levels,
    rank_methods,
    ranking_markdown,
)
from robustact.stats import aggregate_seeds

DS = "cfg.dataset.name"


def rec(method: str, ds: str, protocol: str, attack: str, value: float, eps: float | None = None,
        norm: str | None = None, seed: int = 0, **kw: Any) -> dict[str, Any]:  # fmt: skip
    """One store-like record (fractions, as the store holds them)."""
    r = {"cell_id": f"{method}/{ds}/{seed}", "seed": seed, "cfg.seed": seed, "kind": "result",
         "protocol": protocol, "attack": attack, "item": None, "metric": "accuracy",
         "value": value, "eps": eps, "norm": norm, "cfg.method": method, DS: ds}  # fmt: skip
    r.update(kw)
    return r


def cell(method: str, ds: str, clean: float, worst: float, seed: int = 0) -> list[dict[str, Any]]:
    """A cell evaluated by the "seed" protocol (FGSM, PGD and their worst case) at eps 0.1
    and the adaptive protocol, with clean rows for both."""
    e, n = 0.1, "Linf"
    return [
        rec(method, ds, "seed", "clean", clean, seed=seed),
        rec(method, ds, "seed", "FGSM", worst + 0.2, e, n, seed=seed),
        rec(method, ds, "seed", "PGD", worst, e, n, seed=seed),
        rec(method, ds, "seed", "worst", worst, e, n, seed=seed),
        rec(method, ds, "adaptive", "clean", clean, seed=seed),
        rec(method, ds, "adaptive", "worst", worst / 2, e, n, seed=seed),
    ]


# Worst-case accuracy under the seed protocol per dataset (rows) and method A, B, C:
#   D1 .50 .40 .30 -> ranks 1 2 3      D2 .60 .20 .40 -> 1 3 2
#   D3 .70 .50 .60 -> 1 3 2            D4 .30 .35 .10 -> 2 1 3
# average ranks 1.25, 2.25, 2.5; N = 4, k = 3:
#   chi2_F = 12 * 4 / (3 * 4) * (1.25^2 + 2.25^2 + 2.5^2 - 3 * 4^2 / 4) = 4 * 0.875 = 3.5
#   F_F = (N - 1) chi2 / (N (k - 1) - chi2) = 3 * 3.5 / (8 - 3.5) = 2.333
WORST = {"D1": (0.5, 0.4, 0.3), "D2": (0.6, 0.2, 0.4), "D3": (0.7, 0.5, 0.6),
         "D4": (0.3, 0.35, 0.1)}  # fmt: skip
CLEAN = {"D1": (0.9, 0.95, 0.8), "D2": (0.9, 0.95, 0.8), "D3": (0.9, 0.95, 0.8),
         "D4": (0.9, 0.95, 0.8)}  # fmt: skip


def four_datasets() -> list[dict[str, Any]]:
    out = []
    for ds, worst in WORST.items():
        for m, w, c in zip("ABC", worst, CLEAN[ds], strict=True):
            out += cell(m, ds, c, w)
    return out


def test_friedman_with_datasets_as_blocks_by_hand() -> None:
    tables, notes = rank_methods(four_datasets(), method_key="cfg.method", block_keys=(DS,))
    assert notes == []
    assert [t.protocol for t in tables] == ["clean", "seed", "adaptive"]
    clean, seed, adaptive = tables
    assert seed.title == "Robust accuracy, paper protocol"
    # 4 blocks (datasets x the one threat model), not 4 x 3 attack rows; no clean row in it
    assert seed.table.pivot.rows == [(d, "Linf ε=0.1") for d in WORST]
    assert seed.table.avg_ranks.tolist() == [1.25, 2.25, 2.5]
    assert seed.stats.startswith("Blocks: 4 (dataset × threat model); methods: 3.")
    assert "Comparison of 3 methods over 4 blocks" in seed.stats
    assert "Friedman chi2 = 3.50 (df = 2" in seed.stats and "F_F = 2.33 (df = 2, 6" in seed.stats
    assert seed.table.pivot.values[0].tolist() == pytest.approx([50.0, 40.0, 30.0])  # percent
    # clean accuracy is its own table: B best everywhere, never pooled with robust numbers
    assert clean.table.pivot.rows == [(d,) for d in WORST]
    assert clean.table.avg_ranks.tolist() == [2.0, 1.0, 3.0]
    assert "Friedman chi2 = 8.00" in clean.stats  # 12*4/12 * (4 + 1 + 9 - 12) = 8
    # the adaptive table ranks the halves: the same order as the seed protocol
    assert adaptive.table.avg_ranks.tolist() == [1.25, 2.25, 2.5]
    md = "\n".join(ranking_markdown(tables))
    assert "| D1 | Linf ε=0.1 | **50.0 (1)** | 40.0 (2) | 30.0 (3) |" in md
    assert set(cd_figures(tables)) == {
        "Critical difference, Clean accuracy",
        "Critical difference, Robust accuracy, paper protocol",
        "Critical difference, Robust accuracy, adaptive protocol",
    }


def test_one_block_or_one_method_runs_no_test() -> None:
    one = [r for r in four_datasets() if r[DS] == "D1"]
    tables, _ = rank_methods(one, method_key="cfg.method", block_keys=(DS,))
    assert all("Only one block (D1" in t.stats and "chi2" not in t.stats for t in tables)
    assert cd_figures(tables) == {}  # no CD diagram from one block
    solo = [r for r in four_datasets() if r["cfg.method"] == "A"]
    tables, _ = rank_methods(solo, method_key="cfg.method", block_keys=(DS,))
    assert all("Only one method (A): nothing to rank" in t.stats for t in tables)
    assert cd_figures(tables) == {}


def test_eps_independent_attack_is_one_block_not_one_per_eps() -> None:
    records = []
    for m, acc in (("A", 0.6), ("B", 0.4)):
        for e, w in ((0.05, acc), (0.1, acc / 2)):
            records.append(rec(m, "D1", "seed", "worst", w, e, "Linf"))
            # CW-L2 (own threat model) rerun at every eps: identical rows, once stored with
            # its own threat (eps None, L2), once with the protocol's eps (older stores)
            records.append(rec(m, "D1", "seed", "CW-L2", acc - 0.1, None, "L2"))
            records.append(rec(m, "D1", "seed", "CW-L2 old", acc - 0.2, e, "L2"))
    tables, _ = rank_methods(records, method_key="cfg.method", block_keys=(DS,),
                             protocols=["seed"])  # fmt: skip
    (seed,) = tables  # no clean rows: no clean table
    assert seed.protocol == "seed"
    assert seed.table.pivot.rows == [
        ("D1", "Linf ε=0.05"), ("D1", "Linf ε=0.1"), ("D1", "CW-L2 (L2)"),
        ("D1", "CW-L2 old (L2 ε=0.05)"),
    ]  # fmt: skip
    assert seed.stats.startswith("Blocks: 4 (")  # 2 threat models + 2 attacks, each once
    assert seed.table.pivot.values[2].tolist() == pytest.approx([50.0, 30.0])
    assert seed.table.pivot.counts.max() == 1  # a duplicated row is not a second seed


def test_masked_and_suspect_methods_are_marked_in_every_table() -> None:
    records = four_datasets()
    for m, level in (("A", 2), ("B", 1), ("C", 0)):
        for ds in WORST:
            records.append({"cell_id": f"{m}/{ds}/0", "kind": "masking", "protocol": "masking",
                            "attack": "verdict", "metric": "level", "value": float(level),
                            "eps": 0.1, "norm": "Linf", "cfg.method": m, DS: ds})  # fmt: skip
    assert masking_levels(records)["A/D1/0"] == 2
    tables, _ = rank_methods(records, method_key="cfg.method", block_keys=(DS,))
    for t in tables:
        assert t.table.pivot.methods == ["A †", "B ‡", "C"]
    seed = tables[1].stats
    assert "† masking verdict masked: A; its rank rests on a masked number" in seed
    assert "‡ masking verdict suspect: B; its rank rests on a suspect number" in seed
    assert "rests on a model whose robust evaluation is masked" in tables[0].stats
    # the verdict of a masking report passed in (no typed verdict rows) marks as well
    tables, _ = rank_methods(four_datasets(), method_key="cfg.method", block_keys=(DS,),
                             masking={"C/D2/0": {"verdict": "masked"}})  # fmt: skip
    assert tables[2].table.pivot.methods == ["A", "B", "C †"]


def test_mean_and_sd_over_three_seeds() -> None:
    records = []
    for seed, acc in enumerate((0.90, 0.92, 0.97)):
        records += [rec("A", "D1", "seed", "worst", acc, 0.1, "Linf", seed=seed),
                    rec("B", "D1", "seed", "worst", 0.5, 0.1, "Linf", seed=seed)]  # fmt: skip
    records.append(dict(records[0]))  # the same cell's row again: not a fourth seed
    aggs = aggregate_seeds(records)
    assert len(aggs) == 2
    a = aggs[0]
    # mean 0.93; sd = sqrt((0.03^2 + 0.01^2 + 0.04^2) / 2) = sqrt(0.0013) = 0.036056
    assert a.mean == pytest.approx(0.93) and a.sd == pytest.approx(math.sqrt(0.0013))
    assert a.n_seeds == 3 and a.seeds == (0, 1, 2)
    assert a.record["cfg.method"] == "A" and "seed" not in a.record and "cfg.seed" not in a.record
    assert aggs[1].sd == pytest.approx(0.0)
    one = aggregate_seeds(records[:1])[0]
    assert one.sd is None and one.to_record()["n_seeds"] == 1
    tables, _ = rank_methods(records, method_key="cfg.method", block_keys=(DS,))
    md = "\n".join(ranking_markdown(tables))
    assert "| D1 | Linf ε=0.1 | **93.0 ± 3.6 (1)** | 50.0 ± 0.0 (2) |" in md


def _run(pred: list[int], adv: list[int]) -> tuple[CleanOutcome, list[AttackOutcome]]:
    y = torch.tensor([0, 1, 2])
    c = CleanOutcome(y, torch.tensor(pred), torch.ones(3), torch.ones(3))
    a = AttackOutcome("A", c.pred == y, torch.tensor(adv), torch.ones(3), torch.ones(3),
                      torch.zeros(3), torch.zeros(3), 0.0)  # fmt: skip
    return c, [a]


def test_stochastic_headline_is_the_mean_over_runs_and_runs_are_kept() -> None:
    # robust accuracy per run: 2/3, 1/3, 3/3 -> mean 2/3 (run 1 alone would say 2/3 too, so
    # clean tells them apart: 3/3, 2/3, 3/3 -> mean 8/9, run 1 = 1)
    runs = [_run([0, 1, 2], [0, 1, 0]), _run([0, 1, 1], [0, 0, 1]), _run([0, 1, 2], [0, 1, 2])]
    results = [summarise(c, a, protocol="p", eps=0.1, norm="Linf", num_classes=3,
                         cascade=False) for c, a in runs]  # fmt: skip
    res = results[0]
    res.stochastic = summarise_repeats(runs, results, 3)
    rows = {(r.attack, r.metric, r.item): r.value for r in res.rows()}
    assert res.clean_accuracy == 1.0  # the EvalResult's own numbers stay run 1
    assert rows[("clean", "accuracy", None)] == pytest.approx(8 / 9)
    assert rows[("worst", "accuracy", None)] == pytest.approx(2 / 3)
    assert rows[("A", "accuracy", None)] == pytest.approx(2 / 3)
    assert [rows[("clean", "accuracy_run", str(i))] for i in (1, 2, 3)] == pytest.approx(
        [1.0, 2 / 3, 1.0]
    )
    assert rows[("worst", "accuracy_sd", None)] == pytest.approx(1 / 3)
    # an older store (accuracy = run 1 next to accuracy_mean): the report headlines the mean
    old = [rec("S", "D1", "seed", "worst", 1.0, 0.1, "Linf"),
           rec("S", "D1", "seed", "worst", 0.6, 0.1, "Linf", metric="accuracy_mean"),
           rec("S", "D1", "seed", "worst", 0.05, 0.1, "Linf", metric="accuracy_sd")]  # fmt: skip
    (head,) = headline_records(old)
    assert head["value"] == 0.6 and head["runs_sd"] == 0.05
    tables, _ = rank_methods(old, method_key="cfg.method", block_keys=(DS,))
    assert "60.0 ± 5.0 (1)" in "\n".join(ranking_markdown(tables))  # one seed: sd over runs
    assert "stochastic models: mean over their repeated runs" in tables[0].caption
