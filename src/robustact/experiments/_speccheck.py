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
    g = spec.grid
    live = g.live()
    if not live:
        ctx.err("grid.exclude", "excludes every cell; nothing would run")
        return
    models: dict[int, nn.Module] = {}
    for d, m in sorted({(d, m) for d, m, *_ in live}):
        shape = dataset_shape(g.datasets[d].config)
        if shape is None:
            continue
        try:
            models.setdefault(m, meta_model(g.models[m], shape))
        except _BUILD_ERRORS as e:
            ctx.err(
                g.models[m].path,
                f'model "{g.models[m].name}" cannot take the {shape} images of dataset '
                f'"{g.datasets[d].name}" ({g.datasets[d].path}): {_first_line(e)}',
            )
    for m, a in sorted({(m, a) for _, m, a, *_ in live}):
        _check_placement(g.models[m], g.activations[a], models.get(m), ctx)
    epochs = int(spec.training.get("epochs", TrainConfig().epochs))
    for a, o in sorted({(a, o) for _, _, a, o, _ in live}):
        act, obj = g.activations[a], g.objectives[o]
        if B.uses_drelu_penalty(obj.config) and act.name != "drelu":
            ctx.err(
                obj.path,
                f"the D-ReLU cap penalty needs a D-ReLU in the model, but activation "
                f'"{act.label}" ({act.path}) has none; use a drelu activation or add '
                f"{{activation: {act.name}, objective: {obj.name}}} to grid.exclude",
            )
    for obj in {id(g.objectives[o]): g.objectives[o] for *_, o, _ in live}.values():
        if obj.name == "two_phase" and obj.config.get("switch_epoch", 0) >= epochs:
            ctx.err(
                P.join(obj.path, "switch_epoch"),
                f"switches at epoch {obj.config['switch_epoch']} but training runs "
                f"{epochs} epochs; use a smaller switch_epoch or switch_fraction",
            )


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
