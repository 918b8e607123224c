"""The in-memory image dataset every reader returns, the dataset registry and root lookup.

Images are kept in their source dtype (uint8 for MNIST/CIFAR/SVHN/TinyImageNet) and turned
into float32 in [0, 1] only per sample or per batch, so a 50,000-image CIFAR set costs
150 MB instead of 600 MB.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from robustact._registry import Registry
from robustact._validate import check_images

__all__ = [
    "DATASETS",
    "DatasetError",
    "ImageDataset",
    "candidate_roots",
    "check_split",
    "list_datasets",
    "load_dataset",
]


class DatasetError(ValueError):
    """A dataset is missing, corrupt, truncated or inconsistent (the message says which)."""


Loader = Callable[..., "ImageDataset"]

#: Dataset readers by name; each is called as ``reader(root=..., split=..., **kw)``.
DATASETS: Registry[Loader] = Registry("dataset")

#: Repository root (src/robustact/data/base.py -> parents[3]); used to find ../shared/datasets.
_REPO = Path(__file__).resolve().parents[3]


def _as_index(indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
    idx = torch.as_tensor(np.asarray(indices), dtype=torch.int64).reshape(-1)
    return idx


class ImageDataset(Dataset):
    """A labelled image set held in memory.

    Args:
        images: (N, C, H, W) uint8 (0..255) or float32 in [0, 1] (tensor or NumPy array).
            float16/bfloat16, float64 that float32 holds exactly, and other integer dtypes
            with values in 0..255 are converted (losslessly); NaN/inf, float values outside
            [0, 1] (0..255 floats: divide by 255) and anything else are refused.
        labels: (N,) integer class indices in [0, len(classes)); float labels are accepted
            only when they are whole numbers (never truncated).
        classes: class names; ``num_classes == len(classes)``.
        name: dataset name (for messages and reports).

    ``ds[i]`` gives ``(image float32 (C, H, W) in [0, 1], label int64 scalar)``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        classes: Sequence[str],
        name: str,
    ) -> None:
        images = _pixel_images(images, name)
        labels = _integer_labels(labels, name)
        if labels.shape[0] != images.shape[0]:
            raise DatasetError(
                f"{name}: {images.shape[0]} images but {labels.shape[0]} labels; "
                "the image and label files do not belong together"
            )
        if len(classes) < 1:
            raise DatasetError(f"{name}: needs at least one class")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
            raise DatasetError(
                f"{name}: labels span {int(labels.min())}..{int(labels.max())} but there are "
                f"{len(classes)} classes; the label file is corrupt or for another dataset"
            )
        self.images = images.contiguous()
        self.labels = labels.contiguous()
        self.classes = [str(c) for c in classes]
        self.name = name

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def targets(self) -> torch.Tensor:
        """(N,) int64 labels (torchvision's attribute name)."""
        return self.labels

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def _to_float(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            return x.to(torch.float32).div_(255.0)
        return x.to(torch.float32, copy=True)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._to_float(self.images[i]), self.labels[i].clone()

    def batch(
        self, indices: Sequence[int] | np.ndarray | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, C, H, W) float32 in [0, 1] and labels (B,) int64 for ``indices``."""
        idx = _as_index(indices)
        return self._to_float(self.images.index_select(0, idx)), self.labels.index_select(0, idx)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole set: x (N, C, H, W) float32 in [0, 1] and y (N,) int64 (copies)."""
        return self._to_float(self.images), self.labels.clone()

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> ImageDataset:
        """A new dataset holding the given rows (a compact copy in the same dtype)."""
        idx = _as_index(indices)
        if idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"{self.name}: subset index out of range for {len(self)} images")
        return ImageDataset(
            self.images.index_select(0, idx % max(len(self), 1)),
            self.labels.index_select(0, idx % max(len(self), 1)),
            self.classes,
            self.name,
        )

    def class_counts(self) -> list[int]:
        """Number of images per class, in class order."""
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, n={len(self)}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, dtype={self.images.dtype})"
        )


