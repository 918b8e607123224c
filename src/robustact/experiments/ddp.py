"""One cell's training spread over several processes with DistributedDataParallel.

Launch with ``torchrun``::

    torchrun --standalone --nproc_per_node=2 -m robustact.experiments.ddp \\
        --config cell.json --output-dir runs/ckpt --store results.sqlite

``cell.json`` holds one cell config (``Spec.cells()[i].config``). Every rank loads the same
data and builds the same seeded model; this module only sets up the process group
(:func:`init_distributed`: gloo on CPU, nccl on CUDA) and trains with the one training
loop, ``robustact.train.fit(..., strategy="ddp")`` (see ``robustact.train.strategy``: each
rank takes its shard of every epoch's seeded permutation, as :func:`shard_indices` shows,
DDP averages the gradients, so all ranks keep identical weights, and rank 0 writes the
per-epoch training state, so ``--output-dir`` runs resume). Rank 0 then saves the
checkpoint, evaluates the model and commits the cell to the store.

``config.batch_size`` is the global batch: each rank takes ``batch_size // world_size``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from robustact.train._batches import epoch_seed, shard_order

__all__ = ["init_distributed", "main", "shard_indices"]


def shard_indices(n: int, world_size: int, rank: int, seed: int, epoch: int) -> Tensor:
    """Rank ``rank``'s indices of an epoch under DDP: the one-process run's permutation
    seeded by (seed, epoch), padded by wrapping to a multiple of ``world_size``, every
    ``world_size``-th element from ``rank``.

    Returns:
        (ceil(n / world_size),) int64; the shards of all ranks cover every index.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
    return shard_order(perm, world_size, rank)


def init_distributed(device: str | None = None) -> tuple[int, int, torch.device]:
    """Join the process group torchrun describes in the environment (``env://``).

    Returns:
        ``(rank, world_size, device)``: given a CUDA device name each rank takes
        GPU number ``LOCAL_RANK`` and the nccl backend, otherwise the CPU and gloo.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RuntimeError(
            "no distributed environment (RANK/WORLD_SIZE unset): launch with "
            "torchrun --standalone --nproc_per_node=N -m robustact.experiments.ddp ..."
        )
    use_cuda = device is not None and device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for but CUDA is not available")
    dev = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", init_method="env://")
    return dist.get_rank(), dist.get_world_size(), dev


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m robustact.experiments.ddp --config cell.json`` under torchrun."""
    p = argparse.ArgumentParser(prog="python -m robustact.experiments.ddp", description=__doc__)
    p.add_argument("--config", required=True, help="a cell config (JSON)")
    p.add_argument("--output-dir", default=None, help="checkpoint folder (rank 0 writes)")
    p.add_argument("--store", default=None, help="results SQLite file (rank 0 commits)")
    p.add_argument("--data-root", default=None, help="dataset folder")
    p.add_argument("--device", default="cpu", help='"cpu" (gloo) or "cuda" (nccl)')
    p.add_argument("--spec-name", default=None, help="spec name recorded with the cell")
    args = p.parse_args(argv)
    try:
        config = json.loads(Path(args.config).read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"error: cannot read cell config {args.config}: {e}", file=sys.stderr)
        return 2
    from robustact.experiments.cell import finish_cell, prepare_cell
    from robustact.experiments.store import ResultStore
    from robustact.train import fit

    try:
        rank, world, dev = init_distributed(args.device)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        prep = prepare_cell(config, data_root=args.data_root, device=str(dev))
        state_dir = None if args.output_dir is None else Path(args.output_dir) / prep.cell_id
        history = fit(
            prep.model, prep.objective, prep.train, prep.train_config, val_data=prep.val,
            checkpoint_dir=None if state_dir is None else state_dir / "train",
            resume=state_dir is not None, strategy="ddp",
        )  # fmt: skip
        if rank == 0:
            out = finish_cell(prep, history, args.output_dir)
            out.extra["world_size"] = world
            if args.store:
                with ResultStore(args.store) as store:
                    store.put_cell(config, out.metrics, spec=args.spec_name,
                                   checkpoint=out.checkpoint, extra=out.extra)  # fmt: skip
            print(f"cell {prep.cell_id} trained on {world} processes; checkpoint {out.checkpoint}")
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
