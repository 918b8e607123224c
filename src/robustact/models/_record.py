"""The model record: edits made after :func:`create_model`, kept in ``robustact_config``.

``create_model`` records ``{"name", "kwargs", "rebuildable"}``. Every function that edits a
model afterwards (``surgery.replace_activations`` / ``insert_capped_layer``, the
preprocessing wrapper ``defenses.Preprocessed``, ``defenses.apply_spectral_norm``,
:func:`add_dropout`) appends one JSON edit ``{"op": ..., **args}`` to
``robustact_config["edits"]``, so ``model_from_config`` rebuilds the edited model by
replaying them in order and a checkpoint sidecar alone is enough to load it.

An edit whose arguments cannot be written as JSON (a lambda activation, an unregistered
preprocessing module) is still recorded, with ``rebuildable: False``: the checkpoint then
names what is missing instead of silently rebuilding a different model.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from robustact._registry import Registry

__all__ = ["add_dropout", "record_edit", "register_edit", "replay_edits"]

#: op name -> ``replay(model, edit) -> model`` (without recording: the caller does).
_EDITS: Registry[Callable[[nn.Module, Mapping[str, Any]], nn.Module]] = Registry("model edit")

#: Modules that register edits (imported before a replay, so every op is known).
_EDIT_MODULES = ("robustact.surgery", "robustact.defenses.preprocess", "robustact.defenses")

Replay = Callable[[nn.Module, Mapping[str, Any]], nn.Module]


def register_edit(op: str) -> Callable[[Replay], Replay]:
    """Decorator: register the replay of edit ``op`` (``(model, edit) -> model``)."""

    def deco(fn: Replay) -> Replay:
        _EDITS.add(op, fn)
        return fn

    return deco


def record_edit(
    model: nn.Module, edit: Mapping[str, Any], *, base: nn.Module | None = None,
    rebuildable: bool = True,
) -> nn.Module:  # fmt: skip
    """Append ``edit`` to the record of ``model`` (taken from ``base`` when given: a wrapper
    records on top of the model it wraps). A model without a record is left alone.

    Returns:
        ``model``.
    """
    config = getattr(model if base is None else base, "robustact_config", None)
    if not isinstance(config, Mapping):
        return model
    new = copy.deepcopy(dict(config))
    new["edits"] = [*new.get("edits", []), copy.deepcopy(dict(edit))]
    new["rebuildable"] = bool(new.get("rebuildable", True)) and rebuildable
    # a plain attribute (not a buffer or submodule): it travels with the object, not weights
    object.__setattr__(model, "robustact_config", new)
    return model


def replay_edits(model: nn.Module, edits: Sequence[Mapping[str, Any]]) -> nn.Module:
    """Apply recorded ``edits`` to a freshly built ``model``, recording each again."""
    if edits:
        for mod in _EDIT_MODULES:
            importlib.import_module(mod)
    for i, edit in enumerate(edits):
        if not isinstance(edit, Mapping) or not isinstance(edit.get("op"), str):
            raise ValueError(
                f"model config edit {i} must be a dict with an 'op' name, got {edit!r}"
            )
        base = model
        model = _EDITS.get(edit["op"])(model, edit)
        record_edit(model, edit, base=base)
    return model


def _wrap_dropout(model: nn.Module, names: Sequence[str], p: float) -> nn.Module:
    for name in names:
        parent, _, child = name.rpartition(".")
        holder = model.get_submodule(parent) if parent else model
        setattr(holder, child, nn.Sequential(getattr(holder, child), nn.Dropout(p)))
    return model


def add_dropout(
    model: nn.Module, names: Sequence[str], p: float, *, inplace: bool = False
) -> nn.Module:
    """``nn.Dropout(p)`` after each named module (``Sequential(module, Dropout)``), recorded.

    Args:
        model: any module.
        names: dotted names of the modules to follow with dropout (e.g. activations).
        p: drop probability in [0, 1).
        inplace: edit ``model`` itself instead of a deep copy.
    """
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1:
        raise ValueError(f"dropout p must be a number in [0, 1), got {p!r}")
    target = model if inplace else copy.deepcopy(model)
    _wrap_dropout(target, list(names), float(p))
    return record_edit(target, {"op": "dropout", "names": list(names), "p": float(p)})


@register_edit("dropout")
def _replay_dropout(model: nn.Module, edit: Mapping[str, Any]) -> nn.Module:
    return _wrap_dropout(model, [str(n) for n in edit["names"]], float(edit["p"]))
