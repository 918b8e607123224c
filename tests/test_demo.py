"""The main job: six digits models, both protocols, verdicts, an HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustact.demo import DEMO_SPEC, run_demo
from robustact.experiments import ResultStore, parse_spec


def test_demo_spec_is_a_valid_six_cell_grid() -> None:
    cells = parse_spec(DEMO_SPEC).cells()
    assert len(cells) == 6
    labels = " ".join(c.label for c in cells)
    for part in ("relu/natural", "pgd_at", "max_value=0.1", "max_value=0.01", "drelu", "brelu"):
        assert part in labels


@pytest.mark.slow
def test_demo_runs_end_to_end_and_replaces_its_output(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    first = run_demo(progress=False, out_dir=out, workers=1, epochs=2, n=40)
    assert len(first.rows) == 6
    assert all(r.clean is not None and r.robust_seed is not None for r in first.rows)
    assert all(r.robust_adaptive is not None and r.verdict for r in first.rows)
    for r in first.rows:
        assert r.robust_adaptive is not None and r.clean is not None
        assert r.robust_adaptive <= r.clean
    html = first.report["html"].read_text()
    assert "seed" in html and "adaptive" in html and "data:image/png;base64," in html
    assert (out / "demo.yaml").is_file() and (out / "results.sqlite").is_file()
    assert {m["model"] for m in json.loads((out / "demo-result.json").read_text())["models"]} == {
        "ReLU", "ReLU + PGD-AT", "S-ReLU m=0.1", "S-ReLU m=0.01", "D-ReLU (lambda=0.01)", "BReLU"
    }  # fmt: skip
    with ResultStore(out / "results.sqlite") as store:
        assert len(store.cells(status="done")) == 6
    # a second run replaces the first completely; nothing half-written is left around
    run_demo(progress=False, out_dir=out, workers=1, epochs=1, n=20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
