"""One progress display per run: nested tasks share it; quiet off a terminal."""

from __future__ import annotations

import pytest

from robustact import progress
from robustact.progress import progress_enabled, task


def test_quiet_when_off_counts_still_kept(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_enabled(False), task("work", total=3) as t:
        for _ in range(3):
            t.advance()
    assert t.completed == 3
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_nested_tasks_share_one_display(monkeypatch: pytest.MonkeyPatch) -> None:
    displays: list[object] = []
    real = progress._new_display

    def spy() -> object:
        d = real()
        displays.append(d)
        return d

    monkeypatch.setattr(progress, "_new_display", spy)
    with progress_enabled(True), task("run", total=2) as outer:
        for _ in range(2):
            with task("batches", total=4, transient=True) as inner:
                for _ in range(4):
                    inner.advance(loss=0.5)
            outer.advance()
        ids = list(displays[0].task_ids)  # type: ignore[attr-defined]
    assert len(displays) == 1
    assert len(ids) == 1  # the transient inner rows were removed
    assert outer.completed == 2


def test_env_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTACT_PROGRESS", "0")
    assert progress._wanted() is False
    monkeypatch.setenv("ROBUSTACT_PROGRESS", "1")
    assert progress._wanted() is True
    with progress_enabled(False):
        assert progress._wanted() is False


def test_grow_extends_the_total() -> None:
    with progress_enabled(False), task("escalation", total=2) as t:
        t.grow(3)
    assert t.total == 5
