"""Every recipe's --quick run shows its paper's direction and robustact's correction
(``tests/quick_effects.py``). Minutes each: marked heavy (``make test-all``); the cut-down
table4_2 check runs in ``make test`` (tests/test_recipes.py, slow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from robustact.experiments.store import ResultStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quick_effects import EFFECTS, check

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.heavy
@pytest.mark.parametrize("recipe", sorted(EFFECTS))
def test_quick_recipe_shows_its_effect(recipe: str, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "robustact", "run", recipe, "--quick", "--store", str(db),
           "--output-dir", str(tmp_path / "ck"), "--no-progress"]  # fmt: skip
    env = {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with ResultStore(db) as store:
        eff = check(recipe, store.records())
    assert eff.shows, eff.summary
