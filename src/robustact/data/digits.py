"""The 8x8 handwritten digits: the embedded default dataset (no files, no downloads).

``digits.npz`` (45 kB, beside this module) holds the 1,797 images (uint8 values 0..16) and
labels exactly as scikit-learn ships them (``sklearn.datasets.load_digits``, BSD-3-Clause),
so scikit-learn is not a dependency. The data are the test set of the UCI "Optical
Recognition of Handwritten Digits" dataset: E. Alpaydin and C. Kaynak (1998), UCI Machine
Learning Repository, https://doi.org/10.24432/C50P49 (CC BY 4.0).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from robustact._validate import is_int
from robustact.data.base import DATASETS, DatasetError, ImageDataset, check_split
from robustact.data.splits import stratified_indices

__all__ = ["DIGITS_FILE", "DIGITS_SEED", "DIGITS_TEST_FRACTION", "digits"]

#: The embedded arrays: ``images`` (1797, 8, 8) uint8 in 0..16, ``labels`` (1797,) uint8.
DIGITS_FILE = Path(__file__).with_name("digits.npz")

#: The fixed, stratified train/test split of the 1,797 images (80/20, seed 0).
DIGITS_TEST_FRACTION = 0.2
DIGITS_SEED = 0


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 8, 8) float32 in [0, 1] and (1797,) int64, read-only, cached per process."""
    with np.load(DIGITS_FILE, allow_pickle=False) as f:
        x = (f["images"].astype(np.float32) / 16.0).clip(0.0, 1.0)
        y = f["labels"].astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@functools.lru_cache(maxsize=8)
def _digits_split(split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _digits_arrays()
    train_idx, test_idx = stratified_indices(y, DIGITS_TEST_FRACTION, DIGITS_SEED)
    idx = {"train": train_idx, "test": test_idx, "all": np.arange(len(y))}[split]
    images = torch.from_numpy(x[idx].copy()).unsqueeze(1)
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        images = images.clamp_(0.0, 1.0)
    return images, torch.from_numpy(y[idx].copy())


@DATASETS.register("digits")
def digits(root: str | Path | None = None, split: str = "train", size: int = 8) -> ImageDataset:
    """The 1,797 8x8 digits (values 0..16 scaled to [0, 1]), 10 classes.

    Args:
        root: ignored (the data ships inside robustact).
        split: "train" (1,437 images), "test" (360) — a fixed stratified 80/20 split — or "all".
        size: side length; 8 keeps the originals, e.g. 28 upsamples bilinearly.

    Returns:
        ImageDataset with images (N, 1, size, size) float32.
    """
    del root
    split = check_split("digits", split, ("train", "test", "all"))
    if not is_int(size) or size < 1:
        raise DatasetError(f"digits: size must be an integer >= 1, got {size!r}")
    images, labels = _digits_split(split, size)
    # Clone so a caller writing into its dataset cannot corrupt the per-process cache.
    return ImageDataset(images.clone(), labels.clone(), [str(i) for i in range(10)], "digits")
