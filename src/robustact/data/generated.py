"""Appending generated images (e.g. EDM diffusion samples) to a training set."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from robustact.data.base import DatasetError, ImageDataset

__all__ = ["append_generated", "load_generated", "read_generated"]

_X_KEYS = ("x", "image", "images")
_Y_KEYS = ("y", "label", "labels")


def _key(keys: list[str], options: tuple[str, ...], path: Path, what: str) -> str:
    for k in options:
        if k in keys:
            return k
    raise DatasetError(
        f"{path}: no {what} array; expected one of {', '.join(options)}, found {', '.join(keys)}"
    )


def read_generated(
    path: str | Path, input_shape: tuple[int, int, int], num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate an .npz of generated images.

    Args:
        path: .npz with images under ``x``/``image(s)`` (N, C, H, W), (N, H, W, C) or, for one
            channel, (N, H, W); uint8 0..255 or float in [0, 1]; labels under ``y``/``label(s)``.
        input_shape: (C, H, W) the images must have.
        num_classes: labels must lie in [0, num_classes).

    Returns:
        images (N, C, H, W) in the file's dtype (uint8 or float32) and labels (N,) int64.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            x = np.asarray(z[_key(keys, _X_KEYS, path, "image")])
            y = np.asarray(z[_key(keys, _Y_KEYS, path, "label")])
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DatasetError(f"{path}: cannot read the .npz ({e}); save it with numpy.savez") from e
    c, h, w = input_shape
    if x.ndim == 3 and c == 1 and x.shape[1:] == (h, w):
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1:] == (c, h, w):
        pass
    elif x.ndim == 4 and x.shape[1:] == (h, w, c):
        x = x.transpose(0, 3, 1, 2)
    else:
        raise DatasetError(
            f"{path}: images have shape {x.shape}; expected (N, {c}, {h}, {w}) or "
            f"(N, {h}, {w}, {c}) to match the training set"
        )
    if x.dtype == np.uint8:
        pass
    elif np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise DatasetError(f"{path}: images contain NaN or inf")
        lo, hi = float(x.min(initial=0.0)), float(x.max(initial=0.0))
        if lo < 0.0 or hi > 1.0:
            raise DatasetError(
                f"{path}: float images span [{lo:.3g}, {hi:.3g}], expected [0, 1]; "
                "rescale them (e.g. (x + 1) / 2 for [-1, 1]) or save uint8 0..255"
            )
        x = x.astype(np.float32)
    else:
        raise DatasetError(f"{path}: images must be uint8 or float, got {x.dtype}")
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DatasetError(f"{path}: {x.shape[0]} images but labels of shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{path}: labels must be integers, got {y.dtype}")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DatasetError(
            f"{path}: labels span {int(y.min())}..{int(y.max())} but the training set has "
            f"{num_classes} classes"
        )
    return np.ascontiguousarray(x), y.astype(np.int64)


def append_generated(
    train_ds: ImageDataset,
    npz_path: str | Path,
    ratio: float | None = 1.0,
    seed: int = 0,
) -> ImageDataset:
    """Training set plus generated images, ``ratio`` generated per real image.

    Args:
        train_ds: the real training set.
        npz_path: generated images and labels (see :func:`read_generated`).
        ratio: generated:real, e.g. 0.5 adds ``round(0.5 * len(train_ds))`` generated images,
            drawn without replacement with ``seed``; None adds all of them.
        seed: seed of that draw.

    Returns:
        A new ImageDataset: the real images first, then the generated ones. With a uint8
        training set, float generated images are rounded to uint8 to keep memory compact.
    """
    x, y = read_generated(npz_path, train_ds.input_shape, train_ds.num_classes)
    if ratio is None:
        n = len(y)
    else:
        if not ratio >= 0:
            raise DatasetError(f"ratio must be >= 0 (generated per real image), got {ratio}")
        n = round(float(ratio) * len(train_ds))
        if n > len(y):
            raise DatasetError(
                f"{npz_path}: ratio {ratio} needs {n} generated images for {len(train_ds)} real "
                f"ones but the file holds {len(y)}; lower the ratio or generate more"
            )
    pick = np.sort(np.random.default_rng(seed).choice(len(y), size=n, replace=False))
    gx, gy = torch.from_numpy(x[pick]), torch.from_numpy(y[pick])
    real = train_ds.images
    if real.dtype == torch.uint8:
        if gx.dtype != torch.uint8:
            gx = gx.mul(255.0).round_().to(torch.uint8)
    else:
        gx = gx.float() / 255.0 if gx.dtype == torch.uint8 else gx.float()
        real = real.float()
    return ImageDataset(
        torch.cat([real, gx]),
        torch.cat([train_ds.labels, gy]),
        train_ds.classes,
        f"{train_ds.name}+generated",
    )


def load_generated(path: str | Path, like: ImageDataset) -> ImageDataset:
    """The generated images of ``path`` (see :func:`read_generated`) as an ImageDataset
    with ``like``'s shape, classes and pixel dtype (float images are rounded to uint8 when
    ``like`` is uint8, as :func:`append_generated` does)."""
    x, y = read_generated(path, like.input_shape, like.num_classes)
    gx = torch.from_numpy(x)
    if like.images.dtype == torch.uint8 and gx.dtype != torch.uint8:
        gx = gx.mul(255.0).round_().to(torch.uint8)
    return ImageDataset(gx, torch.from_numpy(y), like.classes, f"{like.name}+generated")
