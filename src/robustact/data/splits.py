"""Seeded stratified splits and a seeded batch loader that converts uint8 per batch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from robustact._validate import check_float, check_int
from robustact.data.base import DatasetError, ImageDataset

__all__ = ["BatchLoader", "make_loader", "stratified_indices", "train_val_split"]


def stratified_indices(
    labels: np.ndarray | torch.Tensor, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices so every class keeps (about) the same share in both parts.

    Per class, ``round(n_c * val_fraction)`` rows go to the second part, drawn with a
    ``numpy.random.Generator`` seeded by ``seed``. Both index arrays are sorted.

    Returns:
        (first_indices, second_indices), int64.
    """
    try:
        val_fraction = check_float("val_fraction", val_fraction, 0.0, 1.0, min_open=True,
                                   max_open=True)  # fmt: skip
        seed = check_int("seed", seed)
    except ValueError as e:
        raise DatasetError(str(e)) from None
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    rng = np.random.default_rng(seed)
    first: list[np.ndarray] = []
    second: list[np.ndarray] = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        rows = rows[rng.permutation(len(rows))]
        k = round(len(rows) * float(val_fraction))
        second.append(rows[:k])
        first.append(rows[k:])
    a = np.sort(np.concatenate(first)) if first else np.zeros(0, np.int64)
    b = np.sort(np.concatenate(second)) if second else np.zeros(0, np.int64)
    return a.astype(np.int64), b.astype(np.int64)


def train_val_split(
    ds: ImageDataset, val_fraction: float = 0.2, seed: int = 0
) -> tuple[ImageDataset, ImageDataset]:
    """Seeded, stratified split of a training set into (train, validation).

    Args:
        ds: the dataset to split.
        val_fraction: share of each class that goes to validation (0.2 = the 80/20 split).
        seed: the split is a pure function of (labels, val_fraction, seed).
    """
    if not isinstance(ds, ImageDataset):
        raise TypeError(f"train_val_split needs an ImageDataset, got {type(ds).__name__}")
    tr, va = stratified_indices(ds.labels, val_fraction, seed)
    return ds.subset(tr), ds.subset(va)


class BatchLoader:
    """Iterates (x (B, C, H, W) float32 in [0, 1], y (B,) int64) over an ImageDataset.

    Each pass visits every image exactly once. The order comes from a ``torch.Generator``
    seeded once, so pass k of two loaders with the same seed is identical, and passes
    differ from each other when ``shuffle`` is on.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        check_int("batch_size", batch_size, 1)
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.device = torch.device(device) if device is not None else None
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for b in range(len(self)):
            x, y = self.dataset.batch(order[b * self.batch_size : (b + 1) * self.batch_size])
            if self.device is not None:
                x, y = x.to(self.device), y.to(self.device)
            yield x, y


def make_loader(
    ds: Dataset,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    device: torch.device | str | None = None,
) -> BatchLoader | DataLoader:
    """A seeded batch iterator over ``ds``.

    An :class:`ImageDataset` gets a :class:`BatchLoader` (batched indexing, uint8 -> float
    per batch); any other torch ``Dataset`` gets a ``DataLoader`` with a seeded generator.
    """
    if isinstance(ds, ImageDataset):
        return BatchLoader(ds, batch_size, shuffle, seed, drop_last, device)
    if device is not None:
        raise ValueError("device= is only supported for ImageDataset; move batches yourself")
    g = torch.Generator().manual_seed(int(seed))
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=g)
