"""Bring your own model: factories by name or file, safe weight formats, clear refusals."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from robustact.loading import ModelLoadError, functional_activations, load_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mynet.py"
SPEC = f"{EXAMPLE}:MyNet"


@pytest.fixture
def net() -> nn.Module:
    torch.manual_seed(0)
    return load_model(SPEC)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_state_dict_pt_and_safetensors_reload_bitwise(
    net: nn.Module, x: torch.Tensor, tmp_path: Path
) -> None:
    torch.save(net.state_dict(), tmp_path / "w.pt")
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    ref = net(x)
    for name in ("w.pt", "w.safetensors"):
        other = load_model(SPEC, tmp_path / name)
        assert not other.training
        assert torch.equal(other(x), ref), name


def test_wrapped_and_ddp_prefixed_state_dicts(
    net: nn.Module, x: torch.Tensor, tmp_path: Path
) -> None:
    sd = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": sd}, tmp_path / "lightning.ckpt")
    assert torch.equal(load_model(SPEC, tmp_path / "lightning.ckpt")(x), net(x))


def test_torchscript_is_a_whole_model(net: nn.Module, x: torch.Tensor, tmp_path: Path) -> None:
    torch.jit.script(net).save(str(tmp_path / "ts.pt"))
    assert torch.equal(load_model(None, tmp_path / "ts.pt")(x), net(x))
    with pytest.raises(ModelLoadError, match="TorchScript model"):
        load_model(SPEC, tmp_path / "ts.pt")


class _Payload:
    """Unpickling this writes a file: the loader must never run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.marker), "pwned"))


def test_pickled_objects_are_refused_without_running(tmp_path: Path, net: nn.Module) -> None:
    marker = tmp_path / "ran"
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"state_dict": _Payload(marker)}, f)
    with pytest.raises(ModelLoadError, match=r"pickled Python object.*state_dict"):
        load_model(SPEC, tmp_path / "evil.pt")
    assert not marker.exists()
    torch.save(net, tmp_path / "whole.pt")
    with pytest.raises(ModelLoadError, match="would run code"):
        load_model(SPEC, tmp_path / "whole.pt")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("MyNet", "expected MODULE:NAME"),
        (f"{EXAMPLE}:Nope", "has no 'Nope'"),
        ("no_such_pkg.nets:Net", "cannot import no_such_pkg.nets"),
        ("missing/file.py:Net", "no file missing/file.py"),
        ("robustact.loading:ModelLoadError", "not a torch.nn.Module"),
    ],
)
def test_bad_model_specs_are_one_line(spec: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message) as info:
        load_model(spec)
    assert "\n" not in str(info.value)


def test_weights_that_do_not_fit_name_the_keys(net: nn.Module, tmp_path: Path) -> None:
    torch.save(net.state_dict(), tmp_path / "w.pt")
    with pytest.raises(ModelLoadError, match=r"does not fit the model: .*of another shape"):
        load_model(SPEC, tmp_path / "w.pt", model_args={"channels": 4})
    with pytest.raises(ModelLoadError, match="missing"):
        load_model(f"{EXAMPLE}:FunctionalNet", tmp_path / "w.pt")


def test_factory_arguments_and_bad_arguments(tmp_path: Path) -> None:
    small = load_model(SPEC, model_args={"channels": 2, "num_classes": 3})
    assert small(torch.rand(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(ModelLoadError, match="--model-arg"):
        load_model(SPEC, model_args={"widht": 3})


def test_functional_activations_are_found_outside_modules(x: torch.Tensor) -> None:
    assert functional_activations(load_model(f"{EXAMPLE}:FunctionalNet"), x) == {"relu": 1}
    assert functional_activations(load_model(SPEC), x) == {}


def test_cli_evaluates_a_model_robustact_never_saw(
    net: nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from robustact.cli import main

    torch.save(net.state_dict(), tmp_path / "my.pt")
    argv = ["evaluate", "--model", SPEC, "--weights", str(tmp_path / "my.pt"),
            "--dataset", "digits", "--eps", "8/255", "--protocol", "adaptive", "--fast",
            "--n", "24", "--json", "-"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr()
    data = json.loads(out.out)  # stdout is pure JSON; the tables went to stderr
    (ev,) = data["evaluations"].values()
    assert ev["eps"] == pytest.approx(8 / 255) and ev["n"] == 24
    assert 0.0 <= ev["robust_accuracy"] <= ev["clean_accuracy"]
    assert "MyNet (mynet.py)" in out.err
    assert not (tmp_path / "-").exists() and not Path("-").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "no model: pass a checkpoint"),
        (["--model", "nope"], "expected MODULE:NAME"),
        (["--eps", "8/0"], "not a number or a fraction"),
        (["CKPT", "--model", SPEC], "not both"),
    ],
)
def test_cli_model_errors_are_one_line(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from robustact.cli import main

    argv = ["evaluate", "--dataset", "digits", "--eps", "0.1", *extra]
    if "CKPT" in extra:
        argv = ["evaluate", "somewhere", "--dataset", "digits", "--eps", "0.1", "--model", SPEC]
    code = main(argv) if "--eps" not in extra else None
    if code is None:
        with pytest.raises(SystemExit) as info:
            main(["evaluate", "--model", SPEC, "--dataset", "digits", *extra])
        code = int(info.value.code or 0)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1


def test_cli_writes_a_robustbench_entry(net: nn.Module, tmp_path: Path) -> None:
    import json

    from robustact.cli import main

    torch.save(net.state_dict(), tmp_path / "my.pt")
    entry = tmp_path / "rb.json"
    argv = ["evaluate", "--model", SPEC, "--weights", str(tmp_path / "my.pt"), "--dataset",
            "digits", "--eps", "8/255", "--protocol", "autoattack", "--n", "10", "--brief",
            "--robustbench", str(entry)]  # fmt: skip
    assert main(argv) == 0
    data = json.loads(entry.read_text())
    assert data["eps"] == "8/255" and data["n_examples"] == 10 and data["threat_model"] == "Linf"
    assert float(data["autoattack_acc"]) <= float(data["clean_acc"])
    assert main([*argv[:-2], "--fast", "--robustbench", str(entry)]) == 2
