"""What a cell does besides train-and-evaluate: model transforms before training, activation
swaps and preprocessing defences after it (the diagnostics of the seeds are
:mod:`robustact.evaluate.diagnose`, run by the evaluation suite).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from robustact.experiments import _specextra as X
from robustact.experiments._specextra import apply_transform

__all__ = [
    "TRAINED_DIR",
    "apply_transform",
    "defended_model",
    "load_trained",
    "publish_trained",
    "train_id",
]

#: Folder (under a run's output_dir) of the classifiers shared by cells that differ only
#: after training (swaps, preprocessing, evaluation): ``<output_dir>/_trained/<train id>``.
TRAINED_DIR = "_trained"

#: Cell config keys that act only after training.
_AFTER_TRAINING = ("evaluation", "swap", "preprocess")


def train_id(config: Mapping[str, Any]) -> str:
    """The id of what a cell trains: its config without the after-training parts, so the
    cells of one classifier under several swaps/defences/evaluations share it."""
    from robustact.experiments.records import cell_id

    return cell_id({k: v for k, v in config.items() if k not in _AFTER_TRAINING})


def _trained_path(output_dir: str | os.PathLike[str], config: Mapping[str, Any]) -> Path:
    return Path(output_dir) / TRAINED_DIR / train_id(config) / "model.safetensors"


def load_trained(
    model: nn.Module, config: Mapping[str, Any], output_dir: str | os.PathLike[str] | None
) -> Any:
    """Load a classifier another cell already trained into ``model`` (in place); returns
    its training ``History``, or None when there is none to reuse."""
    if output_dir is None or not _trained_path(output_dir, config).is_file():
        return None
    from robustact.train import History, load_checkpoint

    _, meta = load_checkpoint(_trained_path(output_dir, config), model)
    extra = meta.get("extra") or {}
    return History(list(meta.get("history") or []), bool(extra.get("stopped_early", False)))


def publish_trained(
    checkpoint: str | None, config: Mapping[str, Any], output_dir: str | os.PathLike[str] | None
) -> None:
    """Copy a freshly trained cell checkpoint to the shared folder (as atomically as a
    save: a reader sees no checkpoint or the whole one)."""
    if checkpoint is None or output_dir is None:
        return
    from robustact.train.checkpoint import copy_checkpoint

    copy_checkpoint(checkpoint, _trained_path(output_dir, config))


def defended_model(
    model: nn.Module, config: Mapping[str, Any], train_x: Tensor, seed: int
) -> tuple[nn.Module, dict[str, Any]]:
    """The model the cell evaluates: the trained classifier after its ``swap`` and behind
    its ``preprocess`` defence (an autoencoder is trained here on ``train_x``).

    Returns:
        ``(model in eval mode, extra)``; ``extra`` holds the autoencoder's loss curve.
    """
    extra: dict[str, Any] = {}
    dev = next((p.device for p in model.parameters()), train_x.device)
    swap, prep = config.get("swap"), config.get("preprocess")
    if swap:
        model = X.apply_swap(model, swap, train_x[:8].to(dev))
    if prep:
        from robustact.defenses import Preprocessed

        step, extra = X.build_preprocess(prep, train_x.to(dev), seed)
        model = Preprocessed(model, step)
    model.eval()
    return model, extra
