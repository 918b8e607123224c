"""Checks that need several axes of a spec at once: combinations that cannot run.

Models are built on the ``meta`` device (no memory, no compute), so checking that a model
takes a dataset's images, or that a ``where:`` match selects something, costs little.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from robustact.experiments import _specparse as P
from robustact.experiments import builders as B
from robustact.models import default_input_shape
from robustact.surgery import replace_activations
from robustact.train import TrainConfig

if TYPE_CHECKING:
    from robustact.experiments.spec import Entry, Spec

_MNIST_LIKE = ("mnist", "mnist_t10k", "fashion_mnist", "fmnist", "kmnist", "emnist")

#: Errors a model constructor or forward pass raises on a shape it cannot take.
_BUILD_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, NotImplementedError)


def dataset_shape(cfg: dict[str, Any]) -> tuple[int, int, int] | None:
    """(C, H, W) of a dataset's images without loading it (None when unknown)."""
    name = cfg["name"]
    if name == "digits":
        size = int(cfg.get("size", 8))
        return (1, size, size)
    if name in _MNIST_LIKE:
        return (1, 28, 28)
    if name in ("cifar10", "cifar100", "svhn"):
        return (3, 32, 32)
    if name == "tinyimagenet":
        return (3, 64, 64)
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def meta_model(model: Entry, shape: tuple[int, int, int]) -> nn.Module:
    """The model on the meta device for images of ``shape`` (raises if it cannot be built
    or cannot take such images)."""
    with torch.device("meta"):
        m = B.build_model(model.config, {"name": "relu"}, shape, 10)
        m.eval()
        m(torch.empty(2, *shape))
    return m


def check_combinations(spec: Spec, ctx: P.Ctx) -> None:
    """Append an error for every combination of the kept cells that cannot run."""
    # the checks do not depend on the seed: one combination of the other axes is enough
    cells = [
        g.values((*combo, 0))
        for g in spec.grid.blocks()
        for combo in dict.fromkeys(idx[:-1] for idx in g.live())
    ]
    if not cells:
        ctx.err("grid.exclude", "excludes every cell; nothing would run")
        return
    models: dict[str, nn.Module] = {}
    seen: set[tuple[str, ...]] = set()

    def once(*entries: Entry) -> bool:
        key = tuple(e.path for e in entries)
        new = key not in seen
        seen.add(key)
        return new

    for v in cells:
        ds, model = v["dataset"], v["model"]
        shape = dataset_shape(ds.config)
        if shape is not None and once(ds, model):
            try:
                models.setdefault(model.path, meta_model(model, shape))
            except _BUILD_ERRORS as e:
                ctx.err(
                    model.path,
                    f'model "{model.name}" cannot take the {shape} images of dataset '
                    f'"{ds.name}" ({ds.path}): {_first_line(e)}',
                )
    for v in cells:
        model, act, obj = v["model"], v["activation"], v["objective"]
        if once(model, act):
            _check_placement(model, act, models.get(model.path), ctx)
        for key in ("transform", "swap"):
            if v[key].name != "none" and once(model, act, v[key]):
                _check_after(model, act, v[key], models.get(model.path), ctx)
        if once(act, obj) and B.uses_drelu_penalty(obj.config) and act.name != "drelu":
            ctx.err(
                obj.path,
                f"the D-ReLU cap penalty needs a D-ReLU in the model, but activation "
                f'"{act.label}" ({act.path}) has none; use a drelu activation or add '
                f"{{activation: {act.name}, objective: {obj.name}}} to grid.exclude",
            )
        training = {**spec.training, **model.config.get("training", {})}
        epochs = int(training.get("epochs", TrainConfig().epochs))
        switch = obj.config.get("switch_epoch", 0)
        if obj.name == "two_phase" and switch >= epochs and once(obj, model):
            ctx.err(
                P.join(obj.path, "switch_epoch"),
                f"switches at epoch {switch} but training runs "
                f"{epochs} epochs; use a smaller switch_epoch or switch_fraction",
            )


def _check_after(
    model: Entry, act: Entry, change: Entry, meta: nn.Module | None, ctx: P.Ctx
) -> None:
    """A transform's or swap's ``where``/``count`` must select activations; a cap swap
    needs caps."""
    if change.name == "cap":
        if act.name not in ("srelu", "drelu"):
            ctx.err(
                change.path,
                f'sets S-ReLU/D-ReLU caps, but activation "{act.label}" ({act.path}) has '
                "none; exclude the pair or swap in a capped activation",
            )
        return
    where = change.config.get("where")
    if "count" in change.config:
        where = list(range(int(change.config["count"])))
    if where is None or meta is None:
        return
    try:
        replace_activations(meta, "relu", B.where_match(where))
    except (ValueError, IndexError, TypeError) as e:
        key = "count" if "count" in change.config else "where"
        ctx.err(P.join(change.path, key), f'{_first_line(e)} (model "{model.name}", {model.path})')


def _check_placement(model: Entry, act: Entry, meta: nn.Module | None, ctx: P.Ctx) -> None:
    if act.config.get("insert") == "after_input" and B.model_family(model.name) == "mlp":
        ctx.err(
            P.join(act.path, "insert"),
            f'after_input inserts a conv layer after the input, but model "{model.name}" '
            f"({model.path}) is an MLP with no Conv2d; use insert: before_output",
        )
    if "where" not in act.config:
        return
    if meta is None:
        try:
            meta = meta_model(model, default_input_shape(model.name))
        except _BUILD_ERRORS:
            return  # reported by the shape check
    try:
        replace_activations(meta, "relu", B.where_match(act.config["where"]))
    except (ValueError, IndexError, TypeError) as e:
        ctx.err(
            P.join(act.path, "where"),
            f'{_first_line(e)} (model "{model.name}", {model.path})',
        )
