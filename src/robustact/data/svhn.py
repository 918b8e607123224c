"""SVHN (cropped digits) from the official .mat files."""

from __future__ import annotations

from pathlib import Path

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

__all__ = ["read_svhn_mat", "svhn"]


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``*_32x32.mat``: images (N, 3, 32, 32) uint8 and labels (N,) int64 in 0..9.

    The file stores X as (32, 32, 3, N) and the digit 0 as label 10.
    """
    import scipy.io  # deferred: only SVHN needs it
    from scipy.io.matlab import MatReadError

    try:
        mat = scipy.io.loadmat(str(path))
    except (MatReadError, ValueError, OSError, TypeError, IndexError, NotImplementedError) as e:
        raise DatasetError(f"{path}: corrupt or unreadable .mat file ({e}); fetch it again") from e
    if "X" not in mat or "y" not in mat:
        raise DatasetError(f"{path}: no 'X'/'y' arrays; not an SVHN *_32x32.mat file")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DatasetError(f"{path}: X has shape {x.shape}, expected (32, 32, 3, N)")
    if x.dtype != np.uint8:
        raise DatasetError(f"{path}: X must be uint8, got {x.dtype}")
    if y.shape[0] != x.shape[3]:
        raise DatasetError(f"{path}: {x.shape[3]} images but {y.shape[0]} labels; file corrupt")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() > 10):
        raise DatasetError(f"{path}: labels span {y.min()}..{y.max()}, expected 1..10")
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


@DATASETS.register("svhn")
def svhn(
    root: str | Path | None = None,
    split: str = "train",
    download: bool = False,
    verify: bool = False,
) -> ImageDataset:
    """SVHN cropped digits (73,257 train / 26,032 test / 531,131 extra, 3x32x32, 10 classes).

    Args:
        root: directory holding ``SVHN/{train,test,extra}_32x32.mat``.
        split: "train", "test" or "extra".
        download: fetch the official .mat files when missing (needs a network).
        verify: check the file's md5 against the official value first.
    """
    split = check_split("svhn", split, ("train", "test", "extra"))
    fname = f"{split}_32x32.mat"
    d = find_dir(root, "SVHN", [[fname]])
    if d is None and download:
        download_resources("SVHN", root, "SVHN", only=fname)
        d = find_dir(root, "SVHN", [[fname]])
    if d is None:
        how = "Download it from http://ufldl.stanford.edu/housenumbers/ into <root>/SVHN/."
        raise missing_error("svhn", root, "SVHN", [fname], how)
    expected = known_md5("SVHN", d / fname)
    if verify and expected is not None:
        verify_md5(d / fname, expected)
    x, y = read_svhn_mat(d / fname)
    return ImageDataset(
        torch.from_numpy(x), torch.from_numpy(y), [str(i) for i in range(10)], "svhn"
    )
