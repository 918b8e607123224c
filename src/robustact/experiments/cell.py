"""Run one experiment cell: data, model, objective, training, evaluation, store.

``run_cell(config)`` does the work and returns what to store; ``execute_cell(config,
store_path)`` wraps it for workers: claim the cell in the store, run it, and commit its
metrics in one transaction (or record the error, so the other cells carry on).

The evaluation (protocols × eps, masking report, diagnostics) is
:func:`robustact.evaluate.suite.evaluate_suite`; its typed rows
(:mod:`robustact.evaluate.rows`) and :func:`training_rows` are what a cell stores.

Accuracies are fractions in [0, 1], as :class:`~robustact.evaluate.EvalResult` gives them.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustact.data import load_dataset
from robustact.evaluate.suite import build_protocol, evaluate_suite
from robustact.experiments import builders as B
from robustact.experiments._celldata import init_weights, split_and_wrap
from robustact.experiments._cellextras import (
    apply_transform,
    defended_model,
    load_trained,
    publish_trained,
)
from robustact.experiments.claims import Heartbeat
from robustact.experiments.records import MetricRow, cell_id
from robustact.experiments.store import ResultStore

__all__ = [
    "CellOutput",
    "CellResult",
    "PreparedCell",
    "build_protocol",
    "execute_cell",
    "finish_cell",
    "prepare_cell",
    "run_cell",
    "training_rows",
]


@dataclass
class CellOutput:
    """What a finished cell stores: metric rows, extra JSON and the checkpoint path."""

    metrics: list[MetricRow]
    extra: dict[str, Any]
    checkpoint: str | None


@dataclass(frozen=True)
class CellResult:
    """How one cell ended in a worker: "done", "failed" or "skipped" (done or claimed)."""

    cell_id: str
    status: str
    error: str | None = None
    seconds: float = 0.0
    label: str = ""


@dataclass
class _Timer:
    seconds: dict[str, float] = field(default_factory=dict)

    def lap(self, name: str, t0: float) -> float:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - t0
        return now


@dataclass
class PreparedCell:
    """A cell ready to train: its data, model, objective and TrainConfig."""

    config: Mapping[str, Any]
    cell_id: str
    seed: int
    train: Any  # ImageDataset
    val: Any
    test: Any
    input_shape: tuple[int, int, int]
    num_classes: int
    model: torch.nn.Module
    objective: Any  # Objective
    train_config: Any  # TrainConfig
    device: torch.device
    timer: _Timer = field(default_factory=_Timer)
    t0: float = 0.0


def prepare_cell(
    config: Mapping[str, Any],
    *,
    data_root: str | os.PathLike[str] | None = None,
    device: str | None = None,
    progress: bool = False,
) -> PreparedCell:
    """Load the cell's data (seeded 80/20 train/val split unless ``val_fraction`` says;
    augmented or mixed with generated images as ``training`` says), build its model (seeded, with
    the activation placed) on ``device``, its objective and TrainConfig."""
    t = _Timer()
    t0 = time.perf_counter()
    seed = int(config["seed"])
    training = config["training"]
    ds_cfg = dict(config["dataset"])
    name = str(ds_cfg.pop("name"))
    root = None if data_root is None else os.fspath(data_root)
    full = load_dataset(name, root=root, split="train", **ds_cfg)
    test = load_dataset(name, root=root, split="test", **ds_cfg)
    train, val = split_and_wrap(full, test, training, seed, root, name)
    t0 = t.lap("data", t0)
    dev = torch.device(device or "cpu")
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)  # same init in every process, caller's RNG untouched
        model = B.build_model(
            config["model"], config["activation"], full.input_shape, full.num_classes,
            example_input=train.tensors()[0][:8],
            init=functools.partial(init_weights, init=training.get("init"), root=root),
        )  # fmt: skip
        model = apply_transform(model, config.get("transform")).to(dev)
    tcfg = B.build_train_config(training, seed, progress=progress, device=str(dev))
    objective = B.build_objective(config["objective"], tcfg.epochs)
    shape = (int(full.input_shape[0]), int(full.input_shape[1]), int(full.input_shape[2]))
    return PreparedCell(
        config, cell_id(config), seed, train, val, test, shape, int(full.num_classes), model,
        objective, tcfg, dev, t, time.perf_counter(),
    )  # fmt: skip


def run_cell(
    config: Mapping[str, Any],
    *,
    data_root: str | os.PathLike[str] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    progress: bool = False,
) -> CellOutput:
    """Train and evaluate one cell (see :meth:`robustact.experiments.spec.Spec.cells`).

    Args:
        config: the cell's config (plain JSON).
        data_root: folder holding the datasets (None: the readers' default roots).
        output_dir: checkpoints go to ``output_dir/<cell id>/model.safetensors`` (the
            per-epoch training state in ``.../train`` lets a killed cell resume) and are
            shared under ``output_dir/_trained/<train id>`` with the cells that differ only
            after training, which then load instead of training; None: no checkpoint.
        device: where to train and evaluate ("cpu", "cuda:0"; None: CPU).
        progress: show the training progress bar.
    Returns:
        :class:`CellOutput`.
    """
    from robustact.train import fit

    prep = prepare_cell(config, data_root=data_root, device=device, progress=progress)
    cell_dir = None if output_dir is None else Path(output_dir) / prep.cell_id
    # cells that differ only after training (swap, preprocess, evaluation) share one run
    history = load_trained(prep.model, config, output_dir)
    if history is not None:
        out = finish_cell(prep, history, output_dir)
        out.extra["shared_training"] = True
        return out
    history = fit(
        prep.model, prep.objective, prep.train, prep.train_config, val_data=prep.val,
        checkpoint_dir=None if cell_dir is None else cell_dir / "train",
        resume=cell_dir is not None,
    )  # fmt: skip
    out = finish_cell(prep, history, output_dir)
    publish_trained(out.checkpoint, config, output_dir)
    return out


def save_cell_checkpoint(
    path: str | os.PathLike[str], prep: PreparedCell, history: Any, extra: Mapping[str, Any]
) -> Path:
    """Save ``prep.model`` (its ``robustact_config`` records the cell's surgery and
    transform, so ``robustact.train.load_checkpoint`` alone rebuilds it) with the cell
    config, its id, input shape and class count in the sidecar, plus ``extra``."""
    from robustact.train import save_checkpoint

    fields = {"cell": dict(prep.config), "cell_id": prep.cell_id,
              "input_shape": list(prep.input_shape), "num_classes": prep.num_classes}  # fmt: skip
    return save_checkpoint(path, prep.model, objective=prep.objective, config=prep.train_config,
                           history=history, extra={**fields, **extra})  # fmt: skip


def training_rows(history: Any, seconds: float) -> list[MetricRow]:
    """Typed rows (kind "training") of a finished training: the last epoch's loss,
    val_loss, val_acc and val_robust_acc, the number of epochs and the training seconds
    (attack "final"); and the best val_acc and val_robust_acc over the epochs, each its own
    maximum (attack "best": the BReLU paper's Table 1 reports these)."""
    last = history.last if len(history) else {}
    keys = ("loss", "val_loss", "val_acc", "val_robust_acc")
    vals = {k: last[k] for k in keys if isinstance(last.get(k), float)}
    vals.update(epochs=float(len(history)), seconds=seconds)
    rows = [MetricRow("training", "final", k, v, kind="training") for k, v in vals.items()]
    for k in ("val_acc", "val_robust_acc"):
        seen = [float(r[k]) for r in history.records if isinstance(r.get(k), float)]
        if seen:
            rows.append(MetricRow("training", "best", k, max(seen), kind="training"))
    return rows


def finish_cell(
    prep: PreparedCell, history: Any, output_dir: str | os.PathLike[str] | None
) -> CellOutput:
    """After training: save the checkpoint, evaluate under every protocol and eps, run the
    masking report, and gather the metric rows and extra JSON."""
    t = prep.timer
    t.lap("train", prep.t0)
    model, dev, seed = prep.model, prep.device, prep.seed
    ckpt = None
    if output_dir is not None:
        cell_dir = Path(output_dir) / prep.cell_id
        ckpt = save_cell_checkpoint(
            cell_dir / "model.safetensors",
            prep,
            history,
            extra={"stopped_early": history.stopped_early},
        )
        shutil.rmtree(cell_dir / "train", ignore_errors=True)  # only needed to resume
    model.eval()
    ev = prep.config["evaluation"]
    # swaps and preprocessing act on the trained classifier (the checkpoint holds it bare)
    model, defence = defended_model(model, prep.config, prep.train.tensors()[0], seed)
    x, y = prep.test.tensors()
    if ev.get("n"):
        x, y = x[: ev["n"]], y[: ev["n"]]
    suite = evaluate_suite(
        model, x.to(dev), y.to(dev), protocols=list(ev["protocols"]),
        eps=[float(e) for e in ev["eps"]], norm=ev["norm"], fast=bool(ev["fast"]), seed=seed,
        batch_size=int(ev["batch_size"]), masking=bool(ev.get("masking", True)),
        diagnostics=list(ev.get("diagnostics") or ()), history=history.records,
    )  # fmt: skip
    for k, v in suite.seconds.items():
        t.seconds[k] = t.seconds.get(k, 0.0) + v
    rows = suite.rows + training_rows(history, t.seconds["train"])
    extra: dict[str, Any] = {
        "history": history.to_dict()["records"],
        "stopped_early": history.stopped_early,
        "timings": t.seconds,
        "evaluations": suite.to_dict()["evaluations"],
        "n_train": len(prep.train), "n_val": len(prep.val), "n_test": len(y),
        "device": str(dev),
        "checkpoint": None if ckpt is None else str(ckpt),
    }  # fmt: skip
    if suite.masking:
        extra["masking"] = suite.masking_summary()
    if suite.diagnostics:
        extra["diagnostics"] = suite.diagnostics
    if defence:
        extra["defence"] = defence
    return CellOutput(rows, extra, None if ckpt is None else str(ckpt))


def execute_cell(
    config: Mapping[str, Any],
    store_path: str | os.PathLike[str],
    *,
    owner: str,
    spec_name: str | None = None,
    label: str = "",
    data_root: str | os.PathLike[str] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
) -> CellResult:
    """Claim, run and commit one cell; a raising cell is recorded as failed, not raised.

    The store is opened only to claim and to commit, so no connection is held for the
    hours a cell may take.
    """
    cid = cell_id(config)
    with ResultStore(store_path) as store:
        if not store.claim(config, owner=owner, spec=spec_name):
            return CellResult(cid, "skipped", label=label)
    start = time.time()
    try:
        with Heartbeat(store_path, cid, owner=owner):  # the claim stays live while we work
            out = run_cell(config, data_root=data_root, output_dir=output_dir, device=device)
    except Exception as e:  # any failure of the cell's own work: record it, carry on
        tb = traceback.extract_tb(e.__traceback__)
        where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
        msg = f"{type(e).__name__}: {e}{where}"
        with ResultStore(store_path) as store:
            store.fail_cell(config, msg, spec=spec_name)
        return CellResult(cid, "failed", msg, time.time() - start, label)
    with ResultStore(store_path) as store:
        store.put_cell(
            config, out.metrics, spec=spec_name, started_at=start, checkpoint=out.checkpoint,
            extra={**out.extra, "threads": torch.get_num_threads()},  # the numbers depend on it
        )  # fmt: skip
    return CellResult(cid, "done", None, time.time() - start, label)
