"""One cell's training spread over several processes with DistributedDataParallel.

Launch with ``torchrun``::

    torchrun --standalone --nproc_per_node=2 -m robustact.experiments.ddp \\
        --config cell.json --output-dir runs/ckpt --store results.sqlite

``cell.json`` holds one cell config (``Spec.cells()[i].config``). Every rank loads the same
data and builds the same seeded model; :func:`fit_ddp` wraps it in
``DistributedDataParallel`` (gloo on CPU, nccl on CUDA), gives each rank its own shard of
every epoch's seeded permutation (as ``DistributedSampler`` does: one permutation per
epoch, padded to a multiple of the world size, rank ``r`` takes every ``world``-th index
from ``r``), and DDP averages the gradients, so all ranks keep identical weights. Rank 0
then saves the checkpoint, evaluates the model and commits the cell to the store.

``config.batch_size`` is the global batch: each rank takes ``batch_size // world_size``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from robustact.train import EarlyStopping, History, Objective, TrainConfig, build_optimizer
from robustact.train.loop import cap_stats
from robustact.train.schedules import Schedule, current_lrs

__all__ = ["fit_ddp", "init_distributed", "main", "shard_indices"]

_MIX = 1_000_003


def shard_indices(n: int, world_size: int, rank: int, seed: int, epoch: int) -> Tensor:
    """Rank ``rank``'s indices of an epoch: a permutation seeded by (seed, epoch), padded by
    wrapping to a multiple of ``world_size``, every ``world_size``-th element from ``rank``.

    Returns:
        (ceil(n / world_size),) int64; the shards of all ranks cover every index.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    g = torch.Generator().manual_seed((seed * _MIX + epoch) % (2**63 - 1))
    perm = torch.randperm(n, generator=g)
    total = math.ceil(n / world_size) * world_size
    if total > n:
        perm = torch.cat([perm, perm[: total - n]])
    return perm[rank::world_size]


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


def _tensors(data: Any) -> tuple[Tensor, Tensor]:
    if hasattr(data, "tensors") and callable(data.tensors):
        x, y = data.tensors()
    elif isinstance(data, Sequence) and len(data) == 2:
        x, y = data
    else:
        raise TypeError("data must be an ImageDataset or an (x, y) pair of tensors")
    return x, y.long()


def _all_mean(values: dict[str, float], n: int, device: torch.device) -> dict[str, float]:
    """Sample-weighted means over all ranks of per-rank means ``values`` over ``n`` points."""
    keys = sorted(values)
    buf = torch.tensor([values[k] * n for k in keys] + [float(n)], dtype=torch.float64,
                       device=device)  # fmt: skip
    dist.all_reduce(buf)
    return {k: float(buf[i] / buf[-1]) for i, k in enumerate(keys)}


@torch.no_grad()
def _evaluate(model: nn.Module, x: Tensor, y: Tensor, bs: int) -> tuple[float, float]:
    loss = correct = 0.0
    for i in range(0, len(y), bs):
        logits = model(x[i : i + bs])
        loss += float(F.cross_entropy(logits, y[i : i + bs], reduction="sum"))
        correct += float((logits.argmax(1) == y[i : i + bs]).sum())
    return loss / len(y), correct / len(y)


def fit_ddp(
    model: nn.Module,
    objective: Objective,
    data: Any,
    config: TrainConfig,
    *,
    val_data: Any = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    checkpoint_extra: dict[str, Any] | None = None,
) -> History:
    """Train ``model`` in place on every rank of the current process group.

    Args:
        model: the same (seeded) model on every rank, on this rank's device; DDP also
            broadcasts rank 0's weights when it wraps it.
        objective: the training objective (attacks inside it see the wrapped model).
        data: training data (ImageDataset or (x, y)), identical on every rank.
        config: TrainConfig; ``batch_size`` is the global batch.
        val_data: validation data, evaluated in full on every rank (so the plateau
            schedule, early stopping and the hybrid objective stay in step).
        checkpoint_path: rank 0 saves the trained model there (safetensors + sidecar).
        checkpoint_extra: more sidecar metadata.
    Returns:
        The per-epoch history (losses averaged over all ranks), the same on every rank.
    """
    if not dist.is_initialized():
        raise RuntimeError("fit_ddp needs an initialised process group (see init_distributed)")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = next(model.parameters()).device
    x, y = _tensors(data)
    val = None if val_data is None else _tensors(val_data)
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters()):
        with torch.no_grad():  # lazy D-ReLU caps must exist before DDP registers parameters
            model(x[:2].to(device))
    ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    per_rank = max(1, config.batch_size // world)
    steps = math.ceil(math.ceil(len(y) / world) / per_rank)
    optimizer = build_optimizer(model, config)
    schedule = Schedule(optimizer, config, steps)
    stopper = (
        EarlyStopping(config.early_stopping, config.min_delta) if config.early_stopping else None
    )
    history = History()
    val_batches = None if val is None else [
        (val[0][i : i + per_rank].to(device), val[1][i : i + per_rank].to(device))
        for i in range(0, len(val[1]), per_rank)
    ]  # fmt: skip
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        # attack random starts differ per rank (like their data); the weights do not
        torch.manual_seed((config.seed * _MIX + epoch) * 7 + rank)
        objective.on_epoch_start(epoch, config.epochs)
        lrs = current_lrs(optimizer)
        ddp.train()
        idx = shard_indices(len(y), world, rank, config.seed, epoch)
        sums: dict[str, float] = {}
        for i in range(0, len(idx), per_rank):
            b = idx[i : i + per_rank]
            xb, yb = x[b].to(device), y[b].to(device)
            loss, metrics = objective(ddp, xb, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # DDP all-reduces (averages) the gradients here
            if config.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            schedule.after_batch()
            for k, v in (("loss", loss), *metrics.items()):
                sums[k] = sums.get(k, 0.0) + float(v) * len(b)
        record: dict[str, Any] = {"epoch": epoch}
        record.update(_all_mean({k: v / len(idx) for k, v in sums.items()}, len(idx), device))
        if val is not None and val_batches is not None:
            model.eval()
            record["val_loss"], record["val_acc"] = _evaluate(
                model, val[0].to(device), val[1].to(device), per_rank
            )
            record.update(objective.on_epoch_end(model, val_batches))
        record.update(lrs)
        record["caps"] = cap_stats(model)
        record["monitored"] = record.get("val_loss", record["loss"])
        schedule.after_epoch(record["monitored"])
        record["seconds"] = time.perf_counter() - t0
        record["world_size"] = world
        history.records.append(record)
        if stopper is not None and stopper.step(record["monitored"]):
            history.stopped_early = True
            break
    model.eval()
    if checkpoint_path is not None and rank == 0:
        from robustact.train import save_checkpoint

        save_checkpoint(
            checkpoint_path, model, objective=objective, config=config, history=history,
            extra=checkpoint_extra,
        )  # fmt: skip
    dist.barrier()
    return history


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

    try:
        rank, world, dev = init_distributed(args.device)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        prep = prepare_cell(config, data_root=args.data_root, device=str(dev))
        history = fit_ddp(prep.model, prep.objective, prep.train, prep.train_config,
                          val_data=prep.val)  # fmt: skip
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
