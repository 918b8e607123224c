"""Training-time data: standard augmentation (random crop with zero padding, horizontal
flip) and per-epoch mixing of real and generated images at a fixed epoch size.

:class:`EpochData` is what ``fit`` iterates when an epoch is not a fixed permutation of a
fixed set: each epoch draws its rows from a pool (:meth:`EpochData.epoch_indices`) and each
batch is augmented (:meth:`EpochData.batch`), both from the epoch's seed, so a resumed run
sees the same batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from robustact.data.base import DatasetError, ImageDataset

__all__ = ["STANDARD", "Augment", "EpochData", "parse_augment"]


@dataclass(frozen=True)
class Augment:
    """Random crop after zero padding by ``crop_padding`` pixels, and a horizontal flip
    with probability 0.5 when ``flip`` (the usual CIFAR/SVHN recipe is ``Augment(4, True)``).
    """

    crop_padding: int = 0
    flip: bool = False

    def __post_init__(self) -> None:
        p = self.crop_padding
        if not isinstance(p, int) or isinstance(p, bool) or p < 0:
            raise ValueError(f"augment crop_padding must be an int >= 0, got {p!r}")
        if not isinstance(self.flip, bool):
            raise ValueError(f"augment flip must be true or false, got {self.flip!r}")

    def to_dict(self) -> dict[str, Any]:
        """``{"crop_padding": p, "flip": f}``."""
        return {"crop_padding": self.crop_padding, "flip": self.flip}

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Augment a batch.

        Args:
            x: (N, C, H, W) images.
            generator: CPU generator the crop offsets and flips are drawn from.

        Returns:
            (N, C, H, W), same dtype and device; each image shifted by its own offset in
            [-p, p]^2 (the vacated border is 0) and flipped left-right with probability 0.5.
        """
        n, _, h, w = x.shape
        p = self.crop_padding
        if p:
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (N, H, 1)
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (N, 1, W)
            batch = torch.arange(n, device=x.device)[:, None, None]
            x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()
        if self.flip:
            flip = torch.rand(n, generator=generator).lt(0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x


#: The standard CIFAR/SVHN/TinyImageNet augmentation: 4-pixel padding, random crop, flip.
STANDARD = Augment(crop_padding=4, flip=True)


def parse_augment(value: Any) -> Augment | None:
    """``"standard"``, ``"none"``/None, or ``{crop_padding: p, flip: bool}`` as an Augment.

    Raises:
        ValueError: anything else (one line naming the allowed forms).
    """
    if value is None or value == "none":
        return None
    if value == "standard":
        return STANDARD
    if isinstance(value, Mapping):
        bad = sorted(set(value) - {"crop_padding", "flip"})
        if bad:
            raise ValueError(f"augment: unknown key(s) {bad}; allowed: crop_padding, flip")
        return Augment(value.get("crop_padding", 0), value.get("flip", False))
    raise ValueError(
        f'augment must be "standard", "none" or {{crop_padding: 4, flip: true}}, got {value!r}'
    )


class EpochData:
    """Training data whose epochs are drawn from a pool and augmented per batch.

    Args:
        real: the real training set (its size is every epoch's size).
        augment: applied to every training batch (None: none).
        generated: extra images (e.g. EDM samples) with the same shape and classes.
        real_fraction: share of each epoch drawn from ``real`` (the rest from ``generated``),
            both without replacement, so the epoch size stays ``len(real)``; 1.0 without
            generated data.

    ``len()`` is the epoch size; ``tensors()`` gives the real set (for sizing models and
    training preprocessing defences).
    """

    def __init__(
        self, real: ImageDataset, *, augment: Augment | None = None,
        generated: ImageDataset | None = None, real_fraction: float = 1.0,
    ) -> None:  # fmt: skip
        self.real = real
        self.augment = augment
        self.generated = generated
        self.num_classes = real.num_classes
        self.input_shape = real.input_shape
        n = len(real)
        if not 0.0 < real_fraction <= 1.0:
            raise DatasetError(f"real_fraction must be in (0, 1], got {real_fraction}")
        if generated is None and real_fraction != 1.0:
            raise DatasetError("real_fraction < 1 needs generated images (generated: {file: ...})")
        self.n_real = round(real_fraction * n) if generated is not None else n
        self.n_gen = n - self.n_real
        if generated is not None and self.n_gen > len(generated):
            raise DatasetError(
                f"each epoch needs {self.n_gen} generated images ({1 - real_fraction:.0%} of "
                f"{n}) but the file holds {len(generated)}; generate more or raise real_fraction"
            )

    def __len__(self) -> int:
        return len(self.real)

    def tensors(self) -> tuple[Tensor, Tensor]:
        """The real set: x (N, C, H, W) float32 in [0, 1], y (N,) int64."""
        return self.real.tensors()

    def epoch_indices(self, seed: int | None) -> Tensor:
        """The epoch's rows, shuffled: indices < len(real) are real, the others generated
        (offset by len(real)). ``seed`` None: the real rows in order (no draw).

        Returns:
            (len(real),) int64.
        """
        n = len(self.real)
        if seed is None:
            return torch.arange(n)
        g = torch.Generator().manual_seed(int(seed))
        if self.generated is None:
            return torch.randperm(n, generator=g)
        real = torch.randperm(n, generator=g)[: self.n_real]
        gen = torch.randperm(len(self.generated), generator=g)[: self.n_gen] + n
        rows = torch.cat([real, gen])
        return rows[torch.randperm(n, generator=g)]

    def batch(self, rows: Tensor, seed: int | None) -> tuple[Tensor, Tensor]:
        """Images (B, C, H, W) float32 in [0, 1] and labels (B,) of ``rows`` (from
        :meth:`epoch_indices`), augmented from ``seed`` (None: not augmented)."""
        n = len(self.real)
        is_gen = rows >= n
        if self.generated is None or not bool(is_gen.any()):
            x, y = self.real.batch(rows)
        else:
            xr, yr = self.real.batch(rows[~is_gen])
            xg, yg = self.generated.batch(rows[is_gen] - n)
            x = torch.empty((rows.shape[0], *xr.shape[1:]), dtype=xr.dtype)
            y = torch.empty(rows.shape[0], dtype=torch.int64)
            x[~is_gen], x[is_gen] = xr, xg
            y[~is_gen], y[is_gen] = yr, yg
        if self.augment is not None and seed is not None:
            x = self.augment(x, torch.Generator().manual_seed(int(seed)))
        return x, y
