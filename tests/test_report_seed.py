"""The report's seed part: seed tables beside the paper's numbers, seed figures by id, the
masking and diagnostics sections, swap in the method label and each recipe's declared outputs
written by a cut-down quick run."""

from __future__ import annotations

import copy
import csv
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from robustact.evaluate.rows import MetricRow
from robustact.experiments.paper import list_paper_files
from robustact.experiments.runner import run_spec
from robustact.experiments.spec import parse_spec
from robustact.experiments.store import ResultStore
from robustact.report import build_report
from robustact.report.seed_section import declared_outputs
from robustact.report.seed_tables import attack_matches, seed_heading

RECIPES = Path(__file__).resolve().parents[1] / "src" / "robustact" / "recipes"


def test_seed_heading_and_attack_matching() -> None:
    assert seed_heading("table4_2") == "Table 4.2"
    assert seed_heading("brelu_table6") == "BReLU Table 6"
    assert seed_heading("fig5_19") == "Figure 5.19"
    assert attack_matches("PGD", "PGD-10") and attack_matches("PGD", "PGD-20")
    assert attack_matches("PGD-7", "PGD-7") and not attack_matches("PGD-7", "PGD-10")
    assert attack_matches("CW", "CW-L2") and attack_matches("AP_CE", "APGD-CE") is False
    assert attack_matches("APGD-CE", "APGD-CE") and not attack_matches("PGD", "PGD-10+BPDA")


def _rows(clean: float, fgsm: float, pgd: float, adaptive: float) -> list[MetricRow]:
    out = []
    for p in ("seed", "adaptive"):
        out.append(MetricRow(p, "clean", "accuracy", clean, n=100))
    for eps in (0.05, 0.1):
        out += [
            MetricRow("seed", "FGSM", "accuracy", fgsm, eps, "Linf", n=100),
            MetricRow("seed", "PGD-10", "accuracy", pgd, eps, "Linf", n=100),
            MetricRow("seed", "worst", "accuracy", min(fgsm, pgd), eps, "Linf", n=100),
            MetricRow("adaptive", "worst", "accuracy", adaptive, eps, "Linf", n=100),
            MetricRow("masking", "verdict", "level", 2.0, eps, "Linf", kind="masking", n=100),
            MetricRow("masking", "check", "flagged", 1.0, eps, "Linf", kind="masking",
                      item="zero_gradient"),
        ]  # fmt: skip
    return out


def test_table4_2_in_every_format(tmp_path: Path) -> None:
    """Two real cells (ReLU and S-ReLU 0.01) in a store: the Table 4.2 section shows the
    paper's number, the paper protocol (its attacks named), adaptive, worst case, verdict."""
    db = tmp_path / "r.db"
    base = {"dataset": {"name": "digits"}, "model": {"name": "mlp_general"},
            "objective": {"name": "natural"}, "seed": 0}  # fmt: skip
    with ResultStore(db) as s:
        s.put_cell({**base, "activation": {"name": "relu"}}, _rows(0.9, 0.6, 0.5, 0.4),
                   spec="table4_2")  # fmt: skip
        s.put_cell(
            {**base, "activation": {"name": "srelu", "max_value": 0.01, "where": "act2"}},
            _rows(0.8, 0.7, 0.75, 0.2), spec="table4_2",
        )  # fmt: skip
    out = tmp_path / "rep"
    written = build_report(db, out)
    md = (out / "report.md").read_text()
    assert "## Table 4.2" in md
    head = (
        "| row | column | paper | paper protocol (FGSM, PGD-10) | adaptive | worst case | verdict |"
    )
    assert head in md
    # paper 89.61 as printed; ours PGD-10 75.0, adaptive 20.0, worst 20.0, verdict masked
    assert "| MNIST / Max = 0.01 | PGD (eps=0.1) | 89.61 | 75.0 | 20.0 | 20.0 | masked |" in md
    assert "| MNIST / No Max | Clean | 98.49 | 90.0 | 90.0 | 90.0 | masked |" in md
    rows = list(csv.DictReader(io.StringIO((out / "table4_2.csv").read_text())))
    pgd = next(
        r for r in rows if r["row"] == "MNIST / Max = 0.01" and r["column"] == "PGD (eps=0.1)"
    )
    assert float(pgd["paper_fraction"]) == pytest.approx(0.8961)
    assert float(pgd["ours"]) == pytest.approx(0.75) and float(pgd["adaptive"]) == pytest.approx(
        0.2
    )
    assert r"\label{tab:table4_2}" in (out / "table4_2.tex").read_text()
    html = (out / "report.html").read_text()
    assert 'data-seed-table="table4_2"' in html and "89.61" in html
    assert {"csv:table4_2", "tex:table4_2"} <= set(written)
    # masking is its own section, never ranked as a protocol
    assert "## Masking checks" in md and "## masking protocol" not in md
    assert "| srelu(max_value=0.01, where=act2) | 0.1 | masked | zero_gradient |" in md.replace(
        "srelu(max\\_value=0.01, where=act2)", "srelu(max_value=0.01, where=act2)"
    )


