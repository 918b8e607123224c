"""Run one experiment cell: data, model, objective, training, evaluation, store.

``run_cell(config)`` does the work and returns what to store; ``execute_cell(config,
store_path)`` wraps it for workers: claim the cell in the store, run it, and commit its
metrics in one transaction (or record the error, so the other cells carry on).

Metric rows (``protocol, attack, metric, value, eps, norm``):

* ``(<protocol>, "clean", "accuracy", v, None, None)``, its Wilson interval and per-class rows;
* ``(<protocol>, "worst", "accuracy", v, eps, norm)``: the worst case over the protocol,
  with ``accuracy_ci_*``, ``robustness_gap``, ``success_rate``, ``mean_max_prob``, ...;
* ``(<protocol>, <attack label>, "accuracy" | "cumulative_accuracy" | ..., v, eps, norm)``;
* ``("masking", "checks", <check> | <check>/flagged | verdict, v, eps, norm)`` and
  ``("masking", <attack>, "accuracy", ...)`` from the masking report;
* ``("training", "final", "loss" | "val_loss" | "val_acc" | "epochs" | "seconds", v)``.

Accuracies are fractions in [0, 1], as :class:`~robustact.evaluate.EvalResult` gives them.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustact.data import load_dataset, train_val_split
from robustact.evaluate import EvalResult, Protocol, evaluate, get_protocol
from robustact.experiments import builders as B
from robustact.experiments._cellextras import (
    apply_transform,
    defended_model,
    load_trained,
    publish_trained,
    run_diagnostics,
)
from robustact.experiments.records import MetricRow, cell_id
from robustact.experiments.store import ResultStore

__all__ = [
    "CellOutput",
    "CellResult",
    "PreparedCell",
    "build_protocol",
    "execute_cell",
    "finish_cell",
    "metric_rows_of",
    "prepare_cell",
    "run_cell",
]

_VERDICT_ORDER = ("no evidence", "suspect", "masked")


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


def build_protocol(entry: Mapping[str, Any], eps: float, norm: str, fast: bool) -> Protocol:
    """A built-in protocol by name or a spec's custom attack list, at (eps, norm)."""
    if "attacks" not in entry:
        return get_protocol(str(entry["name"]), eps=eps, norm=norm, fast=fast)
    opts = {k: entry[k] for k in ("cascade", "eot_samples", "repeats") if k in entry}
    return Protocol.from_spec(
        list(entry["attacks"]), eps=eps, norm=norm, name=str(entry["name"]), fast=fast, **opts
    )


def metric_rows_of(result: EvalResult, *, with_clean: bool) -> list[MetricRow]:
    """Store rows of one evaluation (see the module docstring for the naming)."""
    proto, eps, norm = result.protocol, result.eps, result.norm
    rows: list[MetricRow] = []
    for name, v in result.metrics().items():
        if name.startswith("clean_acc"):
            if with_clean:
                rows.append(MetricRow(proto, "clean", "accuracy" + name[len("clean_acc") :], v))
        elif name.startswith("attack/"):
            _, label, metric = name.split("/", 2)
            metric = metric.replace("cumulative_acc", "cumulative_accuracy")
            metric = "accuracy" + metric[3:] if metric.startswith("acc") else metric
            rows.append(MetricRow(proto, label, metric, v, eps, norm))
        elif name.startswith("robust_acc"):
            rows.append(
                MetricRow(proto, "worst", "accuracy" + name[len("robust_acc") :], v, eps, norm)
            )
        else:
            rows.append(MetricRow(proto, "worst", name.removeprefix("adv_"), v, eps, norm))
    return rows


