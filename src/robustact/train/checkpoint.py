"""Checkpoints: safetensors tensors plus a JSON sidecar; never pickle.

A checkpoint ``run/model.safetensors`` has its sidecar at ``run/model.json``. The sidecar
is the commit record: it names its weights file and that file's size and SHA-256. Weights
are written first under a content-addressed name (``model.<sha256[:16]>.safetensors``),
then the sidecar is atomically renamed into place, so a reader sees the old checkpoint or
the new one, never a mix, and a crash between the two writes leaves the old one loadable.
``model.safetensors`` itself is then linked to the new weights for readers that open it
directly, and older weight files are pruned. Files are written with the user's umask.

Training state for resumption (:func:`save_training_state`) adds a second tensor file with
the optimiser's state tensors; its scalars (param groups, scheduler, early stopping,
objective state) live in the sidecar. Each epoch's files have their own names and the
sidecar is written last; tensor files without a sidecar (a kill mid-save) are pruned.

The sidecar's fields are validated before use (:mod:`robustact.train._sidecar`); the
model is rebuilt from its recorded config (edits included) by
``robustact.models.model_from_config``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

import robustact
from robustact.train._sidecar import FORMAT, FORMAT_VERSION, CheckpointError, parse_sidecar
from robustact.train.schedules import jsonable, unjsonable

__all__ = [
    "CheckpointError",
    "atomic_write",
    "copy_checkpoint",
    "describe_model",
    "latest_training_state",
    "load_checkpoint",
    "load_training_state",
    "read_sidecar",
    "save_checkpoint",
    "save_training_state",
    "sidecar_path",
]

#: Temporary files of a killed writer older than this are pruned by the next save.
STALE_TMP_SECONDS = 600.0


# ------------------------------------------------------------------ atomic files
def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same dir, fsync, os.replace.

    The file gets the usual ``0666 & ~umask`` permissions (``mkstemp`` would force 0600).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable where the platform allows opening directories."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _prune_stale_tmp(directory: Path) -> None:
    """Remove temporary files a killed writer left (older than :data:`STALE_TMP_SECONDS`)."""
    now = time.time()
    for f in directory.glob(".*.tmp"):
        try:
            if now - f.stat().st_mtime > STALE_TMP_SECONDS:
                f.unlink(missing_ok=True)
        except OSError:
            continue


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


def _read_bytes(path: Path, record: dict[str, Any]) -> bytes:
    """The bytes of a tensor file, checked against the size and SHA-256 its sidecar records."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint tensor file {path} is missing; re-save the checkpoint")
    data = path.read_bytes()
    if len(data) != record.get("bytes") or hashlib.sha256(data).hexdigest() != record.get("sha256"):
        raise CheckpointError(
            f"{path} is truncated or modified ({len(data)} bytes, sidecar expects "
            f"{record.get('bytes')}); re-save the checkpoint"
        )
    return data


def _read_tensors(path: Path, record: dict[str, Any]) -> dict[str, torch.Tensor]:
    data = _read_bytes(path, record)
    try:
        return st_load(data)
    except SafetensorError as e:
        first = (str(e).strip().splitlines() or ["unreadable"])[0]
        raise CheckpointError(f"{path} is not a valid safetensors file: {first}") from e


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
    """Save ``model``'s weights (safetensors) and a JSON sidecar beside them, atomically
    (see the module docstring: a crash leaves the previous checkpoint loadable).

    Args:
        path: ``something.safetensors`` (or a stem; the suffix is added).
        model: the model; ``model.robustact_config`` (if set, edits included) lets
            :func:`load_checkpoint` rebuild it.
        objective: an objective (its ``describe()`` is stored) or a JSON-ready description.
        config: a ``TrainConfig`` (``to_dict()`` is stored) or a JSON-ready dict.
        history: a ``History`` or list of per-epoch dicts.
        extra: more JSON-ready metadata.

    Returns:
        The weights path (``something.safetensors``).
    """
    weights, side = sidecar_path(path)
    meta = _meta(model, objective, config, history, extra)
    meta["kind"] = "model"
    return _commit(weights, side, _tensor_bytes(model.state_dict()), meta)


