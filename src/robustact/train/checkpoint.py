"""Checkpoints: safetensors tensors plus a JSON sidecar; never pickle.

A checkpoint ``run/model.safetensors`` has its sidecar at ``run/model.json``. Every file is
written atomically (temporary file in the same directory, fsync, ``os.replace``) and the
sidecar — written last — records the size and SHA-256 of each tensor file, so a crash
between the writes, a truncated download or a foreign file is detected on load.

Training state for resumption (:func:`save_training_state`) adds a second tensor file with
the optimiser's state tensors; its scalars (param groups, scheduler, early stopping,
objective state) live in the sidecar.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

import robustact
from robustact.train.schedules import jsonable, unjsonable

FORMAT = "robustact-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file is not a robustact checkpoint, is truncated, or does not match the model."""


# ------------------------------------------------------------------ atomic files
def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same dir, fsync, os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # make the rename itself durable where the platform allows opening directories
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    seen: set[tuple[int, int]] = set()
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        t = v.detach().to("cpu").contiguous()
        key = (t.untyped_storage().data_ptr(), int(t.storage_offset()))
        # safetensors refuses shared storage (tied weights): give duplicates their own copy
        out[k] = t.clone() if key in seen else t
        seen.add(key)
    return st_save(out)


def _file_record(path: Path, data: bytes) -> dict[str, Any]:
    return {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _read_tensors(path: Path, record: dict[str, Any]) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint tensor file {path} is missing")
    data = path.read_bytes()
    if len(data) != record.get("bytes") or hashlib.sha256(data).hexdigest() != record.get("sha256"):
        raise CheckpointError(
            f"{path} is truncated or modified ({len(data)} bytes, sidecar expects "
            f"{record.get('bytes')}); re-save the checkpoint"
        )
    try:
        return st_load(data)
    except SafetensorError as e:
        raise CheckpointError(f"{path} is not a valid safetensors file: {e}") from e


def git_commit() -> str | None:
    """The git commit of the robustact source tree, or None when unavailable."""
    src = Path(robustact.__file__).resolve().parent
    try:
        r = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


def describe_model(model: nn.Module) -> dict[str, Any]:
    """Model class, rebuild config (``model.robustact_config``) and activation layers."""
    from robustact.surgery import find_activations

    cfg = getattr(model, "robustact_config", None)
    return {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "config": jsonable(cfg) if cfg is not None else None,
        "activations": [
            {"name": n, "type": type(m).__name__, "repr": m.extra_repr()}
            for n, m in find_activations(model)
        ],
    }


def sidecar_path(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(weights path, sidecar path) for a checkpoint given either file (or a bare stem)."""
    p = Path(path)
    if p.suffix == ".json":
        return p.with_suffix(".safetensors"), p
    if p.suffix != ".safetensors":
        p = p.with_name(p.name + ".safetensors")
    return p, p.with_suffix(".json")


# ------------------------------------------------------------------ model checkpoints
def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    objective: Any = None,
    config: Any = None,
    history: Any = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save ``model``'s weights (safetensors) and a JSON sidecar beside them.

    Args:
        path: ``something.safetensors`` (or a stem; the suffix is added).
        model: the model; ``model.robustact_config`` (if set) lets :func:`load_checkpoint`
            rebuild it.
        objective: an objective (its ``describe()`` is stored) or a JSON-ready description.
        config: a ``TrainConfig`` (``to_dict()`` is stored) or a JSON-ready dict.
        history: a ``History`` or list of per-epoch dicts.
        extra: more JSON-ready metadata.

    Returns:
        The weights path.
    """
    weights, side = sidecar_path(path)
    data = _tensor_bytes(model.state_dict())
    meta = _meta(model, objective, config, history, extra)
    meta["kind"] = "model"
    meta["weights"] = _file_record(weights, data)
    atomic_write(weights, data)
    atomic_write(side, json.dumps(meta, indent=1, allow_nan=False).encode())
    return weights


def _meta(
    model: nn.Module, objective: Any, config: Any, history: Any, extra: dict[str, Any] | None
) -> dict[str, Any]:
    if hasattr(objective, "describe"):
        objective = objective.describe()
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    if hasattr(history, "records"):
        history = history.records
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": describe_model(model),
        "objective": jsonable(objective),
        "config": jsonable(config),
        "history": jsonable(history),
        "robustact_version": robustact.__version__,
        "git_commit": git_commit(),
        "extra": jsonable(extra or {}),
    }


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse and check a checkpoint's JSON sidecar (fails clearly on foreign/truncated files)."""
    _, side = sidecar_path(path)
    if not side.is_file():
        raise CheckpointError(
            f"no sidecar {side}: not a robustact checkpoint (expected {side.name} beside "
            "the .safetensors file)"
        )
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{side} is truncated or not JSON ({e}); re-save it") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{side} is not a robustact checkpoint sidecar (no format tag)")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{side} has format version {meta['format_version']}; this robustact reads "
            f"<= {FORMAT_VERSION}: upgrade robustact"
        )
    return meta


