"""CIFAR-10 / CIFAR-100 from the official python pickles, read with a restricted unpickler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustact.data.base import DATASETS, DatasetError, ImageDataset, check_split
from robustact.data.download import (
    download_resources,
    find_dir,
    known_md5,
    missing_error,
    verify_md5,
)
from robustact.data.safe_pickle import safe_load

__all__ = ["CIFAR10_CLASSES", "cifar10", "cifar100", "read_cifar_batch"]

CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def _get(d: dict, key: str, path: Path) -> Any:
    # The files were written by Python 2: keys are bytes; accept str keys too.
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DatasetError(f"{path}: no {key!r} entry; not a CIFAR batch file")


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    obj = safe_load(path)
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected a dict, got {type(obj).__name__}")
    data = _get(obj, "data", path)
    labels = np.asarray(_get(obj, label_key, path))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DatasetError(f"{path}: 'data' must be a uint8 (N, 3072) array")
    if data.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"{path}: rows of 'data' have {data.shape[1]} values, expected 3072")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise DatasetError(
            f"{path}: {data.shape[0]} images but {labels.size} labels; the file is corrupt"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{path}: labels must be integers, got {labels.dtype}")
    # Each row is the red plane, then green, then blue, each 32x32 row-major.
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _names(meta: Path, key: str, n: int) -> list[str]:
    if not meta.is_file():
        return CIFAR10_CLASSES if n == 10 else [str(i) for i in range(n)]
    obj = safe_load(meta)
    names = _get(obj, key, meta) if isinstance(obj, dict) else None
    if not isinstance(names, list) or len(names) != n:
        raise DatasetError(f"{meta}: {key!r} should list {n} class names")
    return [x.decode() if isinstance(x, bytes) else str(x) for x in names]


def _load(
    dataset: str,
    folder: str,
    files: list[str],
    label_key: str,
    meta: tuple[str, str],
    n_classes: int,
    root: str | Path | None,
    download: bool,
    verify: bool,
) -> ImageDataset:
    groups = [[f] for f in files]
    d = find_dir(root, folder, groups)
    if d is None and download:
        download_resources(folder, root)
        d = find_dir(root, folder, groups)
    if d is None:
        how = (
            f"Download and extract the official python version (cifar-*-python.tar.gz, see "
            f"robustact.data.download.RESOURCES[{folder!r}]) so that <root>/{folder}/ exists."
        )
        raise missing_error(dataset, root, folder, files, how)
    xs, ys = [], []
    for f in files:
        expected = known_md5(folder, d / f)
        if verify and expected is not None:
            verify_md5(d / f, expected)
        x, y = read_cifar_batch(d / f, label_key)
        xs.append(x)
        ys.append(y)
    classes = _names(d / meta[0], meta[1], n_classes)
    images = torch.from_numpy(np.ascontiguousarray(np.concatenate(xs)))
    return ImageDataset(images, torch.from_numpy(np.concatenate(ys)), classes, dataset)


@DATASETS.register("cifar10")
def cifar10(
    root: str | Path | None = None,
    split: str = "train",
    download: bool = False,
    verify: bool = False,
) -> ImageDataset:
    """CIFAR-10 (50,000 train / 10,000 test, 3x32x32, 10 classes).

    Args:
        root: directory holding ``cifar-10-batches-py/``.
        split: "train" (data_batch_1..5) or "test" (test_batch).
        download: fetch and extract the official archive when missing (needs a network).
        verify: check each batch file's md5 against the official value first.
    """
    split = check_split("cifar10", split, ("train", "test"))
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    return _load(
        "cifar10",
        "cifar-10-batches-py",
        files,
        "labels",
        ("batches.meta", "label_names"),
        10,
        root,
        download,
        verify,
    )


@DATASETS.register("cifar100")
def cifar100(
    root: str | Path | None = None,
    split: str = "train",
    download: bool = False,
    verify: bool = False,
    labels: str = "fine",
) -> ImageDataset:
    """CIFAR-100 (50,000 / 10,000, 3x32x32); ``labels`` "fine" (100 classes) or "coarse" (20)."""
    split = check_split("cifar100", split, ("train", "test"))
    if labels not in ("fine", "coarse"):
        raise DatasetError(f"cifar100: labels must be 'fine' or 'coarse', got {labels!r}")
    return _load(
        "cifar100",
        "cifar-100-python",
        [split],
        f"{labels}_labels",
        ("meta", f"{labels}_label_names"),
        100 if labels == "fine" else 20,
        root,
        download,
        verify,
    )
