"""The model registry, :func:`create_model` and the JSON config every model carries."""

from __future__ import annotations

import inspect
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from robustact._registry import Registry
from robustact._validate import is_int
from robustact.activations import make_activation
from robustact.models._actspec import (
    ActSpec,
    describe_act_layer,
    is_rebuildable,
    resolve_act_layer,
)

__all__ = [
    "ModelSpec",
    "create_model",
    "default_input_shape",
    "list_models",
    "model_from_config",
    "model_info",
    "register_model",
]


@dataclass(frozen=True)
class ModelSpec:
    """A registered constructor and the input it expects by default."""

    builder: Callable[..., nn.Module]
    in_channels: int
    input_size: tuple[int, int]
    family: str


_MODELS: Registry[ModelSpec] = Registry("model")


B = TypeVar("B", bound=Callable[..., nn.Module])


def register_model(
    name: str, *, in_channels: int, input_size: tuple[int, int], family: str
) -> Callable[[B], B]:
    """Decorator: register a class or function ``(*, num_classes, in_channels, act_layer, **kw)``.

    Args:
        name: registry name (lower case).
        in_channels: default input channels (1 for MNIST-like models, 3 for CIFAR ones).
        input_size: natural (H, W) of the input, used by tests and dry runs.
        family: a short group name ("mlp", "cnn", "resnet", ...) for listings.
    """

    def deco(fn: B) -> B:
        _MODELS.add(name, ModelSpec(fn, in_channels, (input_size[0], input_size[1]), family))
        return fn

    return deco


def list_models(family: str | None = None) -> list[str]:
    """Registered model names, sorted (only those of ``family`` when given)."""
    names = _MODELS.names()
    if family is None:
        return names
    return [n for n in names if _MODELS.get(n).family == family]


def default_input_shape(name: str) -> tuple[int, int, int]:
    """The natural ``(C, H, W)`` input of model ``name`` (e.g. (3, 32, 32) for resnet18)."""
    spec = _MODELS.get(name)
    return (spec.in_channels, *spec.input_size)


def _check_int(value: object, what: str, low: int) -> int:
    if not is_int(value) or value < low:
        raise ValueError(f"{what} must be an int >= {low}, got {value!r}")
    return int(value)


def _to_json(value: Any) -> Any:
    """Tuples to lists, recursively, so the recorded config survives a JSON round trip."""
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value


def _describe_kwargs(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    out: dict[str, Any] = {}
    ok = True
    for key, value in kwargs.items():
        if key == "act_layers" and value is not None:
            desc: Any = [None if a is None else describe_act_layer(a) for a in value]
        else:
            desc = _to_json(value)
        try:
            json.dumps(desc)
        except (TypeError, ValueError):
            desc, ok = repr(value), False
        ok = ok and is_rebuildable(desc)
        out[key] = desc
    return out, ok


def create_model(
    name: str,
    num_classes: int = 10,
    in_channels: int | None = None,
    act_layer: ActSpec = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: one of :func:`list_models` (case-insensitive, '-' == '_').
        num_classes: output logits, >= 2.
        in_channels: input channels, >= 1 (default: the model's, see
            :func:`default_input_shape`).
        act_layer: every activation of the model: a name (``"srelu"``), a class, a
            factory (``functools.partial(SReLU, max_value=0.1)``) or the JSON form
            ``{"name": ..., "kwargs": {...}}``; None means ReLU.
        **kwargs: model-specific options, e.g. ``mean=``/``std=`` (numbers, per-channel
            sequences or a preset name such as ``"cifar10"``), ``hidden=``,
            ``act_layers=``, ``input_size=``, ``depth=``/``widen_factor=``.
    Returns:
        The model, in train mode, with ``model.robustact_config = {"name", "kwargs",
        "rebuildable"}``: ``create_model(cfg["name"], **cfg["kwargs"])`` rebuilds it.
    Raises:
        ValueError: unknown name (listing the known ones), bad sizes or unknown options.
    """
    spec = _MODELS.get(name)
    key = name.lower().replace("-", "_")
    num_classes = _check_int(num_classes, "num_classes", 2)
    in_channels = _check_int(
        spec.in_channels if in_channels is None else in_channels, "in_channels", 1
    )
    # fail on a bad activation before building anything big
    describe_act_layer(act_layer)
    make_activation(resolve_act_layer(act_layer), 4)
    params = inspect.signature(spec.builder).parameters
    allowed = [p for p in params if p not in ("num_classes", "in_channels", "act_layer")]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"model {key!r} got unknown option(s) {unknown}; it accepts: {', '.join(allowed)}"
        )
    model = spec.builder(
        num_classes=num_classes, in_channels=in_channels, act_layer=act_layer, **kwargs
    )
    described, ok = _describe_kwargs(kwargs)
    config = {
        "name": key,
        "kwargs": {
            "num_classes": num_classes,
            "in_channels": in_channels,
            "act_layer": describe_act_layer(act_layer),
            **described,
        },
        "rebuildable": ok and is_rebuildable(describe_act_layer(act_layer)),
    }
    # a plain attribute (not a buffer or submodule): it travels with the object, not the weights
    object.__setattr__(model, "robustact_config", config)
    return model


def model_from_config(config: Mapping[str, Any]) -> nn.Module:
    """Rebuild a model from its ``robustact_config`` (e.g. read from a JSON sidecar): build
    it with :func:`create_model`, then replay its recorded ``edits`` (surgery, wrappers;
    see :mod:`robustact.models._record`)."""
    if "name" not in config or "kwargs" not in config:
        raise ValueError("model config needs 'name' and 'kwargs' (see model.robustact_config)")
    if config.get("rebuildable") is False:
        raise ValueError(
            f"model config for {config['name']!r} records a non-serialisable argument and "
            "cannot be rebuilt; register the activation or pass JSON-serialisable options"
        )
    from robustact.models._record import replay_edits

    model = create_model(str(config["name"]), **dict(config["kwargs"]))
    return replay_edits(model, list(config.get("edits") or []))


def model_info(model: nn.Module) -> dict[str, Any]:
    """Parameter count, activation census and recorded config of ``model``.

    Returns:
        ``{"params": int, "trainable_params": int, "activations": {type: count},
        "n_activations": int, "config": dict | None}``.
    """
    from robustact.surgery import find_activations

    acts = Counter(type(m).__name__ for _, m in find_activations(model))
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "activations": dict(acts),
        "n_activations": sum(acts.values()),
        "config": getattr(model, "robustact_config", None),
    }
