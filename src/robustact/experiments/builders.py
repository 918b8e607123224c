"""Build the pieces of one experiment cell from its plain-JSON config.

A cell config (see :meth:`robustact.experiments.spec.Spec.cells`) holds only names, numbers
and lists, so it can be hashed, stored, sent to a worker process or a Ray task, or written
to ``cell.json`` for ``torchrun``. These functions turn its parts back into objects; spec
validation calls them too, so "builds here" and "validates" never drift apart.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from robustact.activations import get_activation
from robustact.attacks import ATTACKS, Attack
from robustact.models import create_model
from robustact.surgery import ACTIVATION_TYPES, insert_capped_layer, replace_activations
from robustact.train import (
    Adversarial,
    Objective,
    TrainConfig,
    TwoPhase,
    get_objective,
    with_penalty,
)
from robustact.train.adversary import TrainingPGD

__all__ = [
    "PLACEMENT_KEYS",
    "TRAIN_ONLY_ATTACKS",
    "activation_class",
    "activation_factory",
    "attack_names",
    "build_attack",
    "build_model",
    "build_objective",
    "build_train_config",
    "callable_params",
    "where_match",
]

#: Keys of an activation entry that say where it goes (the rest are its arguments).
PLACEMENT_KEYS = ("where", "insert", "width")

#: Attacks usable inside training objectives only (full-strength, no early exit).
TRAIN_ONLY_ATTACKS: dict[str, Callable[..., Attack]] = {"training_pgd": TrainingPGD}

#: Keys of a cell's ``training`` block that are not TrainConfig fields.
EXTRA_TRAINING_KEYS = ("val_fraction", "augment", "generated", "init")  # data: _celldata


def _load_attack_modules() -> None:
    # cw/square/zerograd register on import; robustact.attacks may not import them yet
    for mod in ("cw", "square", "zerograd"):
        try:
            importlib.import_module(f"robustact.attacks.{mod}")
        except ModuleNotFoundError:
            continue


def attack_names(training: bool = False) -> list[str]:
    """Registered attack names (plus the training-only ones when ``training``)."""
    _load_attack_modules()
    names = ATTACKS.names()
    return sorted([*names, *TRAIN_ONLY_ATTACKS]) if training else names


def callable_params(fn: Any) -> dict[str, inspect.Parameter]:
    """Named parameters of ``fn`` (a function, partial or class); for a class whose
    ``__init__`` forwards ``**kwargs`` the bases' parameters are included."""
    out: dict[str, inspect.Parameter] = {}
    owners = fn.__mro__ if isinstance(fn, type) else (fn,)
    for owner in owners:
        target = owner.__init__ if isinstance(owner, type) else owner  # type: ignore[misc]
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):
            break
        for n, p in params.items():
            if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                out.setdefault(n, p)
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return out


# --------------------------------------------------------------------------- activations


def activation_class(name: str) -> type[nn.Module]:
    """The module class registered as activation ``name``."""
    return type(get_activation(name))


def activation_factory(name: str, kwargs: Mapping[str, Any]) -> Callable[..., nn.Module]:
    """A factory ``(num_features=None) -> module`` for ``make_activation``."""
    cls = activation_class(name)
    return functools.partial(cls, **dict(kwargs)) if kwargs else cls


def where_match(where: Any) -> Any:
    """A spec's ``where`` (index, index list, glob/"re:" string or ``{type: name}``) as a
    ``surgery`` match."""
    if isinstance(where, Mapping):
        tname = str(where["type"])
        for t in ACTIVATION_TYPES:
            if t.__name__.lower() == tname.lower():
                return t
        return activation_class(tname)
    if isinstance(where, list):
        return [int(i) for i in where]
    return where


# --------------------------------------------------------------------------- model


