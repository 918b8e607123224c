"""What a valid checkpoint sidecar is: its fields, their types and ranges.

A sidecar is read from a file anyone may have edited, so every field the loader uses is
checked here before it is used, and any problem becomes one :class:`CheckpointError` line
that names the field and the fix (never a raw ``KeyError``, ``ValueError`` or
``RecursionError``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from robustact._validate import is_int

__all__ = ["FORMAT", "FORMAT_VERSION", "MAX_DEPTH", "CheckpointError", "parse_sidecar"]

FORMAT = "robustact-checkpoint"
#: 2: weights under a content-addressed name, model config with its recorded edits.
FORMAT_VERSION = 2
#: Deepest nesting of JSON containers a sidecar may have (ours use fewer than 10).
MAX_DEPTH = 64

_SHA256 = re.compile(r"[0-9a-f]{64}")
_KINDS = (None, "model", "training_state")


class CheckpointError(ValueError):
    """A file is not a robustact checkpoint, is truncated, or does not match the model."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Check:
    """Field checks of one sidecar; each failure names ``side`` and the dotted field."""

    def __init__(self, side: Path) -> None:
        self.side = side

    def fail(self, field: str, want: str, got: Any) -> CheckpointError:
        return CheckpointError(
            f"{self.side}: field {field} must be {want}, got {_short(got)}; re-save the "
            "checkpoint (or restore the field from a good copy)"
        )

    def dict_(self, d: Mapping[str, Any], key: str, path: str, required: bool = False) -> Any:
        v = d.get(key)
        if v is None and not required:
            return {}
        if not isinstance(v, dict):
            raise self.fail(path, "a JSON object", v)
        return v

    def of(self, d: Mapping[str, Any], key: str, path: str, want: str,
           ok: Callable[[Any], bool], required: bool = False) -> Any:  # fmt: skip
        if key not in d and not required:
            return None
        v = d.get(key)
        if not ok(v):
            raise self.fail(path, want, v)
        return v


def _is_int(low: int) -> Callable[[Any], bool]:
    return lambda v: is_int(v) and v >= low


