"""Rebuild the model a checkpoint sidecar describes, without trusting the sidecar.

The recorded config (``model.config``: ``create_model`` arguments plus the replayed
edits) is first built on the meta device, which costs no memory, and its tensor shapes are
compared with the saved weights, so a tampered config (a billion hidden units) is refused
before anything is allocated. The real build then runs under a forked RNG (loading leaves
the caller's random state alone), and its activation layers are compared with the census
the sidecar recorded, so a config that lost the model's surgery is refused instead of
silently rebuilding a different model.

Sidecars of experiment cells written before edits were recorded (format 1) hold the cell
config instead; the model is rebuilt from it the way the cell built it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustact.train._sidecar import CheckpointError
from robustact.train.schedules import unjsonable

__all__ = ["rebuild_model"]

#: What building a model from hostile arguments may raise (turned into CheckpointError).
_BUILD_ERRORS = (
    TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError, OverflowError,
    ZeroDivisionError, NotImplementedError, RecursionError, MemoryError,
)  # fmt: skip


def _builder(meta: Mapping[str, Any], side: Path) -> tuple[Callable[[], nn.Module], str]:
    """A zero-argument model builder and the sidecar field it reads."""
    model_meta = meta.get("model") or {}
    cfg = model_meta.get("config")
    extra = meta.get("extra") or {}
    if meta.get("format_version", 1) < 2 and isinstance(extra.get("cell"), dict):
        if not isinstance(extra.get("input_shape"), list) or "num_classes" not in extra:
            raise CheckpointError(
                f"{side}: a cell sidecar needs extra.input_shape and extra.num_classes; "
                "re-save the checkpoint"
            )
        return lambda: _legacy_cell_model(extra), "extra.cell"
    if not cfg:
        raise CheckpointError(
            f"{side} has no model config to rebuild from; pass model= (an instance of "
            f"{model_meta.get('class', 'the saved class')})"
        )
    if cfg.get("rebuildable") is False:
        raise CheckpointError(
            f"{side}: its model config records a non-JSON argument (an unregistered activation "
            "or preprocessing step) and cannot be rebuilt; pass model= (the same architecture)"
        )
    from robustact.models import model_from_config

    return lambda: model_from_config(unjsonable(cfg)), "model.config"


def _legacy_cell_model(extra: Mapping[str, Any]) -> nn.Module:
    from robustact.experiments import builders
    from robustact.experiments._cellextras import apply_transform

    cell = extra["cell"]
    c, h, w = (int(v) for v in extra["input_shape"])
    model = builders.build_model(cell["model"], cell["activation"], (c, h, w),
                                 int(extra["num_classes"]))  # fmt: skip
    return apply_transform(model, cell.get("transform"))


def _build(build: Callable[[], nn.Module], side: Path, field: str, meta_device: bool) -> Any:
    try:
        if meta_device:
            with torch.device("meta"):
                return build()
        return build()
    except CheckpointError:
        raise
    except _BUILD_ERRORS as e:
        if meta_device and isinstance(e, NotImplementedError):
            return None  # an op without a meta kernel: skip the dry run, build for real
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(
            f"{side}: field {field} does not rebuild a model ({type(e).__name__}: {first}); "
            "re-save the checkpoint or pass model="
        ) from None


def _check_shapes(probe: nn.Module, state: Mapping[str, torch.Tensor], side: Path) -> None:
    """Refuse a config whose tensors differ from the saved ones (before allocating)."""
    ours = probe.state_dict()
    for k, v in ours.items():
        if isinstance(v, nn.parameter.UninitializedParameter | nn.parameter.UninitializedBuffer):
            continue
        if k not in state or tuple(state[k].shape) != tuple(v.shape):
            saved = tuple(state[k].shape) if k in state else "nothing"
            raise CheckpointError(
                f"{side}: the model its config builds has {k} of shape {tuple(v.shape)}, the "
                f"weights hold {saved}; the sidecar does not describe these weights"
            )
    extra = sorted(set(state) - set(ours))
    if extra:
        raise CheckpointError(
            f"{side}: the weights hold {extra[0]}, which the model its config builds lacks; "
            "the sidecar does not describe these weights"
        )


def _check_census(model: nn.Module, recorded: Any, side: Path) -> None:
    """The rebuilt activation layers must be the ones the sidecar recorded at save time."""
    if not isinstance(recorded, list):
        return
    from robustact.surgery import find_activations

    have = [(n, type(m).__name__) for n, m in find_activations(model)]
    want = [(str(a.get("name")), str(a.get("type"))) for a in recorded]
    if have == want:
        return
    diff = next(((h, w) for h, w in zip(have, want, strict=False) if h != w), None)
    what = (
        f"has {diff[0][1]} at {diff[0][0]} where the checkpoint recorded {diff[1][1]} at "
        f"{diff[1][0]}" if diff else f"has {len(have)} activations, the checkpoint {len(want)}"
    )  # fmt: skip
    raise CheckpointError(
        f"{side}: the model its config rebuilds {what} (the config predates recorded "
        "surgery?); load it with model= (the edited model) and re-save it"
    )


def rebuild_model(
    meta: Mapping[str, Any], side: Path, state: Mapping[str, torch.Tensor]
) -> nn.Module:
    """The model a validated sidecar ``meta`` describes, checked against its ``state``.

    Raises:
        CheckpointError: the sidecar cannot rebuild a model matching the weights (one line).
    """
    build, field = _builder(meta, side)
    with torch.random.fork_rng(devices=[]):
        probe = _build(build, side, field, meta_device=True)
        if probe is not None:
            _check_shapes(probe, state, side)
            del probe
        model = _build(build, side, field, meta_device=False)
    if not isinstance(model, nn.Module):
        raise CheckpointError(f"{side}: field {field} does not rebuild an nn.Module")
    _check_census(model, (meta.get("model") or {}).get("activations"), side)
    return model
