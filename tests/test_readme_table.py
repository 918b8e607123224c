"""The README's demo table is the demo's own output (tools/readme_table.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "readme_table", ROOT / "tools" / "readme_table.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_shows_the_stored_demo_result() -> None:
    tool = _tool()
    stored = json.loads(tool.STORED.read_text())
    assert tool.readme_block(tool.README.read_text()) == tool.render_table(stored), (
        "README.md's demo table differs from tools/demo_result.json: run "
        "python tools/readme_table.py (--run to rerun the demo)"
    )


def test_stored_demo_result_is_from_the_current_demo_spec() -> None:
    from robustact.demo import DEMO_SPEC, demo_spec_sha

    stored = json.loads(_tool().STORED.read_text())
    assert stored["spec_sha"] == demo_spec_sha(), (
        "robustact.demo.DEMO_SPEC changed since tools/demo_result.json was written: run "
        "python tools/readme_table.py --run"
    )
    assert stored["seed"] == 0 and stored["eps"] == DEMO_SPEC["evaluation"]["eps"][0]
    assert len(stored["models"]) == 6


def test_render_and_replace(tmp_path: Path) -> None:
    tool = _tool()
    row = {"model": "ReLU", "clean": 0.9681, "pgd10": 0.5682, "paper": 0.4429,
           "adaptive": 0.4290, "gap": 0.0139, "verdict": "no evidence"}  # fmt: skip
    result = {"models": [row]}
    table = tool.render_table(result)
    assert table.splitlines()[-1] == "| ReLU | 96.8 | 56.8 | 44.3 | 42.9 | 1.4 | no evidence |"
    text = f"a\n{tool.START}\nold\n{tool.END}\nb\n"
    assert tool.replace_table(text, table) == f"a\n{tool.START}\n{table}\n{tool.END}\nb\n"
    with pytest.raises(ValueError, match="markers"):
        tool.replace_table("no markers", table)


@pytest.mark.heavy
def test_demo_reproduces_the_stored_result(tmp_path: Path) -> None:
    """Minutes: the demo (seed 0) gives the numbers the README shows."""
    from robustact.demo import RESULT_FILE, run_demo

    run_demo(seed=0, progress=False, out_dir=tmp_path / "demo")
    fresh = json.loads((tmp_path / "demo" / RESULT_FILE).read_text())
    assert fresh == json.loads(_tool().STORED.read_text())
