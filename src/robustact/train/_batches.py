"""Turn what users pass as data into seeded batch iterators.

Accepted: a pair of tensors ``(x (N, C, H, W) float in [0, 1], y (N,) int64)``; a dataset
with ``.tensors()`` (``robustact.data.ImageDataset``); any map-style torch ``Dataset``
returning ``(x, y)``; or any iterable of ``(x, y)`` batches (a ``DataLoader``). For the first
three the order of each epoch depends only on ``(seed, epoch)``, which makes resumption
exact; a user's loader keeps its own order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import Any

import torch
from torch import Tensor

_MIX = 1_000_003  # odd multiplier so (seed, epoch) pairs map to distinct seeds


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A seed that depends only on (seed, epoch, stream), for per-epoch RNG streams."""
    return (seed * _MIX * _MIX + epoch * _MIX + stream) % (2**63 - 1)


class Batches:
    """Mini-batches of one data source on one device.

    Args:
        data: see the module docstring.
        batch_size: batch size (the last batch may be smaller).
        device: device the batches are moved to.
        what: "training data" / "validation data", for error messages.
    """

    def __init__(self, data: Any, batch_size: int, device: torch.device, what: str) -> None:
        self.batch_size = batch_size
        self.device = device
        self.what = what
        self.tensors: tuple[Tensor, Tensor] | None = None
        self.dataset: Any = None
        self.loader: Any = None
        if hasattr(data, "tensors") and callable(data.tensors):
            data = data.tensors()
        if (
            isinstance(data, (tuple, list))
            and len(data) == 2
            and all(isinstance(t, Tensor) for t in data)
        ):
            self.tensors = _check_tensors(data[0], data[1], what, device)
        elif (
            hasattr(data, "__getitem__")
            and isinstance(data, Sized)
            and not isinstance(data, (tuple, list, Tensor))
        ):
            self.dataset = data
        elif isinstance(data, Iterable) and not isinstance(data, (Tensor, str)):
            self.loader = data
        else:
            raise TypeError(
                f"{what} must be (x, y) tensors, a dataset or an iterable of (x, y) batches; "
                f"got {type(data).__name__}"
            )
        if len(self) == 0:
            raise ValueError(f"{what} is empty; pass at least one sample")

    @property
    def exact_order(self) -> bool:
        """True when the batch order depends only on (seed, epoch)."""
        return self.loader is None

    @property
    def num_samples(self) -> int | None:
        """Number of samples, when known."""
        if self.tensors is not None:
            return int(self.tensors[1].shape[0])
        if self.dataset is not None:
            return len(self.dataset)
        return None

    def __len__(self) -> int:
        n = self.num_samples
        if n is not None:
            return -(-n // self.batch_size)
        return len(self.loader) if isinstance(self.loader, Sized) else 1

    def epoch(self, seed: int | None) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches of one epoch; shuffled by ``seed`` (None: in order)."""
        n = self.num_samples
        if self.loader is not None:
            for b in self.loader:
                x, y = b[0], b[1]
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            return
        assert n is not None
        if seed is None:
            order = None
        else:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        if self.tensors is not None:
            x, y = self.tensors
            if order is not None:
                order = order.to(x.device)
            for i in range(0, n, self.batch_size):
                if order is None:
                    yield x[i : i + self.batch_size], y[i : i + self.batch_size]
                else:
                    idx = order[i : i + self.batch_size]
                    yield x[idx], y[idx]
            return
        idxs = list(range(n)) if order is None else order.tolist()
        for i in range(0, n, self.batch_size):
            items = [self.dataset[j] for j in idxs[i : i + self.batch_size]]
            xb = torch.stack([torch.as_tensor(it[0]) for it in items])
            yb = torch.as_tensor([int(it[1]) for it in items], dtype=torch.int64)
            yield xb.to(self.device), yb.to(self.device)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.epoch(None)


def _check_tensors(x: Tensor, y: Tensor, what: str, device: torch.device) -> tuple[Tensor, Tensor]:
    if not x.is_floating_point():
        raise TypeError(f"{what}: x must be a float tensor in [0, 1], got dtype {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"{what}: x must be batched (N, ...), got shape {tuple(x.shape)}")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{what}: y must be (N,) with N = {x.shape[0]} like x, got shape {tuple(y.shape)}"
        )
    if y.dtype != torch.int64:
        raise TypeError(f"{what}: y must be int64 class labels, got {y.dtype}; use y.long()")
    # the sum is finite whenever every entry is (for image-range data), and 10x cheaper
    if x.numel() and not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what}: x contains NaN or inf")
    return x.to(device), y.to(device)
