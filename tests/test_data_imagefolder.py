"""The ImageFolder-style reader (BReLU Table 2's ImageNet-100) on a tiny generated folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustact.data import DatasetError, load_dataset


def _folder(root: Path, classes: dict[str, int], split: str, size: tuple[int, int]) -> None:
    for k, (name, n) in enumerate(classes.items()):
        d = root / "imagenet100" / split / name
        d.mkdir(parents=True)
        for i in range(n):
            arr = np.full((size[1], size[0], 3), 40 * k + i, np.uint8)
            arr[:, : size[0] // 2, 0] = 250  # left half red: a flip would move it
            suffix = ".png" if i % 2 == 0 else ".JPEG"
            Image.fromarray(arr).save(d / f"img{i}{suffix}", quality=100)


def test_reads_class_folders_resizes_and_keeps_label_order(tmp_path: Path) -> None:
    _folder(tmp_path, {"dog": 3, "cat": 2}, "train", (20, 12))  # not square: resize + crop
    _folder(tmp_path, {"dog": 1, "cat": 1}, "val", (12, 12))
    tr = load_dataset("imagefolder", root=tmp_path, split="train", size=8)
    assert tr.classes == ["cat", "dog"] and tr.images.shape == (5, 3, 8, 8)
    assert tr.images.dtype == torch.uint8 and tr.labels.tolist() == [0, 0, 1, 1, 1]
    # the centre crop of a 20x12 image resized to 13x8 keeps the red left part on the left
    assert int(tr.images[0, 0, 4, 0]) >= 240 and int(tr.images[0, 0, 4, 7]) < 100
    te = load_dataset("imagefolder", root=tmp_path, split="test", size=8)
    assert te.labels.tolist() == [0, 1] and te.classes == tr.classes


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no imagenet100/train/ folder"):
        load_dataset("imagefolder", root=tmp_path)
    _folder(tmp_path, {"a": 1, "b": 1}, "train", (8, 8))
    _folder(tmp_path, {"a": 1, "c": 1}, "val", (8, 8))
    with pytest.raises(DatasetError, match="differ from the train split"):
        load_dataset("imagefolder", root=tmp_path, split="test", size=8)
    (tmp_path / "imagenet100" / "train" / "a" / "img0.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="cannot decode image"):
        load_dataset("imagefolder", root=tmp_path, size=8)
