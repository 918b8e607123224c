"""run_spec on a local Ray instance (two CPUs): same rows as the local backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from robustact.experiments.runner import run_spec
from robustact.experiments.spec import parse_spec
from robustact.experiments.store import ResultStore

ray = pytest.importorskip("ray", reason='Ray is not installed (pip install "robustact[ray]")')

pytestmark = pytest.mark.slow


@pytest.fixture
def local_ray() -> Iterator[Any]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def spec_doc() -> dict[str, Any]:
    return {
        "name": "tiny-ray",
        "grid": {
            "datasets": ["digits", "mnist"],  # mnist is absent from data_root: that cell fails
            "models": [{"name": "mlp_general", "hidden": [16]}],
            "activations": ["relu", {"name": "srelu", "max_value": 0.5, "where": 0}],
            "seeds": [0],
        },
        "training": {"epochs": 1, "batch_size": 64, "lr": 0.01},
        "evaluation": {
            "protocols": [{"name": "mini", "attacks": [{"attack": "fgsm"}]}],
            "eps": [0.1],
            "n": 60,
            "masking": False,
        },
    }


def test_ray_backend_runs_cells_and_records_failures(local_ray: Any, tmp_path: Path) -> None:
    spec = parse_spec(spec_doc())
    db = tmp_path / "ray.sqlite"
    out = run_spec(
        spec, db, backend="ray", workers=2, progress=False, data_root=tmp_path / "nodata"
    )
    assert local_ray.is_initialized()  # run_spec leaves a cluster it did not start running
    assert out.done == 2 and len(out.failed) == 2
    assert all("DatasetError" in (r.error or "") for r in out.failed)
    local = tmp_path / "local.sqlite"
    run_spec(spec, local, progress=False, data_root=tmp_path / "nodata")
    with ResultStore(db) as a, ResultStore(local) as b:
        assert {c.cell_id for c in a.cells()} == {c.cell_id for c in b.cells()}
        for c in a.cells():
            ra = {
                r.key(): r.value
                for r in a.metrics(c.cell_id)
                if r.protocol == "mini" and r.metric != "seconds"
            }
            rb = {
                r.key(): r.value
                for r in b.metrics(c.cell_id)
                if r.protocol == "mini" and r.metric != "seconds"
            }
            assert ra.keys() == rb.keys() and ra == pytest.approx(rb, abs=1e-6)
    again = run_spec(spec, db, backend="ray", progress=False, data_root=tmp_path / "nodata")
    assert again.already_done == 2 and again.done == 0
