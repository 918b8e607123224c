"""A cell's training data and starting weights from its ``training`` block: the train/val
split (``val_fraction``; 0 = no split), standard augmentation (``augment``), per-epoch mixing
with generated images (``generated: {file, real_fraction}``) and a user's trained weights
(``init: {weights: FILE}``), each checked when the spec is read (:func:`check_extras`) and
built when the cell runs.

Relative file names are looked up under the run's data root (``data_root`` of the spec or
``--data-root``), else the working directory; the names, not the resolved paths, are part
of the cell id, so one spec gives the same cell ids on every machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from robustact.data import DatasetError, ImageDataset, train_val_split
from robustact.data.augment import EpochData, parse_augment
from robustact.data.generated import load_generated

__all__ = ["DATA_KEYS", "check_extras", "init_weights", "resolve_file", "split_and_wrap"]

#: Keys of a cell's ``training`` block handled here (not TrainConfig fields).
DATA_KEYS = ("augment", "generated", "init")

_GENERATED_KEYS = ("file", "real_fraction")


def resolve_file(name: str, root: str | os.PathLike[str] | None) -> Path:
    """``name`` as written (absolute) or under ``root`` (else the working directory)."""
    p = Path(os.path.expanduser(name))
    if p.is_absolute() or root is None:
        return p
    return Path(root) / p


def check_extras(training: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems of the data keys of a ``training`` block, as ``(key, message)`` pairs."""
    out: list[tuple[str, str]] = []
    if "augment" in training:
        try:
            parse_augment(training["augment"])
        except ValueError as e:
            out.append(("augment", str(e)))
    gen = training.get("generated")
    if gen is not None:
        if not isinstance(gen, Mapping) or "file" not in gen or set(gen) - set(_GENERATED_KEYS):
            out.append(("generated", "expected {file: NAME.npz, real_fraction: f} "
                        f"(keys {', '.join(_GENERATED_KEYS)}), got {gen!r}"))  # fmt: skip
        else:
            rf = gen.get("real_fraction", 0.3)
            for v in rf.values() if isinstance(rf, Mapping) else [rf]:
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= 1:
                    out.append(("generated.real_fraction", "expected a number in (0, 1] or "
                                f"{{dataset: number}}, got {rf!r}"))  # fmt: skip
                    break
            if not isinstance(gen["file"], str) or not gen["file"].endswith(".npz"):
                out.append(("generated.file", f"expected an .npz file name, got {gen['file']!r}"))
    init = training.get("init")
    if init is not None and not (
        isinstance(init, Mapping) and set(init) == {"weights"} and isinstance(init["weights"], str)
    ):
        out.append(("init", f"expected {{weights: FILE}} (a checkpoint or a state_dict .pt/"
                    f".safetensors), got {init!r}"))  # fmt: skip
    if training.get("val_fraction") == 0 and (
        training.get("early_stopping") is not None or training.get("schedule") == "plateau"
    ):
        out.append(("val_fraction", "val_fraction 0 validates on the test split, so early "
                    "stopping and the plateau schedule would tune on it; use a split (e.g. "
                    "0.2) or drop them"))  # fmt: skip
    return out


def split_and_wrap(
    full: ImageDataset, test: ImageDataset, training: Mapping[str, Any], seed: int,
    root: str | os.PathLike[str] | None, dataset: str = "",
) -> tuple[Any, ImageDataset]:  # fmt: skip
    """(training data, validation set) of a cell.

    ``val_fraction`` 0 trains on the whole train split and validates on the test split
    (what the BReLU paper calls validation data); otherwise a seeded stratified split.
    With ``augment`` or ``generated`` the training data is an :class:`EpochData`.
    ``generated.file`` may hold ``{dataset}`` (the cell's dataset name) and
    ``generated.real_fraction`` may be a ``{dataset: fraction}`` mapping, so one spec serves
    several datasets.
    """
    problems = check_extras(training)
    if problems:
        raise ValueError(f"training.{problems[0][0]}: {problems[0][1]}")
    frac = float(training.get("val_fraction", 0.2))
    if frac == 0.0:
        train, val = full, test
    else:
        train, val = train_val_split(full, frac, seed)
    augment = parse_augment(training.get("augment"))
    gen = training.get("generated")
    if augment is None and gen is None:
        return train, val
    if gen is None:
        return EpochData(train, augment=augment), val
    path = resolve_file(str(gen["file"]).replace("{dataset}", dataset), root)
    if not path.is_file():
        raise DatasetError(
            f"generated images {path}: no such file; put the .npz (x uint8 or float in [0, 1], "
            "y int) there or pass --data-root"
        )
    extra = load_generated(path, train)
    rf_cfg = gen.get("real_fraction", 0.3)
    if isinstance(rf_cfg, Mapping) and dataset not in rf_cfg:
        raise ValueError(f"generated.real_fraction names no fraction for dataset {dataset!r}")
    rf = float(rf_cfg[dataset] if isinstance(rf_cfg, Mapping) else rf_cfg)
    return EpochData(train, augment=augment, generated=extra, real_fraction=rf), val


def init_weights(
    model: nn.Module, init: Mapping[str, Any] | None, root: str | os.PathLike[str] | None
) -> None:
    """Load a user's trained weights into ``model`` (in place) before any surgery: a
    robustact checkpoint (its ``.json`` sidecar) or a plain state_dict read by
    :func:`robustact.loading.load_state_dict` (strict: every key and shape must match)."""
    if not init:
        return
    from robustact.loading import ModelLoadError, load_state_dict

    path = resolve_file(str(init["weights"]), root)
    if path.suffix == ".json":
        from robustact.train import load_checkpoint

        load_checkpoint(path, model)
        model.train()
        return
    state = load_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    bad = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or extra or bad:
        raise ModelLoadError(
            f"init weights {path} do not fit the model: missing {missing[:3]}, unexpected "
            f"{extra[:3]}, other shapes {bad[:3]}; they must come from the same model entry "
            "(architecture and options) without the inserted layer"
        )
    model.load_state_dict(state, strict=True)