def _pixel_images(images: Any, name: str) -> torch.Tensor:
    """(N, C, H, W) uint8 or float32-in-[0, 1] images, converted only where lossless."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise DatasetError(f"{name}: images must be a tensor or array, got {type(images).__name__}")
    if images.ndim != 4:
        raise DatasetError(f"{name}: images must be (N, C, H, W), got shape {tuple(images.shape)}")
    dt = images.dtype
    if dt in (torch.float16, torch.bfloat16):
        images = images.to(torch.float32)  # exact: float32 holds every half value
    elif dt == torch.float64:
        as32 = images.to(torch.float32)
        if not bool((as32.to(torch.float64) == images).all()) and bool(images.isfinite().all()):
            raise DatasetError(
                f"{name}: images are float64 and float32 cannot hold them exactly; robustact "
                "works in float32: pass images.float() (or uint8 0..255)"
            )
        images = as32
    elif dt not in (torch.uint8, torch.bool) and not dt.is_floating_point and not dt.is_complex:
        if images.numel() and (int(images.min()) < 0 or int(images.max()) > 255):
            raise DatasetError(
                f"{name}: integer images must hold 0..255 pixel values, got "
                f"{int(images.min())}..{int(images.max())} ({dt})"
            )
        images = images.to(torch.uint8)
    elif dt not in (torch.uint8, torch.float32):
        raise DatasetError(f"{name}: images must be uint8 or float32, got {dt}")
    if images.dtype == torch.float32:
        try:
            check_images(images, "images")
        except (TypeError, ValueError) as e:
            raise DatasetError(f"{name}: {e}") from None
    return images


def _integer_labels(labels: Any, name: str) -> torch.Tensor:
    """(N,) int64 labels; float labels only when whole (a fraction is an error, not cut)."""
    t = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    t = t.reshape(-1)
    if t.is_complex() or t.dtype == torch.bool:
        raise DatasetError(f"{name}: labels must be integer class indices, got dtype {t.dtype}")
    if t.is_floating_point():
        bad = ~torch.isfinite(t) | (t != t.round())
        if bool(bad.any()):
            first = float(t[bad][0])
            raise DatasetError(
                f"{name}: labels must be whole class indices, got {first:g}; fractional "
                "labels are not truncated, fix the label data"
            )
    return t.to(torch.int64)


def check_split(name: str, split: str, allowed: Sequence[str]) -> str:
    """Return ``split`` lower-cased if allowed, else raise naming the allowed values."""
    s = str(split).lower()
    if s not in allowed:
        raise DatasetError(f"{name}: unknown split {split!r}; use one of {', '.join(allowed)}")
    return s


def candidate_roots(root: str | Path | None) -> list[Path]:
    """Directories to search for dataset files, in order.

    ``root`` when given (only it); else ``$ROBUSTACT_DATA``, then ``../shared/datasets``
    relative to the working directory and to the repository.
    """
    if root is not None:
        return [Path(root).expanduser()]
    out: list[Path] = []
    env = os.environ.get("ROBUSTACT_DATA")
    if env:
        out.append(Path(env).expanduser())
    out.append(Path.cwd() / ".." / "shared" / "datasets")
    out.append(_REPO.parent / "shared" / "datasets")
    seen: set[Path] = set()
    uniq = []
    for p in out:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            uniq.append(r)
    return uniq


def download_root(root: str | Path | None) -> Path:
    """Where ``download=True`` writes: ``root``, else ``$ROBUSTACT_DATA``, else ~/.cache."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("ROBUSTACT_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "robustact" / "datasets"


def load_dataset(
    name: str, root: str | Path | None = None, split: str = "train", **kw: Any
) -> ImageDataset:
    """Load a registered dataset.

    Args:
        name: registry name (see :func:`list_datasets`), case-insensitive, '-' == '_'.
        root: directory holding the dataset folders (None: search the default roots).
        split: "train" or "test" (some datasets have more, e.g. SVHN "extra").
        **kw: reader options (``download=True``, ``size=28`` for digits, ...).

    Returns:
        An :class:`ImageDataset`.
    """
    reader = DATASETS.get(name)
    return reader(root=root, split=split, **kw)


def list_datasets() -> list[str]:
    """Registered dataset names (aliases included), sorted."""
    return DATASETS.names()
