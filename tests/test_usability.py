"""Shell conventions, words, notebook views, umask and the lean runtime install (issue 13)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from robustact.cli import build_parser, main
from robustact.cli._common import OUTPUT_PATHS
from robustact.cli._completion import completion_script
from robustact.evaluate._notebook import records_to_pandas, round_floats

REPO = Path(__file__).resolve().parents[1]


def _complete(script: Path, line: str) -> list[str]:
    """The completions bash offers for ``line`` (a trailing space: a new empty word)."""
    words = line.split() + ([""] if line.endswith(" ") else [])
    arr = " ".join(f"'{w}'" for w in words)
    cmd = (f"source {script}; COMP_WORDS=({arr}); COMP_CWORD={len(words) - 1}; "
           'COMPREPLY=(); _robustact; printf "%s\\n" "${COMPREPLY[@]}"')  # fmt: skip
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True)
    return [w for w in out.stdout.split("\n") if w]


def test_completion_scripts_complete_commands_options_and_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "robustact.bash"
    script.write_text(capsys.readouterr().out)
    assert _complete(script, "robustact ev") == ["evaluate"]
    assert _complete(script, "robustact evaluate --qu") == ["--quick"]
    assert _complete(script, "robustact evaluate --fa") == []  # hidden deprecated alias
    assert _complete(script, "robustact attack --batch") == ["--batch-size"]
    assert _complete(script, "robustact list ") == [
        "models", "datasets", "attacks", "activations", "objectives", "protocols", "recipes",
    ]  # fmt: skip
    assert _complete(script, "robustact report x.db --formats ") == ["md", "tex", "csv", "html"]
    assert "completion" in _complete(script, "robustact c")
    zsh = completion_script(build_parser(), "zsh")
    assert zsh.startswith("autoload -U +X bashcompinit && bashcompinit\n")
    with pytest.raises(SystemExit) as e:
        main(["completion", "fish"])
    assert e.value.code == 2


def test_one_name_one_default_per_concept() -> None:
    p = build_parser()
    common = ["--eps", "0.1", "--out", "o"]
    parsed = {c: p.parse_args([c, "ck", *common]) for c in ("attack", "diagnose")}
    parsed["evaluate"] = p.parse_args(["evaluate", "ck", "--eps", "0.1"])
    assert {a.n for a in parsed.values()} == {500}
    assert {a.batch_size for a in parsed.values()} == {500}
    for c in ("evaluate", "diagnose"):
        argv = [c, "ck", "--eps", "0.1", "--out", "o"][: 4 if c == "evaluate" else 6]
        assert p.parse_args([*argv, "--quick"]).fast is True
        assert p.parse_args([*argv, "--fast"]).fast is True  # deprecated alias still works
        assert p.parse_args(argv).fast is False
    assert p.parse_args(["run", "s.yaml", "--out", "ck"]).output_dir == "ck"
    assert p.parse_args(["run", "s.yaml", "--output-dir", "ck"]).output_dir == "ck"
    assert {kind for (_, dest), kind in OUTPUT_PATHS.items() if dest == "out"} == {"dir"}
    ev = p.parse_args(["evaluate", "ck", "--eps", "8/255", "--protocol", "paper", "adaptive"])
    assert ev.protocol == ["seed", "adaptive"]  # "paper" is the user-facing name of "seed"
    assert ev.eps == [pytest.approx(8 / 255)]
    assert p.parse_args(["report", "r.db", "--protocol", "paper"]).protocol == ["seed"]


def test_help_says_paper_protocol_not_seed_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("evaluate", "diagnose", "report", "demo", "attack"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        text = " ".join(capsys.readouterr().out.split()).lower()
        assert "seed protocol" not in text and "seeds' protocol" not in text, cmd
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "paper protocol" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_outputs_follow_the_umask(tmp_path: Path, mask: int) -> None:
    from robustact.cli._common import write_json
    from robustact.experiments.records import atomic_write_text
    from robustact.train.checkpoint import atomic_write

    old = os.umask(mask)
    try:
        files = [atomic_write_text(tmp_path / "a.txt", "x"), write_json(tmp_path / "b.json", {})]
        atomic_write(tmp_path / "c.bin", b"x")
        files.append(tmp_path / "c.bin")
    finally:
        os.umask(old)
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask, f
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "c.bin"]


def test_json_floats_lose_float32_noise() -> None:
    noisy = float(torch.tensor(0.92, dtype=torch.float32))
    assert noisy != 0.92
    out = round_floats({"acc": noisy, "ci": (noisy, 1.0), "n": 7, "ok": True, "x": float("nan")})
    assert out == {"acc": 0.92, "ci": [0.92, 1.0], "n": 7, "ok": True, "x": None}
    assert round_floats(8 / 255) == 8 / 255  # float64 values are written exactly
    assert round_floats(123 / 359) == 123 / 359
    assert round_floats({"a": 0.123456789}, digits=4) == {"a": 0.1235}


@pytest.fixture(scope="module")
def suite():  # type: ignore[no-untyped-def]
    import robustact as ra

    torch.manual_seed(0)
    x, y = ra.load_dataset("digits", split="test").tensors()
    model = ra.create_model("mlp_general", in_features=64, num_classes=10, hidden=[16])
    return ra.evaluate_suite(model, x[:16], y[:16], eps=[0.1], protocols=["seed"], fast=True,
                             masking=True, masking_n=16)  # fmt: skip


def test_result_objects_have_one_line_repr_and_html(suite) -> None:  # type: ignore[no-untyped-def]
    ev, rep = suite.evaluations[0], suite.masking[0.1]
    for obj, name in ((ev, "EvalResult"), (rep, "MaskingReport"), (suite, "SuiteResult")):
        text = repr(obj)
        assert text.startswith(f"<{name} ") and "\n" not in text and len(text) < 240, text
        html = obj._repr_html_()
        assert html.startswith("<div>") and "<table>" in html
    assert f"clean {100 * ev.clean_accuracy:.1f} %" in repr(ev)
    assert repr(ev).startswith("<EvalResult paper (quick) Linf eps=0.1 n=16")
    assert all(a.label in ev._repr_html_() for a in ev.attacks)
    assert rep.verdict.upper() in repr(rep) and all(c.name in rep._repr_html_() for c in rep.checks)
    assert "<script" not in rep._repr_html_()  # escaped


def test_records_and_to_pandas(suite) -> None:  # type: ignore[no-untyped-def]
    ev, rep = suite.evaluations[0], suite.masking[0.1]
    recs = ev.to_records()
    assert recs == [r.to_dict() for r in ev.rows()]
    clean = [r for r in recs if r["attack"] == "clean" and r["metric"] == "accuracy"]
    assert clean[0]["value"] == pytest.approx(ev.clean_accuracy)
    checks = rep.to_records()
    assert [c["check"] for c in checks] == [c.name for c in rep.checks]
    assert {c["verdict"] for c in checks} == {rep.verdict}
    assert len(suite.to_records()) == len(suite.rows)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(
            ImportError, match=r"EvalResult.to_pandas\(\) needs pandas.*pip install pandas"
        ):
            ev.to_pandas()
        with pytest.raises(ImportError, match=r"MaskingReport\.to_pandas"):
            rep.to_pandas()
    else:
        df = records_to_pandas(recs, "EvalResult")
        assert list(df.columns) == list(recs[0]) and len(df) == len(recs)


@pytest.mark.slow
def test_embedded_digits_equal_scikit_learns_copy() -> None:
    sk = pytest.importorskip("sklearn.datasets")
    from robustact.data.digits import DIGITS_FILE, _digits_arrays

    ref = sk.load_digits()
    x, y = _digits_arrays()
    np.testing.assert_array_equal(x, (ref.images / 16.0).astype(np.float32))
    np.testing.assert_array_equal(y, ref.target)
    assert DIGITS_FILE.stat().st_size < 60_000


def test_wilson_interval_matches_scipy() -> None:
    sps = pytest.importorskip("scipy.stats")
    from robustact.stats import wilson_interval

    for k, n, conf in ((0, 7, 0.95), (7, 7, 0.95), (123, 359, 0.95), (40, 41, 0.99), (5, 9, 0.8)):
        ci = sps.binomtest(k, n).proportion_ci(confidence_level=conf, method="wilson")
        assert wilson_interval(k, n, conf) == pytest.approx((ci.low, ci.high), abs=1e-12)


_NO_EXTRAS = """
import robustact as ra, robustact.demo, robustact.cli
x, y = ra.load_dataset("digits", split="test").tensors()
m = ra.create_model("mlp_general", in_features=64, num_classes=10, hidden=[8])
r = ra.evaluate(m, x[:16], y[:16], protocol="adaptive", eps=0.1, fast=True)
from robustact.report.labels import with_method_labels
from robustact.report.summary import protocol_summary
try:
    ra.evaluate_suite  # noqa
    from robustact.report import build_report
