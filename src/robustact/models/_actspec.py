"""Activation specs: what ``act_layer=`` accepts, and its JSON description.

A model's ``act_layer`` may be a registered name (``"srelu"``), a class, a factory such as
``functools.partial(SReLU, max_value=0.1)``, or the JSON form produced by
:func:`describe_act_layer` (``{"name": "srelu", "kwargs": {"max_value": 0.1}}``), so a
checkpoint sidecar can rebuild the model from its recorded config.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from robustact.activations import get_activation, list_activations

__all__ = ["ActSpec", "describe_act_layer", "is_rebuildable", "resolve_act_layer"]

#: Everything ``act_layer=`` accepts (None means ReLU).
ActSpec = str | type[nn.Module] | Callable[..., nn.Module] | Mapping[str, Any] | None


def _registered_name(factory: object) -> str | None:
    """The registry name whose activation class is ``factory`` (None if there is none)."""
    for name in list_activations():
        ctor = get_activation(name)
        if type(ctor) is factory:
            return name
    return None


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def describe_act_layer(act_layer: ActSpec) -> str | dict[str, Any]:
    """JSON-serialisable description of an ``act_layer`` argument.

    Returns:
        The registry name (``"relu"`` for None) when no arguments are bound; else
        ``{"name": ..., "kwargs": {...}}``. A factory that is not a registered class
        (a lambda, a user class) gives ``{"name": None, "class": "<qualified name>",
        "kwargs": {...}}``, which :func:`resolve_act_layer` refuses to rebuild.
    Raises:
        TypeError: a module instance or a non-callable was given.
    """
    if act_layer is None:
        return "relu"
    if isinstance(act_layer, str):
        if act_layer.lower().replace("-", "_") not in list_activations():
            get_activation(act_layer)  # raises the registry's "unknown ... Known: ..." error
        return act_layer.lower().replace("-", "_")
    if isinstance(act_layer, Mapping):
        return _describe_mapping(act_layer)
    if isinstance(act_layer, nn.Module):
        raise TypeError(
            f"act_layer must be a class, factory or name, not a module instance "
            f"({type(act_layer).__name__}); pass the class or functools.partial(...)"
        )
    if not callable(act_layer):
        raise TypeError(f"act_layer must be a name, class or factory, got {act_layer!r}")
    func: Any = act_layer
    kwargs: dict[str, Any] = {}
    args: tuple[Any, ...] = ()
    if isinstance(act_layer, functools.partial):
        func, args, kwargs = act_layer.func, act_layer.args, dict(act_layer.keywords)
    name = _registered_name(func) if isinstance(func, type) else None
    if name is not None and not args and _jsonable(kwargs):
        return {"name": name, "kwargs": kwargs} if kwargs else name
    qual = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
    safe = {k: (v if _jsonable(v) else repr(v)) for k, v in kwargs.items()}
    return {"name": None, "class": qual, "kwargs": safe}


def _describe_mapping(spec: Mapping[str, Any]) -> dict[str, Any]:
    extra = set(spec) - {"name", "kwargs", "class"}
    if extra:
        raise ValueError(f"act_layer dict has unknown keys {sorted(extra)}; use 'name', 'kwargs'")
    name = spec.get("name")
    kwargs = dict(spec.get("kwargs") or {})
    if name is None:
        return {"name": None, "class": str(spec.get("class", "?")), "kwargs": kwargs}
    if not isinstance(name, str):
        raise TypeError(f"act_layer dict 'name' must be a string, got {name!r}")
    key = describe_act_layer(name)
    return {"name": key, "kwargs": kwargs} if kwargs else {"name": key}


def is_rebuildable(description: Any) -> bool:
    """True when a description from :func:`describe_act_layer` can be rebuilt."""
    if isinstance(description, list):
        return all(is_rebuildable(d) for d in description)
    return not (isinstance(description, dict) and description.get("name") is None)


def resolve_act_layer(act_layer: ActSpec) -> str | Callable[..., nn.Module] | None:
    """Turn a JSON description back into what ``make_activation`` takes; others pass."""
    if not isinstance(act_layer, Mapping):
        return act_layer
    spec = _describe_mapping(act_layer)
    if spec["name"] is None:
        raise ValueError(
            f"cannot rebuild activation {spec['class']!r}: it is not registered; register it "
            "with robustact.activations or pass the class itself as act_layer"
        )
    name: str = spec["name"]
    kwargs = spec.get("kwargs") or {}
    if not kwargs:
        return name
    return functools.partial(type(get_activation(name)), **kwargs)
