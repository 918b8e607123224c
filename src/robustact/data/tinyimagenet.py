"""TinyImageNet-200 from its folder layout (JPEGs decoded with Pillow, cached as .npy)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from robustact.data.base import DATASETS, DatasetError, ImageDataset, check_split
from robustact.data.download import download_resources, find_dir, missing_error

__all__ = ["tinyimagenet"]

_FOLDER = "tiny-imagenet-200"


def _decode(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # pillow ships with matplotlib

    try:
        with Image.open(path) as im:
            # A few TinyImageNet images are greyscale: bring every image to RGB.
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise DatasetError(f"{path}: cannot decode image ({e}); the file is corrupt") from e
    if arr.shape != (64, 64, 3):
        raise DatasetError(f"{path}: image is {arr.shape[1]}x{arr.shape[0]}, expected 64x64")
    return arr


def _listing(d: Path, split: str, wnids: list[str]) -> tuple[list[Path], list[int]]:
    index = {w: i for i, w in enumerate(wnids)}
    files: list[Path] = []
    labels: list[int] = []
    if split == "train":
        for w in wnids:
            imgs = sorted((d / "train" / w / "images").glob("*.JPEG"))
            if not imgs:
                raise DatasetError(f"{d / 'train' / w / 'images'}: no JPEG images; incomplete copy")
            files += imgs
            labels += [index[w]] * len(imgs)
        return files, labels
    ann = d / "val" / "val_annotations.txt"
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        parts = line.split("\t")
        if len(parts) < 2:
            raise DatasetError(f"{ann}:{n}: expected '<file>\\t<wnid>\\t...', got {line!r}")
        if parts[1] not in index:
            raise DatasetError(f"{ann}:{n}: wnid {parts[1]!r} is not in wnids.txt")
        files.append(d / "val" / "images" / parts[0])
        labels.append(index[parts[1]])
    return files, labels


@DATASETS.register("tinyimagenet")
def tinyimagenet(
    root: str | Path | None = None,
    split: str = "train",
    download: bool = False,
    cache: bool = True,
) -> ImageDataset:
    """TinyImageNet-200 (100,000 train / 10,000 val, 3x64x64, 200 classes).

    Args:
        root: directory holding ``tiny-imagenet-200/``.
        split: "train", or "val" (alias "test": the official test images have no labels).
        download: fetch and extract the official zip when missing (needs a network).
        cache: keep the decoded images in ``tiny-imagenet-200/robustact-<split>.npy``
            (when the folder is writable), so later loads skip JPEG decoding.

    Classes are the wnids sorted alphabetically (the ImageFolder convention); ``classes``
    holds the words of ``words.txt`` when present, else the wnids.
    """
    split = check_split("tinyimagenet", split, ("train", "val", "test"))
    split = "val" if split == "test" else split
    need = [["wnids.txt"], ["train"]] if split == "train" else [["wnids.txt"], ["val"]]
    d = _find(root, need)
    if d is None and download:
        download_resources(_FOLDER, root)
        d = _find(root, need)
    if d is None:
        how = "Download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it."
        raise missing_error("tinyimagenet", root, _FOLDER, ["wnids.txt", f"{split}/"], how)
    wnids = sorted(w.strip() for w in (d / "wnids.txt").read_text().split() if w.strip())
    if len(set(wnids)) != len(wnids) or not wnids:
        raise DatasetError(f"{d / 'wnids.txt'}: empty or repeated wnids")
    files, labels = _listing(d, split, wnids)
    x = _load_cached(d / f"robustact-{split}.npy", len(files)) if cache else None
    if x is None:
        x = np.stack([_decode(f) for f in files]).transpose(0, 3, 1, 2).copy()
        if cache:
            _save_cache(d / f"robustact-{split}.npy", x)
    return ImageDataset(
        torch.from_numpy(x),
        torch.tensor(labels, dtype=torch.int64),
        _words(d, wnids),
        "tinyimagenet",
    )


def _find(root: str | Path | None, need: list[list[str]]) -> Path | None:
    d = find_dir(root, _FOLDER, [need[0]])
    return d if d is not None and (d / need[1][0]).is_dir() else None


def _save_cache(path: Path, x: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npy")
    # A read-only copy of the dataset just means decoding again next time.
    with contextlib.suppress(OSError):
        np.save(tmp, x)
        tmp.replace(path)


def _load_cached(path: Path, n: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    ok = x.dtype == np.uint8 and x.shape == (n, 3, 64, 64)
    return x if ok else None


def _words(d: Path, wnids: list[str]) -> list[str]:
    words = d / "words.txt"
    if not words.is_file():
        return wnids
    table = {}
    for line in words.read_text().splitlines():
        wnid, _, text = line.partition("\t")
        table[wnid.strip()] = text.strip()
    return [table.get(w) or w for w in wnids]