def build_model(
    model_cfg: Mapping[str, Any],
    act_cfg: Mapping[str, Any],
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    example_input: torch.Tensor | None = None,
    init: Callable[[nn.Module], None] | None = None,
) -> nn.Module:
    """The cell's model: ``create_model`` plus the activation placed as the spec says.

    Args:
        model_cfg: ``{"name": ..., **options}``.
        act_cfg: ``{"name": ..., **kwargs, ["where": match | "insert": ..., "width": ...]}``;
            without ``where``/``insert`` every activation of the model is this one.
        input_shape: (C, H, W) of the images.
        num_classes: output logits.
        example_input: a batch (N, C, H, W) used to size per-unit activations (D-ReLU)
            placed by surgery and to materialise lazy parameters.
        init: called on the architecture before any surgery (e.g. loading a user's trained
            weights, which then get the D-ReLU layer inserted and are fine-tuned).
    """
    opts = {k: v for k, v in model_cfg.items() if k not in ("name", "training")}
    name = str(model_cfg["name"])
    c, h, w = input_shape
    if "input_size" in callable_params(_model_builder(name)):
        opts["input_size"] = (h, w)
    act_name = str(act_cfg["name"])
    act_kwargs = {k: v for k, v in act_cfg.items() if k not in ("name", *PLACEMENT_KEYS)}
    placed = "where" in act_cfg or "insert" in act_cfg
    act_layer: Any = None if placed else {"name": act_name, "kwargs": act_kwargs}
    model = create_model(name, num_classes=num_classes, in_channels=c, act_layer=act_layer, **opts)
    if init is not None:
        init(model)
    factory = activation_factory(act_name, act_kwargs)
    if "where" in act_cfg:
        model, _ = replace_activations(
            model, factory, where_match(act_cfg["where"]), example_input=example_input
        )
    elif "insert" in act_cfg:
        model, _ = insert_capped_layer(
            model, act_cfg["insert"], act_cfg.get("width"), activation=factory
        )
    if example_input is not None and any(
        isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters()
    ):
        was = model.training
        model.eval()
        with torch.no_grad():
            model(example_input[:2])
        model.train(was)
    return model  # its robustact_config records the surgery too: a checkpoint rebuilds it


def _model_builder(name: str) -> Callable[..., nn.Module]:
    from robustact.models._factory import _MODELS

    return _MODELS.get(name).builder


def model_family(name: str) -> str:
    """The registered family ("mlp", "cnn", "resnet", ...) of model ``name``."""
    from robustact.models._factory import _MODELS

    return _MODELS.get(name).family


def model_builder_params(name: str) -> dict[str, inspect.Parameter]:
    """Constructor parameters of model ``name``."""
    return callable_params(_model_builder(name))


# --------------------------------------------------------------------------- objectives


def build_attack(cfg: Mapping[str, Any]) -> Attack:
    """An attack from ``{"name": ..., **kwargs}`` (registered or training-only)."""
    name = str(cfg["name"])
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    if name in TRAIN_ONLY_ATTACKS:
        return TRAIN_ONLY_ATTACKS[name](**kwargs)
    _load_attack_modules()
    return ATTACKS.get(name)(**kwargs)


def build_objective(cfg: Mapping[str, Any], epochs: int) -> Objective:
    """An objective from its cell config.

    ``{"name": "adversarial", "attack": {...}, "clean_weight": 0.5}``; ``{"name":
    "two_phase", "first": {...}, "second": {...}, "switch_epoch": k}`` (or
    ``"switch_fraction": f``, the switch at ``round(f * epochs)``); any objective may carry
    ``"penalty": lam`` (adds the D-ReLU cap penalty, eq. 5.1).

    Args:
        cfg: the objective's config.
        epochs: the run's epochs (two-phase objectives check they cover both phases).
    """
    name = str(cfg["name"])
    kwargs = {k: v for k, v in cfg.items() if k not in ("name", "penalty")}
    obj: Objective
    if name == "two_phase":
        first = build_objective(kwargs.get("first", {"name": "natural"}), epochs)
        second = build_objective(kwargs["second"], epochs)
        switch = switch_epoch(cfg, epochs)
        obj = TwoPhase(first, second, switch, expected_epochs=epochs)
    elif name == "adversarial":
        attack = build_attack(kwargs.pop("attack"))
        obj = Adversarial(attack, **kwargs)
    else:
        obj = get_objective(name, **kwargs)
    if cfg.get("penalty") is not None:
        obj = with_penalty(obj, float(cfg["penalty"]))
    return obj


def switch_epoch(cfg: Mapping[str, Any], epochs: int) -> int:
    """The epoch where a two-phase objective switches (``switch_epoch`` or the fraction)."""
    if "switch_epoch" in cfg:
        return int(cfg["switch_epoch"])
    return max(1, round(float(cfg.get("switch_fraction", 0.5)) * epochs))


def uses_drelu_penalty(cfg: Mapping[str, Any]) -> bool:
    """True when the objective adds the D-ReLU cap penalty (so the model needs a D-ReLU)."""
    if cfg.get("name") == "drelu_penalty" or cfg.get("penalty") is not None:
        return True
    return any(
        isinstance(cfg.get(k), Mapping) and uses_drelu_penalty(cfg[k]) for k in ("first", "second")
    )


# --------------------------------------------------------------------------- training


def build_train_config(training: Mapping[str, Any], seed: int, **runtime: Any) -> TrainConfig:
    """TrainConfig from a cell's ``training`` block plus its seed and runtime fields
    (``device``, ``progress``), which are not part of the cell id."""
    fields = {k: v for k, v in training.items() if k not in EXTRA_TRAINING_KEYS}
    return TrainConfig.from_dict({**fields, "seed": int(seed), **runtime})
