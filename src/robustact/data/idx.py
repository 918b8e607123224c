"""IDX readers: MNIST, Fashion-MNIST, KMNIST, EMNIST and the offline ``mnist-t10k`` split.

Files live in torchvision's layout ``<root>/<Name>/raw/`` either gzipped or plain. Every
header, size and count is checked, so a truncated download or a mixed-up file fails with
a message that names the file instead of producing garbage images.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from robustact.data.base import DATASETS, DatasetError, ImageDataset, check_split
from robustact.data.download import download_resources, find_dir, missing_error

__all__ = ["load_idx_pair", "read_idx"]

# IDX type codes (third magic byte) -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        if path.suffix == ".gz":
            raise DatasetError(f"{path}: not a gzip file (bad gzip magic); re-download it")
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(
            f"{path}: corrupt or truncated gzip data ({e}); delete it and fetch it again"
        ) from e


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or plain).

    Args:
        path: the file.
        ndim: expected number of dimensions (3 for images, 1 for labels), checked if given.

    Returns:
        The array in native byte order, shape as in the header.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(
            f"{path}: bad IDX magic number {data[:4].hex() or '(empty)'}; "
            "not an IDX file (expected 0000 08 0N for uint8 data)"
        )
    dims_n = data[3]
    if ndim is not None and dims_n != ndim:
        raise DatasetError(
            f"{path}: IDX file has {dims_n} dimensions, expected {ndim} "
            "(image and label files swapped?)"
        )
    header = 4 + 4 * dims_n
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header; re-download the file")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=dims_n, offset=4))
    dtype = _IDX_DTYPES[data[2]]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: a huge header cannot wrap
    got = len(data) - header
    if got != expected:
        raise DatasetError(
            f"{path}: IDX payload is {got} bytes but the header {shape} needs {expected}; "
            "the file is truncated or corrupt, fetch it again"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    # Copy: frombuffer views immutable bytes, and torch wants writable memory.
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _pick(d: Path, stem: str) -> Path:
    for n in (stem, stem + ".gz"):
        if (d / n).is_file():
            return d / n
    raise DatasetError(f"{d}: neither {stem} nor {stem}.gz exists")


def load_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an image file (N, H, W) uint8 and its label file (N,), checking they match."""
    x = read_idx(images, ndim=3)
    y = read_idx(labels, ndim=1)
    if x.dtype != np.uint8 or y.dtype != np.uint8:
        raise DatasetError(f"{images}: expected uint8 IDX data, got {x.dtype} / {y.dtype}")
    if x.shape[0] != y.shape[0]:
        raise DatasetError(
            f"{images.name} has {x.shape[0]} images but {labels.name} has {y.shape[0]} labels; "
            "one of the files is truncated or from another dataset"
        )
    return x, y


def _read_family(
    dataset: str,
    folder: str,
    prefix: str,
    split: str,
    classes: list[str],
    root: str | Path | None,
    download: bool,
    transpose: bool = False,
) -> ImageDataset:
    part = {"train": "train", "test": "t10k"}[split] if not prefix else split
    stems = [f"{prefix}{part}-images-idx3-ubyte", f"{prefix}{part}-labels-idx1-ubyte"]
    subdir = f"{folder}/raw"
    groups = [[s, s + ".gz"] for s in stems]
    # The EMNIST archive unpacks its files into a gzip/ folder; accept them there too.
    subdirs = [subdir, f"{subdir}/gzip"] if folder == "EMNIST" else [subdir]

    def find() -> Path | None:
        return next((d for s in subdirs if (d := find_dir(root, s, groups)) is not None), None)

    d = find()
    if d is None and download:
        download_resources(folder, root, subdir)
        d = find()
    if d is None:
        how = (
            f"Get the official {folder} IDX files (see robustact.data.download.RESOURCES"
            f"[{folder!r}]) into <root>/{subdir}/."
        )
        raise missing_error(dataset, root, subdir, [s + "[.gz]" for s in stems], how)
    x, y = load_idx_pair(_pick(d, stems[0]), _pick(d, stems[1]))
    if transpose:
        # EMNIST stores each image column-major (transposed relative to MNIST).
        x = x.transpose(0, 2, 1)
    images = torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1)
    return ImageDataset(images, torch.from_numpy(y.astype(np.int64)), classes, dataset)