def _cut_down(name: str) -> dict[str, Any]:
    """The recipe with its quick section made tiny: 1 epoch, few points, small diagnostics."""
    data = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    quick = copy.deepcopy(data.get("quick") or {})
    quick.setdefault("training", {}).update({"epochs": 1})
    for obj in (quick.get("grid") or {}).get("objectives") or []:
        if isinstance(obj, dict) and "switch_epoch" in obj:  # two-phase: switch after epoch 1
            obj["switch_epoch"] = 1
            quick["training"]["epochs"] = 2
    ev = quick.setdefault("evaluation", {})
    ev.update({"fast": True, "n": 16, "masking": False})
    diags = ev.get("diagnostics") or data["evaluation"].get("diagnostics") or []
    small = []
    for d in diags:
        d = dict(d)
        d["n"] = 8
        if d.get("name") in ("layer_growth", "zero_gradient"):
            d["steps"] = 3
        if d.get("name") == "pgd_steps":
            d.update({"steps": [1, 2], "eot": 1})
        small.append(d)
    if small:
        ev["diagnostics"] = small
    # cheap stand-ins for the protocols (Square's fixed query budget dominates otherwise);
    # the names stay, so the report reads them as the recipe's paper / adaptive protocols
    ev["protocols"] = [_tiny(p) for p in data["evaluation"]["protocols"]]
    data["quick"] = quick
    return data


def _tiny(protocol: Any) -> dict[str, Any]:
    name = protocol if isinstance(protocol, str) else protocol["name"]
    if "adaptive" in name:
        attacks = [{"attack": "pgd", "label": "PGD-2+BPDA", "steps": 2, "bpda": True}]
        return {"name": name + "-lite", "attacks": attacks, "cascade": False}
    if isinstance(protocol, dict):
        attacks = [{**a, "steps": 2} if "steps" in a else a for a in protocol["attacks"]]
        return {"name": name, "attacks": attacks, "cascade": protocol.get("cascade", True)}
    attacks = [{"attack": "fgsm", "label": "FGSM"},
               {"attack": "pgd", "label": "PGD-20", "steps": 2},
               {"attack": "apgd", "label": "APGD-CE", "steps": 2},
               {"attack": "cw", "label": "CW-L2", "steps": 2, "binary_search_steps": 1,
                "own_threat": True}]  # fmt: skip
    return {"name": name + "-lite", "attacks": attacks, "cascade": False}


#: declared outputs a cut-down quick run cannot draw (its grid lacks the seed's setting)
NOT_IN_QUICK = {
    "ch4_placement": {"fig4_3", "fig4_7"},  # no mlp_equal in the quick grid
    "ch5_cifar_tables5_2_to_5_5": {"fig5_8", "fig5_9", "fig5_11", "fig5_12"},  # cifar10 only
    "fig5_19_eps_sweep": {"fig5_20", "fig5_21"},
    "ch5_edm_tables5_6_to_5_9": {"fig5_14", "fig5_15", "fig5_17", "fig5_18"},  # cifar10 only
}
FAST = ["table4_2", "ch4_placement", "fig5_5_lambda_sweep"]


def _run_and_report(name: str, tmp_path: Path) -> tuple[str, set[str]]:
    spec = parse_spec(_cut_down(name), source=f"{name}.yaml", base_dir=tmp_path)
    db = tmp_path / "r.db"
    summary = run_spec(spec, db, quick=True, progress=False, output_dir=tmp_path / "ck")
    assert not summary.failed, summary.lines()
    out = tmp_path / "rep"
    build_report(db, out)
    return (out / "report.md").read_text(), {p.name for p in out.iterdir()}


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=() if n in FAST else pytest.mark.heavy)
     for n in list_paper_files() if declared_outputs(n)],
)  # fmt: skip
def test_declared_outputs_written(name: str, tmp_path: Path) -> None:
    md, files = _run_and_report(name, tmp_path)
    declared = declared_outputs(name)
    assert declared
    skip = NOT_IN_QUICK.get(name, set())
    for d in declared:
        assert f"`{d.id}`" in md, f"{d.id} not listed in report.md"
        if d.id in skip:
            assert f"`{d.id}`; {', '.join(d.files)}): not drawn: no " in md
            continue
        missing = [f for f in d.files if f not in files]
        assert not missing, f"{name}: {d.id} not written ({missing})"
        if d.kind == "table":
            assert f"## {d.heading}" in md
        else:
            assert f"![{d.heading}]({d.id}.png)" in md


def test_lambda_plot_from_stored_records(tmp_path: Path) -> None:
    """The accuracy-vs-λ figure is drawn from what a store holds (cfg.objective.lam)."""
    db = tmp_path / "r.db"
    with ResultStore(db) as s:
        for lam, acc in ((0.0, 0.1), (0.1, 0.4), (100.0, 0.7)):
            cfg = {"dataset": {"name": "digits"}, "model": {"name": "mlp_general"},
                   "activation": {"name": "drelu", "init_max": 100.0, "insert": "before_output"},
                   "objective": {"name": "drelu_penalty", "lam": lam}, "seed": 0}  # fmt: skip
            rows = [MetricRow("seed", "clean", "accuracy", 0.9),
                    MetricRow("seed", "PGD-10", "accuracy", acc, 0.1, "Linf")]  # fmt: skip
            s.put_cell(cfg, rows)
        recs = s.records()
    assert {r["cfg.objective.lam"] for r in recs} == {0.0, 0.1, 100.0}
    html = (tmp_path / "rep").joinpath("report.html")
    build_report(db, tmp_path / "rep", formats=("html",))
    text = html.read_text()
    assert "accuracy vs objective.lam (paper protocol)" in text
    # the labels tell the three penalty weights apart
    assert "drelu_penalty(lam=100)" in text and "drelu_penalty(lam=0.1)" in text
