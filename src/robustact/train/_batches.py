"""Turn what users pass as data into seeded, checked batch iterators.

Accepted: a pair of tensors ``(x (N, C, H, W) float in [0, 1], y (N,) int64)``; a dataset
with ``.tensors()`` (``robustact.data.ImageDataset``); any map-style torch ``Dataset``
returning ``(x, y)``; or any iterable of ``(x, y)`` batches (a ``DataLoader``). For the first
three the order of each epoch depends only on ``(seed, epoch)``, which makes resumption
exact; a user's loader keeps its own order.

Every batch obeys the pixel contract (the toolkit's :func:`~robustact._validate.check_batch`):
tensors are checked once, the batches of a dataset or loader as they are drawn. Float images
of another precision (float64, float16) are cast to the model's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sized
from typing import Any

import torch
from torch import Tensor

from robustact._validate import check_batch

_MIX = 1_000_003  # odd multiplier so (seed, epoch) pairs map to distinct seeds


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A seed that depends only on (seed, epoch, stream), for per-epoch RNG streams."""
    return (seed * _MIX * _MIX + epoch * _MIX + stream) % (2**63 - 1)


def shard_order(order: Tensor, world_size: int, rank: int) -> Tensor:
    """Rank ``rank``'s part of an epoch's ``order``: padded by wrapping to a multiple of
    ``world_size``, then every ``world_size``-th element from ``rank``.

    Returns:
        (ceil(len(order) / world_size),); the parts of all ranks cover every element.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    n = order.shape[0]
    total = math.ceil(n / world_size) * world_size
    if total > n:
        order = torch.cat([order, order[: total - n]])
    return order[rank::world_size]


class Batches:
    """Mini-batches of one data source on one device, checked against the pixel contract.

    Args:
        data: see the module docstring.
        batch_size: batch size (the last batch may be smaller).
        device: device the batches are moved to.
        what: "training data" / "validation data", for error messages.
        dtype: float dtype the images are cast to (the model's).
        shard: ``(rank, world_size)``: this process's shard of every epoch (DDP).
    """

    def __init__(
        self, data: Any, batch_size: int, device: torch.device, what: str, *,
        dtype: torch.dtype = torch.float32, shard: tuple[int, int] | None = None,
    ) -> None:  # fmt: skip
        self.batch_size = batch_size
        self.device = device
        self.what = what
        self.dtype = dtype
        self.shard = shard
        self.num_classes: int | None = None
        self.tensors: tuple[Tensor, Tensor] | None = None
        self.dataset: Any = None
        self.loader: Any = None
        # per-epoch draws and augmentation (robustact.data.EpochData) keep their own batches
        self.source: Any = data if callable(getattr(data, "epoch_indices", None)) else None
        if self.source is None and hasattr(data, "tensors") and callable(data.tensors):
            data = data.tensors()
        if self.source is not None:
            pass
        elif (
            isinstance(data, (tuple, list))
            and len(data) == 2
            and all(isinstance(t, Tensor) for t in data)
        ):
            check_batch(data[0], data[1], what=what, any_float=True)
            self.tensors = (data[0].to(device, dtype), data[1].to(device))
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

    def set_num_classes(self, num_classes: int | None) -> None:
        """Check labels against the model's class count (tensors now, other data per batch)."""
        self.num_classes = num_classes
        if self.tensors is not None and num_classes is not None:
            check_batch(*self.tensors, num_classes, what=self.what, any_float=True)

    @property
    def exact_order(self) -> bool:
        """True when the batch order depends only on (seed, epoch)."""
        return self.loader is None

    @property
    def total_samples(self) -> int | None:
        """Number of samples of the whole data (all shards), when known."""
        if self.tensors is not None:
            return int(self.tensors[1].shape[0])
        if self.dataset is not None or self.source is not None:
            return len(self.dataset if self.source is None else self.source)
        return None

    @property
    def num_samples(self) -> int | None:
        """Number of samples this process iterates per epoch (its shard), when known."""
        n = self.total_samples
        if n is None or self.shard is None:
            return n
        return math.ceil(n / self.shard[1])

    def __len__(self) -> int:
        n = self.num_samples
        if n is not None:
            return -(-n // self.batch_size)
        return len(self.loader) if isinstance(self.loader, Sized) else 1

    def _order(self, seed: int | None) -> Tensor | None:
        n = self.total_samples
        assert n is not None
        order = None
        if seed is not None:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        if self.shard is not None:
            order = shard_order(torch.arange(n) if order is None else order, self.shard[1],
                                self.shard[0])  # fmt: skip
        return order

    def epoch(self, seed: int | None) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches of one epoch; shuffled by ``seed`` (None: in order)."""
        if self.loader is not None:
            for b in self.loader:
                yield self._checked(b[0], b[1])
            return
        if self.source is not None:
            yield from self._source_epoch(seed)
            return
        order = self._order(seed)
        m = self.num_samples
        assert m is not None
        if self.tensors is not None:
            x, y = self.tensors
            if order is not None:
                order = order.to(x.device)
            for i in range(0, m, self.batch_size):
                if order is None:
                    yield x[i : i + self.batch_size], y[i : i + self.batch_size]
                else:
                    idx = order[i : i + self.batch_size]
                    yield x[idx], y[idx]
            return
        idxs = list(range(m)) if order is None else order.tolist()
        for i in range(0, m, self.batch_size):
            items = [self.dataset[j] for j in idxs[i : i + self.batch_size]]
            xb = torch.stack([torch.as_tensor(it[0]) for it in items])
            yb = torch.stack([torch.as_tensor(it[1]) for it in items])  # no int(): 2.7 is refused
            yield self._checked(xb, yb)

    def _source_epoch(self, seed: int | None) -> Iterator[tuple[Tensor, Tensor]]:
        rows = self.source.epoch_indices(seed)
        if self.shard is not None:
            rows = shard_order(rows, self.shard[1], self.shard[0])
        for b, i in enumerate(range(0, rows.shape[0], self.batch_size)):
            sub = None if seed is None else epoch_seed(seed, b, stream=3)
            yield self._checked(*self.source.batch(rows[i : i + self.batch_size], sub))

    def _checked(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        check_batch(x, y, self.num_classes, what=self.what, any_float=True)
        return (x.to(self.device, self.dtype, non_blocking=True),
                y.to(self.device, non_blocking=True))  # fmt: skip

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.epoch(None)