_DIGITS = [str(i) for i in range(10)]
_FASHION = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_KMNIST = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]
_UPPER = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
_LOWER = [chr(c) for c in range(ord("a"), ord("z") + 1)]
# bymerge/balanced merge the lower-case letters that look like their capitals.
_MERGED = _DIGITS + _UPPER + ["a", "b", "d", "e", "f", "g", "h", "n", "q", "r", "t"]
_EMNIST_CLASSES = {
    "byclass": _DIGITS + _UPPER + _LOWER,
    "bymerge": _MERGED,
    "balanced": _MERGED,
    "letters": ["N/A", *_UPPER],  # labels 1..26; 0 is unused
    "digits": _DIGITS,
    "mnist": _DIGITS,
}


@DATASETS.register("mnist")
def mnist(
    root: str | Path | None = None, split: str = "train", download: bool = False
) -> ImageDataset:
    """MNIST (60,000 train / 10,000 test, 1x28x28, 10 classes)."""
    split = check_split("mnist", split, ("train", "test"))
    return _read_family("mnist", "MNIST", "", split, _DIGITS, root, download)


@DATASETS.register("fashion_mnist")
def fashion_mnist(
    root: str | Path | None = None, split: str = "train", download: bool = False
) -> ImageDataset:
    """Fashion-MNIST (60,000 / 10,000, 1x28x28, 10 classes)."""
    split = check_split("fashion_mnist", split, ("train", "test"))
    return _read_family("fashion_mnist", "FashionMNIST", "", split, _FASHION, root, download)


DATASETS.add("fmnist", fashion_mnist)


@DATASETS.register("kmnist")
def kmnist(
    root: str | Path | None = None, split: str = "train", download: bool = False
) -> ImageDataset:
    """Kuzushiji-MNIST (60,000 / 10,000, 1x28x28, 10 classes)."""
    split = check_split("kmnist", split, ("train", "test"))
    return _read_family("kmnist", "KMNIST", "", split, _KMNIST, root, download)


@DATASETS.register("emnist")
def emnist(
    root: str | Path | None = None,
    split: str = "train",
    download: bool = False,
    variant: str = "byclass",
) -> ImageDataset:
    """EMNIST (1x28x28); ``variant`` "byclass" (62 classes, default), "bymerge", "balanced",
    "letters", "digits" or "mnist". Images are transposed back to the MNIST orientation."""
    split = check_split("emnist", split, ("train", "test"))
    if variant not in _EMNIST_CLASSES:
        raise DatasetError(
            f"emnist: unknown variant {variant!r}; use one of {', '.join(_EMNIST_CLASSES)}"
        )
    return _read_family(
        "emnist",
        "EMNIST",
        f"emnist-{variant}-",
        split,
        _EMNIST_CLASSES[variant],
        root,
        download,
        transpose=True,
    )


#: The offline convention of ../shared/datasets/README.md: official t10k, first 8,000 / last 2,000.
T10K_TRAIN = 8000


@DATASETS.register("mnist_t10k")
def mnist_t10k(
    root: str | Path | None = None, split: str = "train", download: bool = False
) -> ImageDataset:
    """The official MNIST test split re-split: first 8,000 for "train", last 2,000 for "test"
    ("all" gives the 10,000). Only the two t10k files are needed.

    Without ``root`` it searches ``$ROBUSTACT_DATA``, then ``../shared/datasets`` relative to
    the working directory and to the repository.
    """
    split = check_split("mnist_t10k", split, ("train", "test", "all"))
    full = _read_family("mnist_t10k", "MNIST", "", "test", _DIGITS, root, download)
    full.name = "mnist_t10k"
    if len(full) != 10000:
        raise DatasetError(f"mnist_t10k: expected the 10,000-image t10k files, got {len(full)}")
    if split == "all":
        return full
    sl = slice(0, T10K_TRAIN) if split == "train" else slice(T10K_TRAIN, None)
    return ImageDataset(
        full.images[sl].clone(), full.labels[sl].clone(), full.classes, "mnist_t10k"
    )