except ImportError as e:
    print("ERR", e)
import sys
print("LOADED", sorted({k.split(".")[0] for k in sys.modules} & {"scipy", "matplotlib", "sklearn"}))
print("ACC", r.robust_accuracy)
"""


@pytest.mark.slow
def test_runtime_works_without_the_report_extra(tmp_path: Path) -> None:
    """Evaluation, the demo module and the CLI import with torch, numpy, rich, PyYAML and
    safetensors only (a site folder without scipy, matplotlib and scikit-learn)."""
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    lean = tmp_path / "site"
    lean.mkdir()
    skip = ("scipy", "matplotlib", "sklearn", "scikit_learn", "mpl_toolkits", "pylab",
            "robustact", "__editable__")  # fmt: skip
    for entry in site.iterdir():
        if not entry.name.startswith(skip) and entry.suffix != ".pth":
            (lean / entry.name).symlink_to(entry)
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{lean}", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-S", "-c", _NO_EXTRAS], capture_output=True,
                         text=True, env=env, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LOADED []" in out.stdout
    assert "ERR robustact.report.build needs matplotlib, which is not installed: pip install " \
           "'robustact[report]'" in out.stdout  # fmt: skip
    assert 0.0 <= float(out.stdout.split("ACC ")[1]) <= 1.0


def test_report_refuses_an_unknown_protocol_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from robustact.experiments import ResultStore

    db = tmp_path / "r.db"
    with ResultStore(db) as store:
        rows = [("seed", "clean", "accuracy", 0.9), ("seed", "PGD", "accuracy", 0.5)]
        store.put_cell({"method": "m", "dataset": "d", "seed": 0}, rows)
    assert main(["report", str(db), "--protocol", "nonexist", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--protocol nonexist: not in the store" in err
    assert not (tmp_path / "o").exists()
    assert main(["report", str(db), "--protocol", "paper", "--out", str(tmp_path / "o"),
                 "--formats", "md"]) == 0  # fmt: skip
    assert "| m | 90.0 | 50.0 |" in (tmp_path / "o" / "report.md").read_text()
    assert json.loads(json.dumps({"ok": True})) == {"ok": True}
