"""``robustact certify`` and the certified side of ``robustact evaluate``'s interval
(certified <= true robust accuracy <= attacked) on a user's own model file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from robustact.activations import DReLU, SReLU
from robustact.cli import main
from robustact.cli._certify import evaluate_interval
from robustact.evaluate import evaluate

NETS = """
import torch
from torch import nn


class Net(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


class Clamped(nn.Module):
    def forward(self, x):
        return torch.clamp(x, 0.0, 0.5)


class Odd(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Flatten(), nn.Linear(64, 32), Clamped(), nn.Linear(32, 10))
"""


def _train(net: nn.Module, digits: tuple, epochs: int = 15) -> nn.Module:
    torch.manual_seed(0)
    xtr, ytr = digits[0], digits[1]
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(epochs):
        for i in range(0, len(ytr), 128):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xtr[i : i + 128]), ytr[i : i + 128]).backward()
            opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory, digits: tuple) -> Path:
    d = tmp_path_factory.mktemp("certify")
    (d / "nets.py").write_text(NETS)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    torch.save(_train(net, digits, epochs=8).state_dict(), d / "net.pt")
    torch.save(net.state_dict(), d / "odd.pt")  # same shapes: Odd loads it
    return d


def _user(d: Path, name: str, weights: str) -> list[str]:
    return ["--model", f"{d / 'nets.py'}:{name}", "--weights", str(d / weights),
            "--dataset", "digits", "--n", "60"]  # fmt: skip


def test_certify_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["certify", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "robustact certify" in out and "--method" in out and "--weights" in out


def test_certify_command_json(model_files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["certify", *_user(model_files, "Net", "net.pt"), "--eps", "0.01", "0.05",
            "--method", "crown", "--json", "-"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    (small, large) = out["results"]
    assert small["method"] == "crown" and small["n"] == 60 and small["eps"] == 0.01
    assert small["clean_accuracy"] > 0.8
    assert small["clean_accuracy"] >= small["certified_accuracy"] > large["certified_accuracy"]
    assert small["certified_accuracy"] > 0.5
    argv[argv.index("crown")] = "ibp"
    assert main(argv) == 0
    ibp = json.loads(capsys.readouterr().out)["results"]
    assert ibp[0]["certified_accuracy"] <= small["certified_accuracy"]


def test_certify_refuses_unknown_layers_and_methods(
    model_files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certify", *_user(model_files, "Odd", "odd.pt"), "--eps", "0.01"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot bound layer '2' of type Clamped" in err[0]
    assert main(["certify", *_user(model_files, "Net", "net.pt"), "--eps", "0.01",
                 "--method", "milp"]) == 2  # fmt: skip
    assert "--method must be one of crown, ibp" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_reports_the_interval(
    model_files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ev.json"
    argv = ["evaluate", *_user(model_files, "Net", "net.pt"), "--eps", "0.02",
            "--protocol", "adaptive", "--fast", "--brief", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "certified (CROWN)" in text and "<= true robust accuracy <=" in text
    cert = json.loads(out.read_text())["certified"]
    (iv,) = cert["intervals"]
    assert cert["method"] == "crown" and iv["attacked_by"] == "adaptive"
    assert 0.5 < iv["certified"] <= iv["attacked"]
    assert main(["evaluate", *_user(model_files, "Odd", "odd.pt"), *argv[9:]]) == 0
    assert "certified bound: not available (certify cannot bound layer" in capsys.readouterr().out
    assert "unavailable" in json.loads(out.read_text())["certified"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["relu", "srelu", "drelu", "cnn"])
def test_certified_never_above_attacked(kind: str, digits: tuple) -> None:
    acts: dict[str, Callable[[], nn.Module]] = {
        "relu": nn.ReLU,
        "srelu": lambda: SReLU(1.0),
        "drelu": lambda: DReLU(32, init_max=1.0),
    }
    torch.manual_seed(0)
    if kind == "cnn":
        net: nn.Module = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(128, 10),
        )  # fmt: skip
    else:
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), acts[kind](), nn.Linear(32, 10))
    net = _train(net, digits, epochs=10)
    x, y = digits[2][:80], digits[3][:80]
    for eps in (0.01, 0.03):
        res = evaluate(net, x, y, protocol="adaptive", eps=eps, fast=True, seed=0)
        for method in ("ibp", "crown"):
            (iv,) = evaluate_interval(net, x, y, [res], method)["intervals"]
            assert iv["certified"] <= iv["attacked"] <= res.clean_accuracy, (kind, eps, iv)
        assert iv["certified"] > 0.2  # CROWN certifies a good share at these radii