def _commit(weights: Path, side: Path, data: bytes, meta: dict[str, Any]) -> Path:
    """Content-addressed weights, then the sidecar (the commit), then the alias and pruning."""
    digest = hashlib.sha256(data).hexdigest()
    blob = weights.with_name(f"{weights.stem}.{digest[:16]}.safetensors")
    meta["weights"] = {"file": blob.name, "bytes": len(data), "sha256": digest}
    text = json.dumps(meta, indent=1, allow_nan=False).encode()  # fails before any write
    atomic_write(blob, data)
    atomic_write(side, text)  # readers switch from the old checkpoint to the new one here
    alias = weights.with_name(f".{weights.name}.{secrets.token_hex(6)}.tmp")
    try:
        os.link(blob, alias)  # a hard link costs no space
    except OSError:
        shutil.copyfile(blob, alias)
    os.replace(alias, weights)
    pattern = re.compile(re.escape(weights.stem) + r"\.[0-9a-f]{16}\.safetensors")
    for f in weights.parent.iterdir():
        if f.name != blob.name and pattern.fullmatch(f.name):
            f.unlink(missing_ok=True)
    _prune_stale_tmp(weights.parent)
    return weights


def copy_checkpoint(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Copy a model checkpoint (checked on the way) to ``dest``, as atomically as a save.

    Returns:
        The destination weights path.
    """
    _, src_side = sidecar_path(src)
    meta = read_sidecar(src_side)
    data = _read_bytes(src_side.with_name(meta["weights"]["file"]), meta["weights"])
    weights, side = sidecar_path(dest)
    return _commit(weights, side, data, meta)


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
    """Parse and validate a checkpoint's JSON sidecar.

    Raises:
        CheckpointError: one line naming the file, the bad field and the fix (foreign,
            truncated, tampered or too deeply nested files included).
    """
    _, side = sidecar_path(path)
    if not side.is_file():
        raise CheckpointError(
            f"no sidecar {side}: not a robustact checkpoint (expected {side.name} beside "
            "the .safetensors file)"
        )
    try:
        text = side.read_bytes().decode()
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{side} is truncated or not JSON ({e}); re-save it") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {side}: {e.strerror or e}") from None
    return parse_sidecar(text, side)


def load_checkpoint(
    path: str | os.PathLike[str], model: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint` or the training loop.

    The one loader for every robustact checkpoint: a model edited by surgery or wrapped by
    a defence is rebuilt from the config its sidecar records (edits replayed); sidecars of
    experiment cells written before edits were recorded rebuild from their cell config.

    Args:
        path: the ``.safetensors`` file or its ``.json`` sidecar.
        model: a model to load into (strict key match; tensors go to its device); None
            rebuilds it from the sidecar.

    Returns:
        ``(model, meta)``: the model (in eval mode) and the sidecar dict.
    Raises:
        CheckpointError: a missing, truncated, tampered or mismatched file (one line).
    """
    from robustact.train._rebuild import rebuild_model

    weights, side = sidecar_path(path)
    meta = read_sidecar(side)
    state = _read_tensors(side.with_name(meta["weights"]["file"]), meta["weights"])
    if model is None:
        model = rebuild_model(meta, side, state)
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
    text = json.dumps(meta, indent=1, allow_nan=False).encode()
    atomic_write(w_path, w_data)
    atomic_write(o_path, o_data)
    side = stem.with_suffix(".json")
    atomic_write(side, text)  # the commit: this epoch's tensors count only from here on
    # prune only after the new sidecar is committed, so a crash always leaves one whole state
    older = [p for p in sorted(d.glob("epoch_*.json")) if p.name < side.name]
    for old in older[: max(0, len(older) - (keep - 1))]:
        for f in (old, old.with_suffix(".safetensors"), old.with_suffix(".optim.safetensors")):
            f.unlink(missing_ok=True)
    prune_orphans(d)
    return side


def prune_orphans(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove ``epoch_XXXX`` tensor files that have no sidecar (left by a kill mid-save)
    and stale temporary files; returns the tensor files removed."""
    d = Path(directory)
    if not d.is_dir():
        return []
    gone = []
    for f in d.glob("epoch_*.safetensors"):
        stem = f.name.split(".", 1)[0]
        if not (d / f"{stem}.json").is_file():
            f.unlink(missing_ok=True)
            gone.append(f)
    _prune_stale_tmp(d)
    return sorted(gone)


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
        meta["state"] = unjsonable(meta.get("state") or {})
        meta["history"] = unjsonable(meta.get("history") or [])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"training state {side} does not match this run: {first}") from e
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
