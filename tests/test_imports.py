"""Import order never matters: every registry is complete whichever module comes first."""

from __future__ import annotations

import subprocess
import sys

import pytest

EXPECTED = {"natural", "trades", "hybrid", "gradient_penalty", "lipschitz_penalty"}


@pytest.mark.parametrize(
    "first", ["robustact.train", "robustact.defenses", "robustact.experiments", "robustact.cli"]
)
def test_objectives_registered_whatever_is_imported_first(first: str) -> None:
    code = (
        f"import {first}\n"
        "from robustact.train import list_objectives\n"
        "print(','.join(list_objectives()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert set(out.strip().split(",")) >= EXPECTED
