"""Standard augmentation, per-epoch real/generated mixing, val_fraction 0 and init weights:
the batch ops, the training loop's use of them and the spec/cell wiring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robustact.data import DatasetError, ImageDataset, load_dataset
from robustact.data.augment import STANDARD, Augment, EpochData, parse_augment
from robustact.experiments.cell import prepare_cell, run_cell
from robustact.experiments.spec import SpecError, parse_spec
from robustact.train._batches import Batches


def _toy(n: int = 12, value: int = 7) -> ImageDataset:
    x = torch.zeros((n, 1, 4, 4), dtype=torch.uint8)
    x[:, 0, 0, 0] = value  # one marked pixel in the top-left corner
    x[:, 0, 1, 1] = torch.arange(n, dtype=torch.uint8)  # identifies the row
    return ImageDataset(x, torch.arange(n) % 2, ["a", "b"], "toy")


def test_crop_shifts_each_image_and_pads_with_zeros() -> None:
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5) / 100
    g = torch.Generator().manual_seed(0)
    out = Augment(crop_padding=2)(x, g)
    assert out.shape == x.shape
    for i in range(2):
        # the output is a window of the zero-padded image: find its offset
        padded = torch.nn.functional.pad(x[i, 0], (2, 2, 2, 2))
        hits = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(padded[dy : dy + 5, dx : dx + 5], out[i, 0])
        ]
        assert len(hits) == 1
    # over many draws both shifts and the unshifted window occur
    many = Augment(crop_padding=1)(x[:1].repeat(200, 1, 1, 1), torch.Generator().manual_seed(1))
    distinct = {tuple(m.flatten().tolist()) for m in many}
    assert len(distinct) == 9  # 3 x 3 offsets


def test_flip_is_a_mirror_about_half_the_time() -> None:
    x = torch.rand(400, 3, 4, 6)
    out = Augment(flip=True)(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x, strict=True)])
    same = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x, strict=True)])
    assert bool((flipped | same).all())
    assert 160 < int(flipped.sum()) < 240


def test_parse_augment_forms_and_errors() -> None:
    assert parse_augment("standard") == STANDARD == Augment(4, True)
    assert parse_augment("none") is None and parse_augment(None) is None
    assert parse_augment({"crop_padding": 2}) == Augment(2, False)
    with pytest.raises(ValueError, match="unknown key"):
        parse_augment({"crop": 2})
    with pytest.raises(ValueError, match="crop_padding must be an int >= 0"):
        parse_augment({"crop_padding": -1})
    with pytest.raises(ValueError, match='"standard", "none"'):
        parse_augment("random")


def test_mixing_keeps_epoch_size_and_ratio_and_changes_per_epoch() -> None:
    real, gen = _toy(20, value=7), _toy(50, value=200)
    data = EpochData(real, generated=gen, real_fraction=0.3)
    assert len(data) == 20 and data.n_real == 6 and data.n_gen == 14
    b = Batches(data, 8, torch.device("cpu"), "training data")
    assert len(b) == 3
    epochs = []
    for seed in (1, 2):
        xs = torch.cat([x for x, _ in b.epoch(seed)])
        assert xs.shape == (20, 1, 4, 4)
        marks = (xs[:, 0, 0, 0] * 255).round()
        assert int((marks == 7).sum()) == 6 and int((marks == 200).sum()) == 14
        epochs.append(xs)
    assert not torch.equal(epochs[0], epochs[1])  # each epoch draws anew
    again = torch.cat([x for x, _ in b.epoch(1)])
    assert torch.equal(again, epochs[0])  # ... from its seed only (exact resume)
    with pytest.raises(DatasetError, match="needs 14 generated images"):
        EpochData(real, generated=_toy(5), real_fraction=0.3)


def test_augmented_batches_differ_per_epoch_not_in_order_mode() -> None:
    data = EpochData(_toy(16), augment=STANDARD)
    b = Batches(data, 16, torch.device("cpu"), "training data")
    plain = next(iter(b.epoch(None)))[0]
    assert torch.equal(plain, _toy(16).tensors()[0])  # seed None: no draw, no augmentation
    e1, e2 = next(iter(b.epoch(5)))[0], next(iter(b.epoch(6)))[0]
    assert not torch.equal(e1, e2)
    assert torch.equal(e1, next(iter(b.epoch(5)))[0])


def _spec(training: dict[str, Any], **grid: Any) -> dict[str, Any]:
    return {
        "name": "t",
        "grid": {
            "datasets": [{"name": "digits"}],
            "models": [{"name": "mlp_general", "hidden": [16]}],
            **grid,
        },
        "training": {"epochs": 1, "batch_size": 64, **training},
        "evaluation": {
            "protocols": [{"name": "m", "attacks": [{"attack": "fgsm"}]}],
            "eps": [0.1],
            "n": 20,
            "fast": True,
            "masking": False,
        },
    }


def test_spec_checks_the_data_keys() -> None:
    bad = {"augment": "random", "generated": {"path": "x.npz"}, "init": "w.pt"}
    with pytest.raises(SpecError) as e:
        parse_spec(_spec(bad))
    text = str(e.value)
    assert "training.augment" in text and "training.generated" in text and "training.init" in text
    with pytest.raises(SpecError, match="val_fraction 0 validates on the test split"):
        parse_spec(_spec({"val_fraction": 0, "early_stopping": 3}))


def test_val_fraction_zero_trains_on_everything_and_validates_on_test() -> None:
    training = {"val_fraction": 0, "augment": {"crop_padding": 1}, "epochs": 3, "lr": 0.01}
    spec = parse_spec(_spec(training))
    prep = prepare_cell(spec.cells()[0].config)
    full = load_dataset("digits", split="train")
    assert len(prep.train) == len(full) and isinstance(prep.train, EpochData)
    assert len(prep.val) == len(load_dataset("digits", split="test"))
    out = run_cell(spec.cells()[0].config)  # fit on augmented batches
    clean = next(r.value for r in out.metrics if r.metric == "accuracy" and r.attack == "clean")
    assert clean > 0.3 and out.extra["n_val"] == len(prep.val)


def test_generated_npz_mixes_into_the_cell(tmp_path: Path) -> None:
    full = load_dataset("digits", split="train")
    n = len(full)
    x = np.full((n, 8, 8), 255, np.uint8)  # (N, H, W) for one channel
    np.savez(tmp_path / "edm_digits.npz", x=x, y=np.arange(n) % 10)
    gen = {"file": "edm_{dataset}.npz", "real_fraction": {"digits": 0.5, "cifar10": 0.3}}
    doc = _spec({"generated": gen})
    prep = prepare_cell(parse_spec(doc).cells()[0].config, data_root=tmp_path)
    assert isinstance(prep.train, EpochData) and prep.train.n_gen == len(prep.train) // 2
    xs = torch.cat([b for b, _ in Batches(prep.train, 500, torch.device("cpu"), "t").epoch(3)])
    white = int((xs.flatten(1).min(1).values == 1.0).sum())
    assert white == prep.train.n_gen
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 3, 8, 8), np.uint8), y=np.zeros(4, int))
    doc = _spec({"generated": {"file": "bad.npz"}})
    with pytest.raises(DatasetError, match=r"images have shape \(4, 3, 8, 8\)"):
        prepare_cell(parse_spec(doc).cells()[0].config, data_root=tmp_path)
    doc = _spec({"generated": {"file": "missing.npz"}})
    with pytest.raises(DatasetError, match="no such file"):
        prepare_cell(parse_spec(doc).cells()[0].config, data_root=tmp_path)
