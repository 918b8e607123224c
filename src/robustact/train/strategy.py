"""Distribution strategies for :func:`robustact.train.fit`: one process, or DDP.

The training loop is written once; a strategy says only what differs when it runs on
several processes: the module the objective calls (the ``DistributedDataParallel``
wrapper, which averages gradients in ``backward``), each rank's shard of the epoch's
seeded order and its share of the batch, the all-reduce of the epoch's metrics (so every
rank keeps the same history and takes the same schedule and early-stopping decisions),
the per-rank seed of attack random starts, and which rank writes checkpoints.

With ``world_size`` ranks each takes ``batch_size // world_size`` points of every global
batch: batch ``i`` of all ranks together is batch ``i`` of the one-process run (the same
seeded permutation, strided over the ranks, as ``DistributedSampler`` does), so with an
even number of points and a deterministic objective DDP trains the same model up to
floating-point summation order.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustact.train._batches import Batches, epoch_seed

__all__ = ["DDP", "SingleProcess", "Strategy", "get_strategy"]


class Strategy:
    """Base class and the one-process default: every hook is the identity."""

    name = "none"
    rank = 0
    world_size = 1

    @property
    def is_writer(self) -> bool:
        """True on the process that writes checkpoints and shows progress (rank 0)."""
        return self.rank == 0

    def check_data(self, train: Batches) -> None:
        """Refuse data this strategy cannot split (nothing to refuse for one process)."""

    def shard(self) -> tuple[int, int] | None:
        """``(rank, world_size)`` of this process's shard of every epoch (None: all data)."""
        return None

    def batch_size(self, global_batch: int) -> int:
        """This process's share of a global batch."""
        return global_batch

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module objectives call (gradients flow into ``model``'s parameters)."""
        return model

    def seed(self, seed: int, epoch: int) -> int:
        """Seed of the epoch's training randomness (attack starts, dropout) on this rank."""
        return epoch_seed(seed, epoch, stream=1)

    def before_validation(self, seed: int, epoch: int) -> None:
        """Called before validation (DDP: the same seed on every rank)."""

    def reduce_means(
        self, means: dict[str, float], n: int, device: torch.device
    ) -> dict[str, float]:
        """Sample-weighted means over all ranks of this rank's ``means`` over ``n`` points."""
        return means

    def barrier(self) -> None:
        """Wait for every rank (after the writer saved a checkpoint)."""


SingleProcess = Strategy


class DDP(Strategy):
    """``DistributedDataParallel`` over the initialised process group (gloo or nccl).

    Launch every rank with the same seeded model and data (``torchrun``; see
    :mod:`robustact.experiments.ddp` for the process-group setup).
    """

    name = "ddp"

    def __init__(self) -> None:
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "strategy 'ddp' needs an initialised process group; launch with torchrun and "
                "call robustact.experiments.ddp.init_distributed() first"
            )
        self._dist = dist
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    def check_data(self, train: Batches) -> None:
        if not train.exact_order:
            raise ValueError(
                "strategy 'ddp' shards the seeded order of tensors or a dataset; pass those, "
                "not a DataLoader"
            )

    def shard(self) -> tuple[int, int] | None:
        return self.rank, self.world_size

    def batch_size(self, global_batch: int) -> int:
        return max(1, global_batch // self.world_size)

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        dev = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None)

    def seed(self, seed: int, epoch: int) -> int:
        # attack random starts differ per rank, like their data; the weights do not
        return epoch_seed(seed, epoch, stream=1 if self.rank == 0 else 16 + self.rank)

    def before_validation(self, seed: int, epoch: int) -> None:
        # every rank validates on all of val: the same draws give the same numbers
        torch.manual_seed(epoch_seed(seed, epoch, stream=2))

    def reduce_means(
        self, means: dict[str, float], n: int, device: torch.device
    ) -> dict[str, float]:
        keys = sorted(means)
        buf = torch.tensor([means[k] * n for k in keys] + [float(n)], dtype=torch.float64,
                           device=device)  # fmt: skip
        self._dist.all_reduce(buf)
        return {k: float(buf[i] / buf[-1]) for i, k in enumerate(keys)}

    def barrier(self) -> None:
        self._dist.barrier()


def get_strategy(strategy: Any) -> Strategy:
    """A :class:`Strategy` from an instance, None / ``"none"`` or ``"ddp"``."""
    if strategy is None or strategy == "none":
        return Strategy()
    if isinstance(strategy, Strategy):
        return strategy
    if strategy == "ddp":
        return DDP()
    raise ValueError(f"unknown distribution strategy {strategy!r}; use None, 'none' or 'ddp'")
