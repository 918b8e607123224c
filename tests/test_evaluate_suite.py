"""evaluate_suite is the one orchestration: own-threat attacks run once, typed rows
round-trip through the store and the CSV, and a cell and `robustact evaluate` agree."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from robustact.attacks import FGSM
from robustact.evaluate import Protocol, ProtocolEntry
from robustact.evaluate.diagnose import DIAGNOSTICS
from robustact.evaluate.suite import evaluate_suite
from robustact.experiments._specextra import DIAGNOSTICS as SPEC_DIAGNOSTICS
from robustact.experiments.records import MetricRow, metric_rows
from robustact.experiments.store import ResultStore


def _counting_protocol(calls: list[float]) -> Protocol:
    """FGSM in the protocol's threat model and an own-threat L2 FGSM that counts its builds."""

    def own(eps: float, norm: str = "L2") -> FGSM:
        calls.append(eps)
        return FGSM(eps=eps, norm=norm)

    entries = (
        ProtocolEntry("FGSM", "fgsm"),
        ProtocolEntry("FGSM-L2", own, {"eps": 1.5, "norm": "L2"}, own_threat=True),
    )
    return Protocol("mini", entries, eps=0.05, cascade=False)


def test_own_threat_attack_runs_once_over_several_eps(digits_mlp, digits) -> None:
    _, _, x, y = digits
    calls: list[float] = []
    suite = evaluate_suite(digits_mlp, x[:50], y[:50], protocols=[_counting_protocol(calls)],
                           eps=[0.05, 0.1, 0.2], seed=0)  # fmt: skip
    assert calls == [1.5]  # built once (the first eps), not at 0.1 and 0.2
    acc = [(r.attack, r.eps, r.norm) for r in suite.rows if r.metric == "accuracy"]
    assert acc.count(("FGSM-L2", 1.5, "L2")) == 1  # its own threat model, one row
    assert [a for a in acc if a[0] == "FGSM"] == [("FGSM", e, "Linf") for e in (0.05, 0.1, 0.2)]
    assert acc.count(("clean", None, None)) == 1  # clean is eps-independent: stored once
    worst = [r.value for r in suite.rows if r.attack == "worst" and r.metric == "accuracy"]
    assert worst == sorted(worst, reverse=True) and worst[0] > worst[-1]  # falls with eps
    metric_rows(suite.rows)  # no duplicate keys


def test_typed_rows_round_trip_through_store_and_csv(digits_mlp, digits, tmp_path: Path) -> None:
    _, _, x, y = digits
    suite = evaluate_suite(
        digits_mlp, x[:40], y[:40], protocols=[{"name": "mini", "attacks": [{"attack": "fgsm"}]}],
        eps=[0.1], fast=True, seed=0, masking=True, masking_n=30,
        diagnostics=[{"name": "negative_unit_ratio", "n": 20}, "input_gradient_norm"],
    )  # fmt: skip
    kinds = {r.kind for r in suite.rows}
    assert kinds == {"result", "masking", "diagnostic"}
    assert any(r.item == "zero_gradient" and r.metric == "flagged" for r in suite.rows)
    assert {r.item for r in suite.rows if r.attack == "negative_unit_ratio"} == {"2"}
    with ResultStore(tmp_path / "r.sqlite") as store:
        cid = store.put_cell({"m": "relu"}, suite.rows, seed=0)
        assert store.metrics(cid) == suite.rows  # every field, in order
        store.to_csv(tmp_path / "r.csv")
    back = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert len(back) == len(suite.rows)

    def parse(d: dict[str, str]) -> MetricRow:
        none = {k: (v if v != "" else None) for k, v in d.items()}
        return MetricRow(
            str(none["protocol"]), str(none["attack"]), str(none["metric"]), float(d["value"]),
            None if none["eps"] is None else float(d["eps"]), none["norm"], str(none["kind"]),
            none["item"], None if none["n"] is None else int(d["n"]),
        )  # fmt: skip

    assert [parse(d) for d in back] == suite.rows
    assert json.loads(json.dumps(suite.to_dict()))["rows"][0]["kind"] == "result"


