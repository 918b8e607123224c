"""The training loop: ``fit(model, objective, data, config) -> History``."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustact._validate import is_int
from robustact.activations import cap_parameters
from robustact.progress import Task, progress_enabled, task
from robustact.train._batches import Batches, epoch_seed
from robustact.train.checkpoint import (
    CheckpointError,
    latest_training_state,
    load_training_state,
    prune_orphans,
    save_training_state,
)
from robustact.train.config import TrainConfig
from robustact.train.history import History, batch_means, cap_stats, peak_mem_mb
from robustact.train.objectives import Objective, get_objective
from robustact.train.schedules import (
    EarlyStopping,
    Schedule,
    build_optimizer,
    current_lrs,
    unjsonable,
)
from robustact.train.strategy import Strategy, get_strategy

#: Config fields that may change between a run and its resumption.
_RESUMABLE_CHANGES = {"epochs", "progress", "device", "extra"}

EpochCallback = Callable[[int, dict[str, Any]], "bool | None"]


@torch.no_grad()
def _evaluate(model: nn.Module, batches: Batches) -> tuple[float, float]:
    loss_sum = torch.zeros((), device=batches.device)
    correct = torch.zeros((), device=batches.device)
    n = 0
    for x, y in batches:
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        n += y.shape[0]
    return float(loss_sum) / n, float(correct) / n


def robust_accuracy(model: nn.Module, batches: Batches, attack: Any) -> float:
    """Accuracy (fraction) on ``attack(model, x, y)`` over ``batches``; model in eval mode."""
    correct, n = 0.0, 0
    for x, y in batches:
        x_adv = attack(model, x, y)
        with torch.no_grad():
            correct += float((model(x_adv).argmax(1) == y).sum())
        n += y.shape[0]
    return correct / n


def _val_attack(config: TrainConfig) -> Any:
    if config.val_attack is None:
        return None
    from robustact.attacks import get_attack
    from robustact.train.adversary import TrainingPGD

    if config.val_attack == "fgsm":
        return get_attack("fgsm", eps=config.val_eps)
    # all steps for every point, as the training attack (BReLU paper: the validation
    # PGD-7 uses the training hyper-parameters); the step is configuration
    step = config.val_step_size
    return TrainingPGD(
        eps=config.val_eps, steps=config.val_steps, random_start=True,
        step_size=2.5 * config.val_eps / config.val_steps if step is None else step,
    )  # fmt: skip


@contextmanager
def _progress(enabled: bool, total_epochs: int) -> Iterator[Task]:
    """The run's row in the shared progress display (epochs, with the run's ETA); silent
    when ``config.progress`` is off, off a terminal, or on a non-writer DDP rank."""
    with progress_enabled(None if enabled else False), task("training", total=total_epochs) as t:
        yield t


class DivergenceError(FloatingPointError):
    """Training diverged: the epoch's loss is NaN or infinite (a user error: lower the
    learning rate or clip gradients). The CLI reports it in one line with exit status 2."""


@dataclass
class _Run:
    """Everything one training run shares between its epochs."""

    model: nn.Module
    net: nn.Module  # what the objective calls: the model, or its DDP wrapper
    objective: Objective
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    train: Batches
    val: Batches | None
    val_attack: Any
    config: TrainConfig
    strategy: Strategy
    bar: Task | None = None
    batches: Task | None = None


def fit(
    model: nn.Module,
    objective: Objective | str,
    data: Any,
    config: TrainConfig | None = None,
    *,
    val_data: Any = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    on_epoch_end: EpochCallback | None = None,
    strategy: Strategy | str | None = None,
) -> History:
    """Train ``model`` in place and return its per-epoch history.

    Args:
        model: any classifier (N, C, H, W) -> (N, K); trained on ``config.device`` (default:
            where its parameters are).
        objective: an :class:`~robustact.train.objectives.Objective` or a registered name.
        data: training data: ``(x, y)`` tensors, a dataset or an iterable of batches; images
            float in [0, 1], labels int64 in [0, K) (checked; see ``train._batches``).
        config: :class:`TrainConfig` (default ``TrainConfig()``); ``batch_size`` is the
            global batch under DDP.
        val_data: optional validation data (same forms); monitored by the plateau schedule
            and early stopping (otherwise they monitor the training loss).
        checkpoint_dir: write the training state there after every epoch (DDP: rank 0).
        resume: continue from the newest state in ``checkpoint_dir``; with the same seed
            and tensor/dataset data the result equals an uninterrupted run bit for bit.
        on_epoch_end: ``callback(epoch, record)`` after each epoch's checkpoint; returning
            True stops training (raising simulates a crash).
        strategy: None / ``"none"`` (one process) or ``"ddp"`` / a
            :class:`~robustact.train.strategy.Strategy` (see that module).

    Returns:
        :class:`History` (under DDP the same on every rank).
    Raises:
        DivergenceError: an epoch's loss is NaN or infinite.
        ValueError, TypeError: bad data (pixel contract), config or objective (one line).
    """
    config, objective, dist = _check_args(config, objective, strategy, resume, checkpoint_dir)
    first = next(iter(model.parameters()), None)
    device = torch.device(config.device) if config.device else (
        first.device if first is not None else torch.device("cpu")
    )  # fmt: skip
    model.to(device)
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    train = Batches(data, dist.batch_size(config.batch_size), device, "training data",
                    dtype=dtype, shard=dist.shard())  # fmt: skip
    val = None if val_data is None else Batches(
        val_data, config.batch_size, device, "val data", dtype=dtype
    )  # fmt: skip
    dist.check_data(train)
    _check_run(objective, config, train, val, checkpoint_dir, resume)
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters()):
        with torch.no_grad():  # materialise lazy layers (D-ReLU caps) before the optimiser
            model(next(iter(train.epoch(None)))[0][:2])
    for b in (train, val):
        if b is not None:
            b.set_num_classes(_num_classes(model, train))
    optimizer = build_optimizer(model, config)
    schedule = Schedule(optimizer, config, len(train))
    stopper = (
        EarlyStopping(config.early_stopping, config.min_delta) if config.early_stopping else None
    )
    history = History()
    start = 0
    if resume:
        start = _resume(
            checkpoint_dir, model, optimizer, schedule, stopper, objective, history, config
        )
    if start >= config.epochs or history.stopped_early:
        return history
    run = _Run(model, dist.wrap(model), objective, optimizer, schedule, train, val,
               _val_attack(config), config, dist)  # fmt: skip
    _epochs(run, start, stopper, history, checkpoint_dir, on_epoch_end)
    model.eval()
    return history


def _check_args(
    config: TrainConfig | None, objective: Objective | str, strategy: Any, resume: bool,
    checkpoint_dir: Any,
) -> tuple[TrainConfig, Objective, Strategy]:  # fmt: skip
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if isinstance(objective, str):
        objective = get_objective(objective)
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be an Objective or a name, got {type(objective).__name__}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir= (where the run saved its state)")
    return config, objective, get_strategy(strategy)


def _check_run(
    objective: Objective, config: TrainConfig, train: Batches, val: Batches | None,
    checkpoint_dir: Any, resume: bool,
) -> None:  # fmt: skip
    if objective.needs_validation and val is None:
        raise ValueError(f"objective {objective.name!r} needs val_data= (it measures on it)")
    expected = getattr(objective, "expected_epochs", None)
    if expected is not None and expected != config.epochs:
        raise ValueError(
            f"objective {objective.name!r} spans {expected} epochs but config.epochs = "
            f"{config.epochs}; make them equal"
        )
    if checkpoint_dir is not None and not resume and latest_training_state(checkpoint_dir):
        raise ValueError(
            f"checkpoint_dir {checkpoint_dir} already holds a run's state; pass resume=True to "
            "continue it or use an empty directory"
        )
    if resume and not train.exact_order:
        warnings.warn(
            "resuming with a user DataLoader: its order is not restored, so the result will "
            "differ from an uninterrupted run; pass tensors or a dataset for exact resumption",
            stacklevel=3,
        )


def _num_classes(model: nn.Module, train: Batches) -> int | None:
    """The model's class count: its ``num_classes``, else the width of its logits on two
    training points (eval mode, RNG and mode restored); None for a one-shot loader."""
    k = getattr(model, "num_classes", None)
    if is_int(k):
        return k
    if not train.exact_order:
        return None
    x = next(iter(train.epoch(None)))[0][:2]
    was = model.training
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        model.eval()
        try:
            out = model(x)
        finally:
            model.train(was)
    return int(out.shape[-1]) if isinstance(out, Tensor) and out.dim() == 2 else None


def _epochs(
    run: _Run, start: int, stopper: EarlyStopping | None, history: History,
    checkpoint_dir: Any, on_epoch_end: EpochCallback | None,
) -> None:  # fmt: skip
    config, dist = run.config, run.strategy
    # fit seeds torch per epoch; fork_rng gives the caller back the RNG state it had
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    show = config.progress and dist.is_writer
    with torch.random.fork_rng(devices=devices), _progress(show, config.epochs) as bar:
        run.bar = bar
        for epoch in range(start, config.epochs):
            # all randomness of an epoch derives from (seed, epoch): resumption is exact
            torch.manual_seed(dist.seed(config.seed, epoch))
            record = _run_epoch(run, epoch)
            history.records.append(record)
            stop = False
            if stopper is not None:
                stop = stopper.step(record["monitored"])
                history.stopped_early = stop
            if checkpoint_dir is not None:
                if dist.is_writer:
                    _save_state(run, checkpoint_dir, epoch, stopper, history)
                dist.barrier()
            if on_epoch_end is not None and on_epoch_end(epoch, record):
                stop = True
            if stop:
                break


def _save_state(
    run: _Run, checkpoint_dir: Any, epoch: int, stopper: EarlyStopping | None, history: History
) -> None:
    state = {
        "schedule": run.schedule.state_dict(),
        "early_stopping": stopper.state_dict() if stopper else None,
        "objective": run.objective.state_dict(),
        "stopped_early": history.stopped_early,
    }
    save_training_state(
        checkpoint_dir, epoch, run.model, run.optimizer, state, objective=run.objective,
        config=run.config, history=history,
    )  # fmt: skip


def _train_steps(run: _Run, epoch: int) -> dict[str, float]:
    """One pass over this process's batches; the batch-weighted means of loss and metrics."""
    model, config, train, optimizer = run.model, run.config, run.train, run.optimizer
    model.train()
    caps = list(cap_parameters(model)) if config.min_cap is not None else []
    # per-batch values are only appended (no arithmetic, no device sync) and reduced once
    seen: dict[str, list[Tensor | float]] = {"loss": []}
    sizes: list[int] = []
    every = max(1, len(train) // 20)  # refresh the bar ~20 times per epoch (each syncs)
    for i, (x, y) in enumerate(train.epoch(epoch_seed(config.seed, epoch))):
        loss, metrics = run.objective(run.net, x, y)
        # zero after the objective: an attack inside it may have left parameter gradients
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # under DDP the gradients are averaged over the ranks here
        if config.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        if caps:
            with torch.no_grad():  # projected step: keep caps in their meaningful range
                for c in caps:
                    c.clamp_(min=config.min_cap)
        run.schedule.after_batch()
        sizes.append(y.shape[0])
        seen["loss"].append(loss.detach())
        for k, v in metrics.items():
            seen.setdefault(k, []).append(v)
        if run.batches is not None and (i + 1) % every == 0:
            run.batches.advance(every, **batch_means(seen, sizes))
    return run.strategy.reduce_means(batch_means(seen, sizes), sum(sizes), train.device)


def _run_epoch(run: _Run, epoch: int) -> dict[str, Any]:
    config, device = run.config, run.train.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    run.objective.on_epoch_start(epoch, config.epochs)
    lrs = current_lrs(run.optimizer)  # the rates this epoch starts with
    with task(f"epoch {epoch + 1}/{config.epochs}", total=len(run.train), transient=True) as b:
        run.batches = b
        record: dict[str, Any] = {"epoch": epoch, **_train_steps(run, epoch)}
        run.batches = None
    if not math.isfinite(record["loss"]):
        raise DivergenceError(
            f"training diverged: the loss became {record['loss']} in epoch {epoch}; lower "
            "the learning rate (config.lr) or set config.max_grad_norm"
        )
    if run.val is not None:
        run.model.eval()
        run.strategy.before_validation(config.seed, epoch)
        record["val_loss"], record["val_acc"] = _evaluate(run.model, run.val)
        if run.val_attack is not None:
            record["val_robust_acc"] = robust_accuracy(run.model, run.val, run.val_attack)
    record.update(run.objective.on_epoch_end(run.model, run.val))
    record.update(lrs)
    record["caps"] = cap_stats(run.model)
    record["monitored"] = record.get("val_loss", record["loss"])
    run.schedule.after_epoch(record["monitored"])
    record["seconds"] = time.perf_counter() - t0
    record["peak_mem_mb"] = peak_mem_mb(device)
    if run.strategy.world_size > 1:
        record["world_size"] = run.strategy.world_size
    if run.bar is not None:
        shown = {k: record[k] for k in ("loss", "acc", "val_loss", "val_acc") if k in record}
        run.bar.advance(1, **shown)
    return record


def _resume(
    checkpoint_dir: Any,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    stopper: EarlyStopping | None,
    objective: Objective,
    history: History,
    config: TrainConfig,
) -> int:
    prune_orphans(checkpoint_dir)  # tensor files of a save a kill interrupted
    side = latest_training_state(checkpoint_dir)
    if side is None:
        return 0  # nothing saved yet: a fresh run
    meta = load_training_state(side, model, optimizer)
    saved = dict(meta.get("config") or {})
    now = config.to_dict()
    diff = sorted(k for k in now if k not in _RESUMABLE_CHANGES and saved.get(k) != now[k])
    if diff:
        k = diff[0]
        raise CheckpointError(
            f"cannot resume {side}: config.{k} was {saved.get(k)!r}, now {now[k]!r}; "
            "use the run's original config (only epochs/progress/device may change)"
        )
    state = meta["state"]
    schedule.load_state_dict(state.get("schedule") or {})
    if stopper is not None and state.get("early_stopping"):
        stopper.load_state_dict(state["early_stopping"])
    objective.load_state_dict(state.get("objective") or {})
    history.records = list(unjsonable(meta.get("history") or []))
    history.stopped_early = bool(state.get("stopped_early", False))
    return int(meta["epoch"]) + 1
