"""ImageFolder-style datasets (one subfolder of PNG/JPEG images per class), e.g. ImageNet-100.

Layout under the data root: ``<root>/<folder>/train/<class>/*.{png,jpg,jpeg}`` and
``<root>/<folder>/val/<class>/...`` (the "test" split reads ``val``, as ImageNet's labelled
evaluation images are its validation set). Classes are the train subfolders sorted by name
(torchvision's convention); ``val`` must hold the same class folders. Images are decoded
with Pillow, converted to RGB, resized so the shorter side is ``size`` and centre-cropped to
``size`` x ``size`` (the usual ImageNet evaluation transform; random crops and flips are the
training ``augment`` option), and held as uint8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from robustact.data.base import DATASETS, DatasetError, ImageDataset, candidate_roots, check_split

__all__ = ["imagefolder", "read_image_folder"]

_SUFFIXES = (".png", ".jpg", ".jpeg")


def _decode(path: Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # pillow ships with matplotlib

    try:
        with Image.open(path) as f:
            rgb = f.convert("RGB")
        w, h = rgb.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        rgb = rgb.resize((nw, nh), Image.Resampling.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        return np.asarray(rgb.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise DatasetError(f"{path}: cannot decode image ({e}); the file is corrupt") from e


def _classes(d: Path) -> list[str]:
    if not d.is_dir():
        raise DatasetError(f"{d}: no such folder; expected one subfolder of images per class")
    names = sorted(p.name for p in d.iterdir() if p.is_dir())
    if not names:
        raise DatasetError(f"{d}: no class subfolders; expected {d}/<class>/<image>.png|jpg")
    return names


def read_image_folder(
    directory: str | Path, size: int = 224, classes: list[str] | None = None
) -> ImageDataset:
    """Read ``directory/<class>/*.{png,jpg,jpeg}`` into an ImageDataset.

    Args:
        directory: the split's folder.
        size: output height and width (shorter side resized to it, then centre-cropped).
        classes: class folder names that fix the label order (e.g. the train split's);
            None: the subfolders of ``directory``, sorted.

    Returns:
        images (N, 3, size, size) uint8, labels (N,) in class order.
    """
    d = Path(directory).expanduser()
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise DatasetError(f"imagefolder: size must be an int >= 8, got {size!r}")
    found = _classes(d)
    names = found if classes is None else list(classes)
    if classes is not None and found != names:
        extra, missing = sorted(set(found) - set(names)), sorted(set(names) - set(found))
        raise DatasetError(
            f"{d}: class folders differ from the train split's (extra {extra[:3]}, missing "
            f"{missing[:3]}); both splits need the same classes"
        )
    images: list[np.ndarray] = []
    labels: list[int] = []
    for i, c in enumerate(names):
        files = sorted(p for p in (d / c).iterdir() if p.suffix.lower() in _SUFFIXES)
        if not files:
            raise DatasetError(f"{d / c}: no .png/.jpg/.jpeg images in this class folder")
        images += [_decode(f, size) for f in files]
        labels += [i] * len(files)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return ImageDataset(x, torch.tensor(labels), names, d.parent.name or "imagefolder")


@DATASETS.register("imagefolder")
def imagefolder(
    root: str | Path | None = None, split: str = "train", folder: str = "imagenet100",
    size: int = 224,
) -> ImageDataset:  # fmt: skip
    """An ImageFolder-style dataset under ``root/folder`` (see the module docstring).

    Args:
        root: the data root (None: the default roots, e.g. ``$ROBUSTACT_DATA``).
        split: "train", or "test"/"val" (reads ``val/``).
        folder: the dataset's folder under the root (``imagenet100`` by default).
        size: image height and width after resize and centre crop.
    """
    split = check_split("imagefolder", split, ("train", "test", "val"))
    sub = "train" if split == "train" else "val"
    tried = [r / folder for r in candidate_roots(root)]
    base = next((t for t in tried if (t / "train").is_dir()), None)
    if base is None:
        where = ", ".join(str(t) for t in tried)
        raise DatasetError(f"imagefolder: no {folder}/train/ folder under {where}; put the "
                           "class folders there or pass --data-root")  # fmt: skip
    classes = _classes(base / "train")
    return read_image_folder(base / sub, size, classes)