def test_schema_1_store_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with ResultStore(path) as store:
        store.put_cell({"m": 1}, [MetricRow("seed", "clean", "accuracy", 0.9)])
    con = sqlite3.connect(path)  # rewrite it as schema 1 had it
    con.executescript(
        "DROP INDEX metrics_key2; ALTER TABLE metrics DROP COLUMN kind; "
        "ALTER TABLE metrics DROP COLUMN item; ALTER TABLE metrics DROP COLUMN n; "
        "INSERT INTO metrics VALUES ((SELECT cell_id FROM cells), 'masking', 'checks', "
        "'verdict', 2.0, 0.1, 'Linf'); UPDATE meta SET value = '1';"
    )
    con.close()
    with ResultStore(path) as store:
        (cid,) = [c.cell_id for c in store.cells()]
        assert [(r.kind, r.protocol) for r in store.metrics(cid)] == [
            ("result", "seed"), ("masking", "masking")
        ]  # fmt: skip
        store.put_cell({"m": 1}, [MetricRow("seed", "clean", "accuracy", 0.8)])
        assert [r.value for r in store.metrics(cid)] == [0.8]


def test_diagnostic_defaults_match_the_spec_schema() -> None:
    for name in DIAGNOSTICS:
        spec = {k: default for k, (_, default) in SPEC_DIAGNOSTICS[name].items()}
        assert dict(DIAGNOSTICS.get(name).defaults) == spec, name


def test_cell_rows_and_cli_evaluate_json_agree(tmp_path: Path) -> None:
    from robustact.cli import main
    from robustact.experiments.cell import run_cell
    from robustact.experiments.spec import parse_spec

    doc: dict[str, Any] = {
        "name": "agree",
        "grid": {"datasets": ["digits"], "models": [{"name": "mlp_general", "hidden": [16]}],
                 "activations": ["relu"], "seeds": [3]},
        "training": {"epochs": 1, "batch_size": 64, "lr": 0.01},
        "evaluation": {"protocols": ["seed"], "eps": [0.1], "n": 40, "fast": True,
                       "masking": False},
    }  # fmt: skip
    (cell,) = parse_spec(doc).cells()
    out = run_cell(cell.config, output_dir=tmp_path)
    assert out.checkpoint is not None
    js = tmp_path / "e.json"
    argv = ["evaluate", out.checkpoint, "--protocol", "seed", "--eps", "0.1", "--n", "40",
            "--fast", "--seed", "3", "--batch-size", str(cell.config["evaluation"]["batch_size"]),
            "--brief", "--json", str(js)]  # fmt: skip
    assert main(argv) == 0
    cli = {(r["protocol"], r["attack"], r["item"], r["metric"], r["eps"]): r["value"]
           for r in json.loads(js.read_text())["rows"] if r["metric"] != "seconds"}  # fmt: skip
    stored = {(r.protocol, r.attack, r.item, r.metric, r.eps): r.value
              for r in out.metrics if r.kind == "result" and r.metric != "seconds"}  # fmt: skip
    # the CLI's JSON writes float32 values with float32's shortest digits (no noise)
    assert cli.keys() == stored.keys() and len(cli) > 20
    assert all(cli[k] == pytest.approx(v, rel=1e-6, abs=1e-7) for k, v in stored.items())
    assert stored[("seed", "clean", None, "accuracy", None)] > 0.3


def test_suite_rejects_bad_arguments(digits_mlp, digits) -> None:
    _, _, x, y = digits
    with pytest.raises(ValueError, match="at least one eps"):
        evaluate_suite(digits_mlp, x[:4], y[:4], eps=[])
    with pytest.raises(ValueError, match="masking_n"):
        evaluate_suite(digits_mlp, x[:4], y[:4], eps=[0.1], masking_n=0)
    with pytest.raises(ValueError, match="unknown options"):
        evaluate_suite(digits_mlp, x[:4], y[:4], eps=[0.1], protocols=(),
                       diagnostics=[{"name": "zero_gradient", "stepz": 3}])  # fmt: skip
