"""Checkpoints: safetensors + JSON sidecar, atomic writes, bad files, exact resumption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from robustact.activations import DReLU
from robustact.train import (
    CheckpointError,
    Natural,
    TrainConfig,
    fit,
    load_checkpoint,
    read_sidecar,
    save_checkpoint,
    with_penalty,
)

Digits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), DReLU(32, init_max=3.0), nn.Linear(32, 10)
    )


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_load_round_trip(tmp_path: Path, digits: Digits) -> None:
    x, y, _, _ = digits
    model = mlp()
    cfg = TrainConfig(epochs=1, progress=False)
    h = fit(model, Natural(), (x, y), cfg)
    path = save_checkpoint(
        tmp_path / "run" / "m", model, objective=Natural(), config=cfg, history=h
    )
    assert path.name == "m.safetensors" and (tmp_path / "run" / "m.json").is_file()
    assert not list((tmp_path / "run").glob("*.tmp"))  # temp files are renamed away
    loaded, meta = load_checkpoint(path, mlp())
    assert same_weights(loaded, model) and not loaded.training
    assert meta["config"]["epochs"] == 1 and meta["objective"] == {"name": "natural"}
    assert meta["history"][0]["loss"] == h["loss"][0]
    assert meta["model"]["activations"][0]["type"] == "DReLU"
    assert isinstance(meta["robustact_version"], str) and "git_commit" in meta
    # the sidecar path works too
    loaded2, _ = load_checkpoint(tmp_path / "run" / "m.json", mlp())
    assert same_weights(loaded2, model)


def test_rebuild_from_model_config(tmp_path: Path) -> None:
    models = pytest.importorskip("robustact.models")
    model = models.create_model("mlp_general", num_classes=10, in_channels=1)
    save_checkpoint(tmp_path / "m.safetensors", model)
    rebuilt, meta = load_checkpoint(tmp_path / "m.safetensors")
    assert type(rebuilt) is type(model) and same_weights(rebuilt, model)
    assert meta["model"]["config"]["name"] == "mlp_general"


def test_no_model_and_no_config_fails(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "m", mlp())
    with pytest.raises(CheckpointError, match="pass model="):
        load_checkpoint(tmp_path / "m.safetensors")


def test_wrong_model_fails_clearly(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "m", mlp())
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_checkpoint(tmp_path / "m", other)


def test_foreign_and_truncated_files_fail(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m", mlp())
    side = path.with_suffix(".json")
    # truncated weights
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or modified"):
        load_checkpoint(path, mlp())
    # truncated sidecar
    path.write_bytes(data)
    text = side.read_text()
    side.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="truncated or not JSON"):
        load_checkpoint(path, mlp())
    # a JSON file that is not ours
    side.write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="not a robustact checkpoint"):
        load_checkpoint(path, mlp())
    # a lone safetensors file (no sidecar)
    (tmp_path / "lone.safetensors").write_bytes(data)
    with pytest.raises(CheckpointError, match="no sidecar"):
        load_checkpoint(tmp_path / "lone.safetensors", mlp())
    # garbage with a matching sidecar is caught by safetensors itself
    side.write_text(text)
    meta = read_sidecar(side)
    junk = b"\x00" * 64
    meta["weights"].update(bytes=len(junk), sha256=__import__("hashlib").sha256(junk).hexdigest())
    side.write_text(json.dumps(meta))
    path.write_bytes(junk)
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(path, mlp())


@pytest.mark.parametrize(
    "cfg",
    [
        TrainConfig(epochs=3, batch_size=64, schedule="plateau", early_stopping=10, lr=1e-2),
        TrainConfig(epochs=3, batch_size=64, optimizer="sgd", nesterov=True, schedule="onecycle"),
        TrainConfig(
            epochs=3, batch_size=64, optimizer="adamw", schedule="cosine", weight_decay=0.1
        ),
    ],
    ids=["adam-plateau", "sgd-onecycle", "adamw-cosine"],
)
def test_kill_and_resume_equals_uninterrupted_run(
    tmp_path: Path, digits: Digits, cfg: TrainConfig
) -> None:
    x, y, xt, yt = digits
    cfg = cfg.replace(progress=False, seed=7)

    # the objective draws randomness (dropout) so RNG restoration matters too
    def model() -> nn.Sequential:
        m = mlp()
        m.insert(3, nn.Dropout(0.2))
        return m

    objective = with_penalty(Natural(), 1e-3)
    full = model()
    h_full = fit(full, objective, (x, y), cfg, val_data=(xt, yt))

    class KilledError(Exception):
        pass

    def kill_after_first(epoch: int, record: dict[str, object]) -> None:
        if epoch == 0:
            raise KilledError

    ckpt = tmp_path / "ckpt"
    part = model()
    with pytest.raises(KilledError):
        fit(part, objective, (x, y), cfg, val_data=(xt, yt), checkpoint_dir=ckpt,
            on_epoch_end=kill_after_first)  # fmt: skip
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "epoch_0000.json", "epoch_0000.optim.safetensors", "epoch_0000.safetensors"
    ]  # fmt: skip
    resumed = model()  # a fresh process would rebuild the model from scratch
    h_res = fit(
        resumed, objective, (x, y), cfg, val_data=(xt, yt), checkpoint_dir=ckpt, resume=True
    )
    assert same_weights(resumed, full)
    assert h_res["loss"] == h_full["loss"] and h_res["lr"] == h_full["lr"]
    assert sorted(p.name for p in ckpt.iterdir())[0] == "epoch_0002.json"  # older pruned
    # resuming a finished run trains nothing and returns its history
    again = model()
    h_again = fit(again, objective, (x, y), cfg, checkpoint_dir=ckpt, resume=True)
    assert same_weights(again, full) and len(h_again) == 3


def test_resume_with_changed_config_fails(tmp_path: Path, digits: Digits) -> None:
    x, y, _, _ = digits
    cfg = TrainConfig(epochs=1, progress=False)
    fit(mlp(), Natural(), (x, y), cfg, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match=r"config\.lr was 0\.001, now 0\.01"):
        fit(mlp(), Natural(), (x, y), cfg.replace(epochs=2, lr=0.01), checkpoint_dir=tmp_path,
            resume=True)  # fmt: skip
    # more epochs is fine
    h = fit(mlp(), Natural(), (x, y), cfg.replace(epochs=2), checkpoint_dir=tmp_path, resume=True)
    assert h["epoch"] == [0, 1]


def test_fresh_run_refuses_a_used_checkpoint_dir(tmp_path: Path, digits: Digits) -> None:
    x, y, _, _ = digits
    cfg = TrainConfig(epochs=2, progress=False)
    fit(mlp(), Natural(), (x, y), cfg, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="already holds a run"):
        fit(mlp(), Natural(), (x, y), cfg, checkpoint_dir=tmp_path)