def load_checkpoint(
    path: str | os.PathLike[str], model: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint` or the training loop.

    Args:
        path: the ``.safetensors`` file or its ``.json`` sidecar.
        model: a model to load into (strict key match; tensors go to its device); None
            rebuilds it with ``robustact.models.model_from_config`` from the sidecar.

    Returns:
        ``(model, meta)``: the model (in eval mode) and the sidecar dict.
    """
    weights, side = sidecar_path(path)
    meta = read_sidecar(side)
    record = meta.get("weights")
    if not isinstance(record, dict):
        raise CheckpointError(f"{side} lists no weights file; not a model checkpoint")
    state = _read_tensors(side.with_name(record["file"]), record)
    if model is None:
        cfg = (meta.get("model") or {}).get("config")
        if not cfg:
            raise CheckpointError(
                f"{side} has no model config to rebuild from; pass model= (an instance of "
                f"{(meta.get('model') or {}).get('class', 'the saved class')})"
            )
        from robustact.models import model_from_config

        model = model_from_config(unjsonable(cfg))
    _materialise_lazy(model, state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {weights} does not match the model: {first}") from e
    return model.eval(), meta


def _materialise_lazy(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Give lazy parameters (e.g. lazy D-ReLU caps) the saved shapes before loading."""
    for name, p in model.named_parameters():
        if isinstance(p, nn.parameter.UninitializedParameter) and name in state:
            p.materialize(state[name].shape)


# ------------------------------------------------------------------ training state
def save_training_state(
    directory: str | os.PathLike[str],
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    *,
    objective: Any = None,
    config: Any = None,
    history: Any = None,
    keep: int = 1,
) -> Path:
    """Write ``epoch_XXXX`` (weights, optimiser tensors, sidecar) and prune older epochs.

    ``state`` holds the JSON-ready scalars (scheduler, early stopping, objective state...).
    """
    d = Path(directory)
    stem = d / f"epoch_{epoch:04d}"
    w_data = _tensor_bytes(model.state_dict())
    o_tensors, o_scalars = _split_optimizer(optimizer.state_dict())
    o_data = _tensor_bytes(o_tensors)
    w_path, o_path = stem.with_suffix(".safetensors"), stem.with_suffix(".optim.safetensors")
    meta = _meta(model, objective, config, history, None)
    meta.update(
        kind="training_state",
        epoch=epoch,
        weights=_file_record(w_path, w_data),
        optimizer=_file_record(o_path, o_data),
        optimizer_scalars=jsonable(o_scalars),
        state=jsonable(state),
    )
    atomic_write(w_path, w_data)
    atomic_write(o_path, o_data)
    side = stem.with_suffix(".json")
    atomic_write(side, json.dumps(meta, indent=1, allow_nan=False).encode())
    # prune only after the new sidecar is committed, so a crash always leaves one whole state
    older = [p for p in sorted(d.glob("epoch_*.json")) if p.name < side.name]
    for old in older[: max(0, len(older) - (keep - 1))]:
        for f in (old, old.with_suffix(".safetensors"), old.with_suffix(".optim.safetensors")):
            f.unlink(missing_ok=True)
    return side


def latest_training_state(directory: str | os.PathLike[str]) -> Path | None:
    """The newest ``epoch_XXXX.json`` in ``directory`` (None when there is none)."""
    found = sorted(Path(directory).glob("epoch_*.json"))
    return found[-1] if found else None


def load_training_state(
    side: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore weights and optimiser from a training-state sidecar; return its metadata."""
    meta = read_sidecar(side)
    if meta.get("kind") != "training_state":
        raise CheckpointError(f"{side} is a model checkpoint, not a training state")
    weights = _read_tensors(side.with_name(meta["weights"]["file"]), meta["weights"])
    opt_t = _read_tensors(side.with_name(meta["optimizer"]["file"]), meta["optimizer"])
    try:
        model.load_state_dict(weights, strict=True)
        optimizer.load_state_dict(_join_optimizer(opt_t, unjsonable(meta["optimizer_scalars"])))
    except (RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"training state {side} does not match this run: {first}") from e
    meta["state"] = unjsonable(meta.get("state", {}))
    return meta


def _split_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"state": {}, "param_groups": sd["param_groups"]}
    for idx, st in sd["state"].items():
        rest = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{idx}.{k}"] = v
            else:
                rest[k] = v
        scalars["state"][str(idx)] = rest
    return tensors, scalars


def _join_optimizer(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in scalars["state"].items()}
    for key, t in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = t
    groups = []
    for g in scalars["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}
