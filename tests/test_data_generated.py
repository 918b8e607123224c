"""append_generated: generated:real ratio, layouts, dtypes and validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robustact.data import DatasetError, ImageDataset, append_generated


def _real(n: int = 10, dtype=torch.uint8) -> ImageDataset:
    x = torch.full((n, 3, 4, 5), 200, dtype=torch.uint8)
    if dtype == torch.float32:
        x = x.float() / 255
    return ImageDataset(x, torch.arange(n) % 3, ["a", "b", "c"], "toy")


def _npz(tmp_path: Path, x: np.ndarray, y: np.ndarray, xk: str = "x", yk: str = "y") -> Path:
    p = tmp_path / "gen.npz"
    arrays: dict[str, Any] = {xk: x, yk: y}
    np.savez(p, **arrays)
    return p


def test_ratio_and_layouts(tmp_path: Path):
    real = _real(10)
    nchw = np.arange(20 * 60, dtype=np.int64).reshape(20, 3, 4, 5) % 256
    p = _npz(tmp_path, nchw.astype(np.uint8), np.arange(20) % 3)
    out = append_generated(real, p, ratio=0.5, seed=1)
    assert len(out) == 15 and out.images.dtype == torch.uint8 and out.name == "toy+generated"
    assert torch.equal(out.images[:10], real.images) and torch.equal(out.labels[:10], real.labels)
    # Every appended image is a distinct generated one, with its own label; the first
    # pixel (60 * row mod 256) identifies the row.
    row_of = {int(nchw[i, 0, 0, 0]): i for i in range(20)}
    rows = [row_of[int(img[0, 0, 0])] for img in out.images[10:]]
    assert len(set(rows)) == 5
    for img, lab, i in zip(out.images[10:], out.labels[10:], rows, strict=True):
        assert np.array_equal(img.numpy(), nchw[i]) and int(lab) == i % 3
    again = append_generated(real, p, ratio=0.5, seed=1)
    assert torch.equal(again.images, out.images)
    assert len(append_generated(real, p, ratio=None)) == 30
    # NHWC with "image"/"label" keys gives the same data as NCHW.
    q = _npz(
        tmp_path, nchw.transpose(0, 2, 3, 1).astype(np.uint8), np.arange(20) % 3, "image", "label"
    )
    assert torch.equal(append_generated(real, q, ratio=0.5, seed=1).images, out.images)


def test_float_images_quantised_or_kept(tmp_path: Path):
    g = np.full((4, 3, 4, 5), 0.5, np.float32)
    p = _npz(tmp_path, g, np.array([0, 1, 2, 0]))
    u8 = append_generated(_real(4), p, ratio=1.0)
    assert u8.images.dtype == torch.uint8 and int(u8.images[-1, 0, 0, 0]) == 128
    f32 = append_generated(_real(4, torch.float32), p, ratio=1.0)
    assert f32.images.dtype == torch.float32 and float(f32.images[-1].max()) == 0.5


def test_validation(tmp_path: Path):
    real = _real(10)
    with pytest.raises(DatasetError, match=r"shape \(2, 3, 5, 5\); expected \(N, 3, 4, 5\)"):
        append_generated(real, _npz(tmp_path, np.zeros((2, 3, 5, 5), np.uint8), np.zeros(2, int)))
    with pytest.raises(DatasetError, match=r"span \[-1, 1\], expected \[0, 1\]"):
        x = np.linspace(-1, 1, 120, dtype=np.float32).reshape(2, 3, 4, 5)
        append_generated(real, _npz(tmp_path, x, np.zeros(2, int)))
    with pytest.raises(DatasetError, match=r"labels span 0\.\.3 but the training set has 3"):
        append_generated(real, _npz(tmp_path, np.zeros((2, 3, 4, 5), np.uint8), np.array([0, 3])))
    with pytest.raises(DatasetError, match="2 images but labels of shape"):
        append_generated(real, _npz(tmp_path, np.zeros((2, 3, 4, 5), np.uint8), np.zeros(3, int)))
    with pytest.raises(DatasetError, match=r"needs 20 generated images .* holds 2"):
        append_generated(
            real, _npz(tmp_path, np.zeros((2, 3, 4, 5), np.uint8), np.zeros(2, int)), 2.0
        )
    with pytest.raises(DatasetError, match="no image array"):
        append_generated(
            real, _npz(tmp_path, np.zeros((2, 3, 4, 5), np.uint8), np.zeros(2, int), "z")
        )
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(DatasetError, match=r"cannot read the \.npz"):
        append_generated(real, tmp_path / "bad.npz")
