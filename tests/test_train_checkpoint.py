"""Checkpoints: safetensors + JSON sidecar, atomic writes, bad files, exact resumption."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


# ------------------------------------------------------------------ one record, one loader
def test_edited_trained_model_reloads_bitwise_through_load_checkpoint_alone(
    tmp_path: Path, digits: Digits
) -> None:
    from robustact.defenses import Preprocessed, get_preprocess
    from robustact.models import create_model
    from robustact.surgery import insert_capped_layer, replace_activations

    x, y, xt, _ = digits
    torch.manual_seed(0)
    model = create_model("mlp_general", in_channels=1, hidden=[24, 12], input_size=(8, 8))
    model, _ = replace_activations(model, "srelu", 0)  # S-ReLU swap
    model, _ = insert_capped_layer(model, "before_output", 16, "drelu")  # D-ReLU insert
    model = Preprocessed(model, get_preprocess("bit_depth", bits=1))  # 1-bit preprocessing
    fit(model, Natural(), (x, y), TrainConfig(epochs=1, batch_size=64, progress=False))
    path = save_checkpoint(tmp_path / "edited", model)
    loaded: Any
    loaded, meta = load_checkpoint(path)  # no model=: the sidecar alone rebuilds it
    assert [e["op"] for e in meta["model"]["config"]["edits"]] == [
        "replace_activations", "insert_capped_layer", "preprocess"
    ]  # fmt: skip
    assert type(loaded.classifier.act1).__name__ == "SReLU"
    assert type(loaded.classifier.fc_out.capped_act).__name__ == "DReLU"
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(xt[:50]), model(xt[:50]))


def test_checkpoint_of_main_sidecar_format_1_still_loads() -> None:
    # written by main's save_cell_checkpoint: S-ReLU placed by surgery (no parameters, so a
    # config-only rebuild would silently give ReLU) and a spectral-norm transform
    from safetensors.torch import load_file

    here = Path(__file__).parent / "data" / "legacy_v1"
    model, meta = load_checkpoint(here / "model.safetensors")
    assert meta["format_version"] == 1 and type(model.act1).__name__ == "SReLU"
    expected = load_file(str(here / "expected.safetensors"))
    with torch.no_grad():
        assert torch.equal(model(expected["x"]), expected["logits"])


def test_config_that_lost_its_surgery_is_refused_not_rebuilt_silently(tmp_path: Path) -> None:
    from robustact.models import create_model
    from robustact.surgery import replace_activations

    model, _ = replace_activations(create_model("mlp_general", in_channels=1), "srelu", 0)
    path = save_checkpoint(tmp_path / "m", model)
    side = path.with_suffix(".json")
    meta = json.loads(side.read_text())
    del meta["model"]["config"]["edits"]  # what a pre-record save of this model looked like
    side.write_text(json.dumps(meta))
    with pytest.raises(
        CheckpointError, match="has ReLU at act1 where the checkpoint recorded SReLU"
    ):
        load_checkpoint(path)


# ------------------------------------------------------------------ atomic replacement
def _crash_on(monkeypatch: pytest.MonkeyPatch, predicate: object) -> None:
    import robustact.train.checkpoint as ck

    real = ck.atomic_write

    def write(path: Path, data: bytes) -> None:
        if predicate(path):  # type: ignore[operator]
            raise KeyboardInterrupt("killed")  # like a kill: not an Exception
        real(path, data)

    monkeypatch.setattr(ck, "atomic_write", write)


def test_crash_between_weights_and_sidecar_leaves_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = mlp(), mlp()
    with torch.no_grad():
        for p in new.parameters():
            p.add_(1.0)
    path = save_checkpoint(tmp_path / "m", old)
    with monkeypatch.context() as m:  # the new weights are written, the sidecar is not
        _crash_on(m, lambda p: p.suffix == ".json")
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(tmp_path / "m", new)
    assert len(list(tmp_path.glob("m.*.safetensors"))) == 2  # the new blob sits unused
    loaded, _ = load_checkpoint(path, mlp())
    assert same_weights(loaded, old)  # old, whole
    save_checkpoint(tmp_path / "m", new)  # the next save prunes the orphan
    assert len(list(tmp_path.glob("m.*.safetensors"))) == 1
    assert same_weights(load_checkpoint(path, mlp())[0], new)
    from safetensors.torch import load_file

    direct = load_file(str(path))  # m.safetensors itself follows the committed weights
    assert all(torch.equal(direct[k], v) for k, v in new.state_dict().items())


def test_files_follow_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "m", mlp())
    finally:
        os.umask(old)
    for f in (path, path.with_suffix(".json")):
        assert f.stat().st_mode & 0o777 == 0o644, oct(f.stat().st_mode)


def test_orphan_epoch_files_of_a_kill_are_pruned_on_resume(
    tmp_path: Path, digits: Digits, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y, _, _ = digits
    x, y = x[:256], y[:256]
    cfg = TrainConfig(epochs=2, batch_size=64, progress=False)
    with monkeypatch.context() as m:  # killed while saving epoch 1: tensors, no sidecar
        _crash_on(m, lambda p: p.name == "epoch_0001.json")
        with pytest.raises(KeyboardInterrupt):
            fit(mlp(), Natural(), (x, y), cfg, checkpoint_dir=tmp_path)
    (tmp_path / "epoch_0007.optim.safetensors").write_bytes(b"?")  # an older run's orphan
    stale = tmp_path / ".epoch_0001.json.dead.tmp"  # a temp file of a kill mid-write
    stale.write_bytes(b"{")
    __import__("os").utime(stale, (0, 0))  # old enough to be a dead writer's
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "epoch_0001.safetensors" in names and "epoch_0001.json" not in names
    full = mlp()
    fit(full, Natural(), (x, y), cfg)
    resumed = mlp()
    fit(resumed, Natural(), (x, y), cfg, checkpoint_dir=tmp_path, resume=True)
    assert same_weights(resumed, full)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch_0001.json", "epoch_0001.optim.safetensors", "epoch_0001.safetensors"
    ]  # fmt: skip
