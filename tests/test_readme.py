"""The README's notebook example runs as written and shows the effect it describes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_notebook_example_runs(tmp_path: Path) -> None:
    text = README.read_text()
    section = text.split("## In a notebook", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    script = tmp_path / "example.py"
    script.write_text(code)  # the documented example, run as a user runs it
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, check=True
    )
    swapped, plain, honest, verdict = done.stdout.splitlines()[0].rsplit(" ", 3)
    assert swapped == "['act2']"
    assert verdict == "masked"
    assert float(plain) > float(honest)  # the paper's protocol over-reports robustness