def _masking(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, fast: bool,
    seed: int,
) -> tuple[list[MetricRow], dict[str, Any]]:  # fmt: skip
    try:
        from robustact.evaluate.masking import masking_report
    except ImportError as e:  # the masking report is optional until it lands
        return [], {"eps": eps, "skipped": f"masking report unavailable: {e}"}
    rep = masking_report(model, x, y, eps=eps, norm=norm, fast=fast, seed=seed)
    rows = []
    for name, v in rep.metrics().items():
        parts = name.split("/")
        if len(parts) >= 3 and parts[1] == "acc":
            rows.append(MetricRow("masking", "/".join(parts[2:]), "accuracy", v, eps, norm))
        else:
            rows.append(MetricRow("masking", "checks", "/".join(parts[1:]), v, eps, norm))
    return rows, rep.to_dict()


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
    """Load the cell's data (seeded 80/20 train/val split), build its model (seeded, with
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
    train, val = train_val_split(full, float(training.get("val_fraction", 0.2)), seed)
    t0 = t.lap("data", t0)
    dev = torch.device(device or "cpu")
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)  # same init in every process, caller's RNG untouched
        model = B.build_model(
            config["model"], config["activation"], full.input_shape, full.num_classes,
            example_input=train.tensors()[0][:8],
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


def finish_cell(
    prep: PreparedCell, history: Any, output_dir: str | os.PathLike[str] | None
) -> CellOutput:
    """After training: save the checkpoint, evaluate under every protocol and eps, run the
    masking report, and gather the metric rows and extra JSON."""
    t = prep.timer
    t0 = t.lap("train", prep.t0)
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
    rows: list[MetricRow] = []
    evals: dict[str, Any] = {}
    for proto_cfg in ev["protocols"]:
        for i, eps in enumerate(ev["eps"]):
            proto = build_protocol(proto_cfg, float(eps), ev["norm"], bool(ev["fast"]))
            res = evaluate(model, x.to(dev), y.to(dev), protocol=proto,
                           batch_size=int(ev["batch_size"]), seed=seed)  # fmt: skip
            rows += metric_rows_of(res, with_clean=i == 0)
            evals[f"{proto.name}@{eps:g}"] = res.to_dict()
    t0 = t.lap("evaluate", t0)
    masking: list[dict[str, Any]] = []
    if ev.get("masking", True):
        m = min(len(y), 200)
        for eps in ev["eps"]:
            mrows, rep = _masking(model, x[:m].to(dev), y[:m].to(dev), float(eps), ev["norm"],
                                  bool(ev["fast"]), seed)  # fmt: skip
            rows += mrows
            masking.append(rep)
    t0 = t.lap("masking", t0)
    diag: dict[str, Any] = {}
    if ev.get("diagnostics"):
        drows, diag = run_diagnostics(
            model, x.to(dev), y.to(dev), ev["diagnostics"], eps=[float(e) for e in ev["eps"]],
            norm=ev["norm"], history=history.records, seed=seed,
        )  # fmt: skip
        rows += drows
        t.lap("diagnostics", t0)
    last = history.last if len(history) else {}
    for key in ("loss", "val_loss", "val_acc"):
        if isinstance(last.get(key), float):
            rows.append(MetricRow("training", "final", key, last[key]))
    rows.append(MetricRow("training", "final", "epochs", float(len(history))))
    rows.append(MetricRow("training", "final", "seconds", t.seconds["train"]))
    extra: dict[str, Any] = {
        "history": history.to_dict()["records"],
        "stopped_early": history.stopped_early,
        "timings": t.seconds,
        "evaluations": evals,
        "n_train": len(prep.train), "n_val": len(prep.val), "n_test": len(y),
        "device": str(dev),
        "checkpoint": None if ckpt is None else str(ckpt),
    }  # fmt: skip
    if masking:
        extra["masking"] = _summarise_masking(masking)
    if diag:
        extra["diagnostics"] = diag
    if defence:
        extra["defence"] = defence
    return CellOutput(rows, extra, None if ckpt is None else str(ckpt))


def _summarise_masking(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The most severe report's verdict and checks on top, every eps's report below."""
    done = [r for r in reports if "verdict" in r]
    if not done:
        return {"verdict": None, "by_eps": reports}
    worst = max(done, key=lambda r: _VERDICT_ORDER.index(r["verdict"]))
    return {
        "verdict": worst["verdict"], "reason": worst.get("reason"), "eps": worst.get("eps"),
        "checks": worst.get("checks"), "by_eps": reports,
    }  # fmt: skip


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
            extra=out.extra,
        )  # fmt: skip
    return CellResult(cid, "done", None, time.time() - start, label)
