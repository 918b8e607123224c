"""The command line: listing, the demo, and one-line errors with exit code 2."""

from __future__ import annotations

import pytest

from robustact.cli import main


def test_list_activations(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "activations"]) == 0
    out = capsys.readouterr().out.split()
    assert {"srelu", "drelu", "brelu", "relu"} <= set(out)


def test_unknown_subcommand_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2


@pytest.mark.slow
def test_demo_trains_and_reports_clean_accuracy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "ReLU" in out and "S-ReLU m=0.1" in out and "clean acc" in out
