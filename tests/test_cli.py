"""The command line: --help everywhere, listing, train -> attack -> evaluate -> diagnose on
digits, run -> report on a tiny spec, and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from robustact.cli import main
from robustact.cli._common import parse_kv
from robustact.cli._run import FORMATS, find_recipes, recipe_description

SUBCOMMANDS = ["demo", "train", "attack", "evaluate", "diagnose", "run", "report", "list"]


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The stderr of a failed command: exactly one line, no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --------------------------------------------------------------------------- help, list


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_help_of_every_subcommand(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert f"robustact {cmd}" in capsys.readouterr().out


def test_top_level_help_names_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in SUBCOMMANDS)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("activations", {"srelu", "drelu", "brelu", "relu"}),
        ("models", {"mlp_general", "resnet18", "lenet5"}),
        ("datasets", {"digits", "mnist", "cifar10"}),
        ("attacks", {"fgsm", "pgd", "apgd", "cw", "square"}),
        ("objectives", {"natural", "pgd_at", "trades"}),
        ("protocols", {"seed", "adaptive", "autoattack"}),
    ],
)
def test_list(kind: str, expected: set[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", kind]) == 0
    assert expected <= set(capsys.readouterr().out.split())


def test_list_recipes_prints_name_and_description(capsys: pytest.CaptureFixture[str]) -> None:
    recipes = find_recipes()
    assert main(["list", "recipes"]) == 0
    out = capsys.readouterr().out.splitlines()
    if not recipes:
        pytest.skip("no recipes/ folder beside the package")
    assert [line.split()[0] for line in out] == list(recipes)
    for line, path in zip(out, recipes.values(), strict=True):
        desc = recipe_description(path)
        assert desc and line.endswith(desc)


def test_recipe_description_is_the_first_comment(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("#\n# My recipe: what it does\n# more\nname: r\n")
    assert recipe_description(f) == "My recipe: what it does"
    f.write_text("name: r\ndescription: >\n  from the\n  key\n")
    assert recipe_description(f) == "from the key"


def test_report_formats_match_the_report_builder() -> None:
    from robustact.report.build import FORMATS as BUILD_FORMATS

    assert tuple(BUILD_FORMATS) == FORMATS


def test_parse_kv_reads_yaml_values() -> None:
    got = parse_kv(["hidden=[32, 16]", "bias=true", "eps=0.3", "loss=margin", "x="], "--m")
    assert got == {"hidden": [32, 16], "bias": True, "eps": 0.3, "loss": "margin", "x": ""}


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_train_attack_evaluate_diagnose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ck = tmp_path / "ck"
    argv = ["train", "--model", "mlp_general", "--model-arg", "hidden=[32,16]",
            "--activation", "srelu", "--act-arg", "max_value=1.0", "--where", "act2",
            "--epochs", "2", "--lr", "0.01", "--quick", "--no-progress",
            "--out", str(ck)]  # fmt: skip
    assert main(argv) == 0
    assert "test accuracy" in capsys.readouterr().out
    side = json.loads((ck / "model.json").read_text())
    assert side["extra"]["cell"]["activation"] == {"name": "srelu", "max_value": 1.0,
                                                   "where": "act2"}  # fmt: skip
    assert side["config"]["epochs"] == 2 and side["extra"]["quick"] is True
    assert side["extra"]["test_accuracy"] > 0.3  # two epochs on digits learn something
    # the checkpoint rebuilds the surgery: act2 is an S-ReLU, act1 stays a ReLU
    from robustact.cli._common import load_model

    model, _, _ = load_model(str(ck), "cpu")
    assert type(model.act2).__name__ == "SReLU" and type(model.act1).__name__ == "ReLU"

    # a second fresh run into the same folder is refused (it would mix two runs)
    assert main(argv) == 2
    assert "--resume" in _error_line(capsys)
    # --resume continues the saved run (a longer run from the same options)
    more = [*argv[:-8], "--epochs", "3", "--lr", "0.01", "--no-progress", "--out", str(ck)]
    assert main([*more, "--resume"]) == 0
    capsys.readouterr()
    side = json.loads((ck / "model.json").read_text())
    assert [h["epoch"] for h in side["history"]] == [0, 1, 2]
    # a training-state file is not a model checkpoint
    state = sorted((ck / "train").glob("epoch_*.safetensors"))
    state = [p for p in state if not p.name.endswith(".optim.safetensors")]
    assert main(["attack", str(state[-1]), "--eps", "0.1"]) == 2
    assert "training state" in _error_line(capsys)

    adv = tmp_path / "adv" / "adversarial.safetensors"  # --out is a folder in every command
    aj = tmp_path / "attack.json"
    assert main(["attack", str(ck), "--eps", "0.1", "--attack-arg", "steps=10", "--n", "120",
                 "--out", str(adv.parent), "--json", str(aj)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "clean accuracy" in out and "adversarial accuracy" in out
    res = json.loads(aj.read_text())
    assert res["n"] == 120 and res["attack"]["name"] == "pgd"
    assert 0.3 < res["clean_accuracy"] <= 1.0
    assert res["adversarial_accuracy"] < res["clean_accuracy"]  # eps 0.1 hurts an MLP
    assert res["mean_linf"] <= 0.1 + 1e-6
    from safetensors.torch import load_file

    t = load_file(adv)
    assert t["x_adv"].shape == (120, 1, 8, 8) and t["y"].shape == (120,)
    x_test = __import__("robustact.data", fromlist=["x"]).load_dataset("digits", split="test")
    delta = (t["x_adv"] - x_test.tensors()[0][:120]).abs().amax()
    assert float(delta) <= 0.1 + 1e-6
    assert float((t["pred_adv"] == t["y"]).float().mean()) <= res["clean_accuracy"] + 1e-9

    ej = tmp_path / "eval.json"
    assert main(["evaluate", str(ck), "--eps", "0.1", "--n", "60", "--fast", "--masking",
                 "--masking-n", "40", "--json", str(ej)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "paper" in out and "adaptive" in out and "masking verdict" in out
    ev = json.loads(ej.read_text())
    seed, adaptive = ev["evaluations"]["seed@0.1"], ev["evaluations"]["adaptive@0.1"]
    assert seed["clean_accuracy"] == adaptive["clean_accuracy"] > 0.3
    assert adaptive["robust_accuracy"] <= adaptive["clean_accuracy"]
    assert seed["robust_accuracy"] <= seed["clean_accuracy"]
    assert ev["masking"]["0.1"]["verdict"] in ("no evidence", "suspect", "masked")
    worst = {
        r["protocol"]: r["value"]
        for r in ev["rows"]
        if r["kind"] == "result" and r["attack"] == "worst" and r["metric"] == "accuracy"
    }
    assert worst == {"seed": seed["robust_accuracy"], "adaptive": adaptive["robust_accuracy"]}

    diag = tmp_path / "diag"
    assert main(["diagnose", str(ck), "--eps", "0.1", "--n", "40", "--fast",
                 "--out", str(diag)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "masking verdict" in out and "zero-gradient distance" in out
    d = json.loads((diag / "diagnose.json").read_text())
    assert {c["name"] for c in d["masking"]["checks"]} >= {"zero_gradient", "bpda_beats_plain"}
    assert all(c["citation"] for c in d["masking"]["checks"])
    layers = d["diagnostics"]["layer_growth"]["layer_growth_adaptive@0.1"]
    assert [x["name"] for x in layers] == ["input", "act1", "act2"]
    assert 0 < layers[0]["linf"] <= 0.1 + 1e-6
    assert d["caps"][0]["name"] == "act2" and d["caps"][0]["cap_max"] == 1.0
    negative = d["diagnostics"]["negative_unit_ratio"]
    assert [r["name"] for r in negative] == ["act1", "act2"]
    assert all(r["post"] == 0.0 for r in negative)  # (S-)ReLU outputs >= 0
    assert d["diagnostics"]["sensitivity_map"]["sensitivity_map+bpda"]["score_mean"] >= 0.0
    # typed rows: the masking verdict and the diagnostics, each with its kind
    kinds = {(r["kind"], r["attack"]) for r in d["rows"]}
    assert ("masking", "verdict") in kinds and ("diagnostic", "layer_growth_adaptive") in kinds
    assert all(r["seed"] == 0 and r["data"] for r in d["rows"])
    for name in d["plots"].values():
        assert (diag / name).read_bytes()[:4] == b"\x89PNG"
    assert "layer_growth.png" in d["plots"].values()


def _tiny_spec(tmp_path: Path) -> Path:
    spec = {
        "name": "tiny",
        "grid": {
            "datasets": ["digits"],
            "models": [{"name": "mlp_general", "hidden": [16]}],
            "activations": ["relu", {"name": "srelu", "max_value": 0.5, "where": 0}],
            "seeds": [0],
        },
        "training": {"epochs": 1, "batch_size": 64, "lr": 0.01},
        "evaluation": {
            "protocols": [{"name": "mini", "attacks": [{"attack": "fgsm"}]}],
            "eps": [0.1], "n": 60, "fast": True, "masking": False,
        },
    }  # fmt: skip
    path = tmp_path / "tiny.yaml"
    path.write_text("# tiny spec for the CLI test\n" + yaml.safe_dump(spec))
    return path


def test_run_then_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _tiny_spec(tmp_path)
    db = tmp_path / "res.db"
    assert main(["run", str(spec), "--store", str(db), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 cells" in out and "srelu(max_value=0.5)@0" in out
    assert not db.exists()  # a dry run writes nothing
    argv = ["run", str(spec), "--store", str(db), "--no-progress",
            "--output-dir", str(tmp_path / "ck")]  # fmt: skip
    assert main(argv) == 0
    assert "2 done now, 0 failed" in capsys.readouterr().out
    assert main(argv) == 0  # re-running skips the finished cells
    assert "2 already done, 0 done now" in capsys.readouterr().out

    rep = tmp_path / "rep"
    assert main(["report", str(db), "--out", str(rep)]) == 0
    out = capsys.readouterr().out
    assert "config keys that vary between cells" in out
    for f in ("report.md", "report.tex", "report.html", "records.csv", "summary.csv"):
        assert (rep / f).stat().st_size > 0, f
    md = (rep / "report.md").read_text()
    assert "relu" in md and "mini protocol" in md
    assert "srelu(max\\_value=0.5, where=0)" in md  # one column per varying config
    assert main(["report", str(db), "--out", str(tmp_path / "r2"), "--formats", "csv"]) == 0
    assert sorted(p.name for p in (tmp_path / "r2").iterdir()) == [
        "records.csv", "summary.csv", "table_clean.csv", "table_mini.csv",
    ]  # fmt: skip


# --------------------------------------------------------------------------- errors


def test_unknown_subcommand_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2
    assert "invalid choice" in _error_line(capsys)


def test_bad_option_value_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["train", "--out", "x", "--epochs", "many"])
    assert e.value.code == 2
    line = _error_line(capsys)
    assert "--epochs" in line and "robustact train --help" in line


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "--out", "{tmp}/o", "--model", "mlpx"], "--model: unknown model"),
        (["train", "--out", "{tmp}/o", "--dataset", "digitz"], "--dataset: unknown dataset"),
        (["train", "--out", "{tmp}/o", "--activation", "srelux"], "unknown activation"),
        (["train", "--out", "{tmp}/o", "--objective", "pgd_att"], "unknown objective"),
        (["train", "--out", "{tmp}/o", "--model-arg", "hidden"], "expected KEY=VALUE"),
        (["train", "--out", "{tmp}/o", "--lr", "-1"], "--lr"),
        (["train", "--out", "{tmp}/o", "--width", "8"], "--width goes with --insert"),
        (["train", "--out", "{tmp}/o", "--device", "gpu7"], "not a torch device"),
        (["attack", "{tmp}/missing", "--eps", "0.1"], "no checkpoint at"),
        (["evaluate", "{tmp}/missing", "--eps", "0.1"], "no checkpoint at"),
        (["diagnose", "{tmp}/missing", "--eps", "0.1", "--out", "{tmp}/d"], "no checkpoint"),
        (["report", "{tmp}/missing.db"], "no results store"),
        (["attack", "{tmp}/missing", "--eps", "0.1", "--norm", "L3"], "no checkpoint"),
        (["run", "no_such_recipe"], "no recipe of that name"),
        (["evaluate", "{tmp}/missing", "--eps", "0.1", "--protocol", "sead"], "unknown protocol"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(
    argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(args) == 2
    line = _error_line(capsys)
    assert line.startswith(f"robustact {args[0]}: error:") and needle in line, line


def test_report_on_a_file_that_is_not_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite\n" * 100)
    assert main(["report", str(junk)]) == 2
    assert "is not a results store" in _error_line(capsys)
    assert junk.read_text() == "not sqlite\n" * 100  # left as it was


def test_train_reports_every_problem_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--out", str(tmp_path / "o"), "--model", "mlpx", "--act-arg", "max_valu=1",
            "--activation", "srelu", "--epochs", "0"]  # fmt: skip
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "--model: unknown model" in line and "--epochs" in line and "max_valu" in line


def test_wrong_checkpoint_type_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from robustact.models import create_model
    from robustact.train import save_checkpoint

    # a sidecar that is not a robustact checkpoint
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    (tmp_path / "bad.json").write_text('{"format": "something-else"}')
    assert main(["attack", str(tmp_path / "bad.safetensors"), "--eps", "0.1"]) == 2
    assert "not a robustact checkpoint" in _error_line(capsys)
    # a truncated weights file under a valid sidecar
    model = create_model("mlp_general", hidden=[8], in_channels=1, num_classes=10)
    p = save_checkpoint(tmp_path / "m.safetensors", model)
    p.write_bytes(p.read_bytes()[:-10])
    assert main(["evaluate", str(p), "--eps", "0.1", "--dataset", "digits"]) == 2
    assert "truncated" in _error_line(capsys)


def test_plain_checkpoint_needs_a_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from robustact.models import create_model
    from robustact.train import save_checkpoint

    model = create_model("mlp_general", hidden=[8], input_size=8)
    p = save_checkpoint(tmp_path / "m.safetensors", model)
    assert main(["attack", str(p), "--eps", "0.1", "--n", "20"]) == 2
    assert "pass --dataset" in _error_line(capsys)
    assert main(["attack", str(p), "--eps", "0.1", "--n", "20", "--dataset", "digits",
                 "--attack", "pgdd"]) == 2  # fmt: skip
    assert "unknown attack" in _error_line(capsys)
    assert main(["attack", str(p), "--eps", "0.1", "--n", "20", "--dataset", "digits",
                 "--attack", "cw", "--eot", "4"]) == 2  # fmt: skip
    assert "no eot parameter" in _error_line(capsys)
    assert main(["attack", str(p), "--eps", "0.1", "--n", "20", "--dataset", "digits",
                 "--attack-arg", "eps=0.3"]) == 2  # fmt: skip
    assert "use --eps" in _error_line(capsys)
    assert main(["attack", str(p), "--eps", "0.1", "--n", "20", "--dataset", "digits"]) == 0
    assert "adversarial accuracy" in capsys.readouterr().out
    # images of another size than the model's: one line naming the shapes
    assert main(["attack", str(p), "--eps", "0.1", "--n", "20", "--dataset", "digits",
                 "--dataset-arg", "size=28"]) == 2  # fmt: skip
    line = _error_line(capsys)
    assert "64 values" in line and "28, 28" in line, line


def test_invalid_spec_prints_every_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "bad", "grid": {"datasets": ["digitz"],
                   "models": ["mlpx"]}, "evaluation": {"eps": [0.1]}}))  # fmt: skip
    assert main(["run", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("robustact run: error:") for line in lines)
    assert "digitz" in err and "mlpx" in err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no results store"):
        main(["--debug", "report", str(tmp_path / "none.db")])


def test_help_does_not_import_torch() -> None:
    # --help must stay instant: the commands import torch and friends only when they run
    import subprocess
    import sys

    code = "import sys; from robustact.cli import build_parser; build_parser(); "
    code += "print(sorted(m for m in ('torch', 'matplotlib', 'yaml') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_demo_passes_its_options_to_run_demo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # the demo itself is tested in test_demo.py; here only the command line around it
    import robustact.demo

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(robustact.demo, "run_demo", lambda **kw: calls.append(kw))
    assert main(["demo", "--no-progress", "--seed", "3", "--device", "auto"]) == 0
    want_dev = "cuda" if torch.cuda.is_available() else "cpu"
    assert calls == [{"seed": 3, "device": want_dev, "progress": False}]
    assert main(["demo", "--out", str(tmp_path), "--workers", "1"]) == 0
    assert calls[1] == {"seed": 0, "device": "cpu", "progress": True, "out_dir": str(tmp_path),
                        "workers": 1}  # fmt: skip