def _opt(ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or ok(v)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def _is_list_of_dicts(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(e, dict) for e in v)


def _is_sha256(v: Any) -> bool:
    return isinstance(v, str) and _SHA256.fullmatch(v) is not None


def _is_shape(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 3 and all(_is_int(1)(e) for e in v)


def _plain_name(v: Any) -> bool:
    # a file beside the sidecar: no directories, so a sidecar cannot point elsewhere
    return (
        isinstance(v, str) and v.endswith(".safetensors") and "/" not in v and "\\" not in v
        and v not in (".", "..") and "\x00" not in v
    )  # fmt: skip


def _depth_ok(obj: Any) -> bool:
    """True when no container nests deeper than :data:`MAX_DEPTH` (iterative: no recursion)."""
    stack = [(obj, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            if d > MAX_DEPTH:
                return False
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return True


def parse_sidecar(text: str, side: Path) -> dict[str, Any]:
    """Parse sidecar JSON ``text`` (read from ``side``) and check every field.

    Raises:
        CheckpointError: one line naming the file, the field and the fix.
    """
    try:
        meta = json.loads(text)
    except RecursionError:
        raise CheckpointError(
            f"{side}: JSON nested deeper than {MAX_DEPTH} levels; not a robustact sidecar"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{side} is truncated or not JSON ({e}); re-save it") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{side} is not a robustact checkpoint sidecar (no format tag)")
    if not _depth_ok(meta):
        raise CheckpointError(
            f"{side}: JSON nested deeper than {MAX_DEPTH} levels; not a robustact sidecar"
        )
    c = _Check(side)
    version = c.of(meta, "format_version", "format_version", "an int >= 1", _is_int(1))
    if version is not None and version > FORMAT_VERSION:
        raise CheckpointError(
            f"{side} has format version {version}; this robustact reads <= {FORMAT_VERSION}: "
            "upgrade robustact"
        )
    meta.setdefault("format_version", 1)
    c.of(meta, "kind", "kind", f"one of {list(_KINDS)}", lambda v: v in _KINDS)
    _check_file(c, meta, "weights")
    _check_model(c, meta)
    c.of(meta, "config", "config", "a JSON object or null", _opt(_is_dict))
    c.of(meta, "history", "history", "a list of per-epoch objects", _opt(_is_list_of_dicts))
    _check_extra(c, c.dict_(meta, "extra", "extra"))
    if meta.get("kind") == "training_state":
        _check_training_state(c, meta)
    return meta


def _check_file(c: _Check, meta: Mapping[str, Any], key: str) -> None:
    rec = c.dict_(meta, key, key, required=True)
    c.of(rec, "file", f"{key}.file", "a .safetensors file name beside the sidecar",
         _plain_name, required=True)  # fmt: skip
    c.of(rec, "bytes", f"{key}.bytes", "an int >= 0", _is_int(0), required=True)
    c.of(rec, "sha256", f"{key}.sha256", "64 lower-case hex digits", _is_sha256, required=True)


def _check_model(c: _Check, meta: Mapping[str, Any]) -> None:
    model = c.dict_(meta, "model", "model")
    c.of(model, "class", "model.class", "a string", _opt(_is_str))
    acts = c.of(model, "activations", "model.activations", "a list of objects",
                _opt(_is_list_of_dicts))  # fmt: skip
    for i, a in enumerate(acts or []):
        for k in ("name", "type"):
            c.of(a, k, f"model.activations[{i}].{k}", "a string", _is_str, required=True)
    cfg = c.of(model, "config", "model.config", "a JSON object or null", _opt(_is_dict))
    if not cfg:
        return
    c.of(cfg, "name", "model.config.name", "a model name", _is_str, required=True)
    c.of(cfg, "kwargs", "model.config.kwargs", "a JSON object", _is_dict, required=True)
    c.of(cfg, "rebuildable", "model.config.rebuildable", "true or false",
         lambda v: isinstance(v, bool))  # fmt: skip
    edits = c.of(cfg, "edits", "model.config.edits", "a list of objects", _is_list_of_dicts)
    for i, e in enumerate(edits or []):
        c.of(e, "op", f"model.config.edits[{i}].op", "an edit name", _is_str, required=True)


def _check_extra(c: _Check, extra: Mapping[str, Any]) -> None:
    c.of(extra, "cell", "extra.cell", "a cell config object", _is_dict)
    if isinstance(extra.get("cell"), dict):
        for k in ("model", "activation"):
            c.of(extra["cell"], k, f"extra.cell.{k}", "an object with a name",
                 lambda v: isinstance(v, dict) and isinstance(v.get("name"), str))  # fmt: skip
    c.of(extra, "cell_id", "extra.cell_id", "a string", _is_str)
    c.of(extra, "input_shape", "extra.input_shape", "[C, H, W] (three ints >= 1)", _is_shape)
    c.of(extra, "num_classes", "extra.num_classes", "an int >= 2", _is_int(2))
    c.of(extra, "stopped_early", "extra.stopped_early", "true or false",
         lambda v: isinstance(v, bool))  # fmt: skip


def _check_training_state(c: _Check, meta: Mapping[str, Any]) -> None:
    c.of(meta, "epoch", "epoch", "an int >= 0", _is_int(0), required=True)
    _check_file(c, meta, "optimizer")
    scal = c.dict_(meta, "optimizer_scalars", "optimizer_scalars", required=True)
    state = c.dict_(scal, "state", "optimizer_scalars.state", required=True)
    for k, v in state.items():
        if not k.isdigit() or not isinstance(v, dict):
            raise c.fail(f"optimizer_scalars.state.{k}", "an object keyed by a parameter index", v)
    c.of(scal, "param_groups", "optimizer_scalars.param_groups", "a list of objects",
         _is_list_of_dicts, required=True)  # fmt: skip
    c.dict_(meta, "state", "state")
