"""What a cell does besides train-and-evaluate: model transforms before training, activation
swaps and preprocessing defences after it (the diagnostics of the seeds are
:mod:`robustact.evaluate.diagnose`, run by the evaluation suite).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustact.experiments import builders as B
from robustact.experiments._specextra import AE_TRAINING
from robustact.surgery import find_caps, replace_activations

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


def _selected(model: nn.Module, where: Any) -> list[str]:
    """Dotted names of the activations a spec ``where`` selects (all when None)."""
    _, names = replace_activations(model, "relu", None if where is None else B.where_match(where))
    return names


def apply_transform(model: nn.Module, cfg: Mapping[str, Any] | None) -> nn.Module:
    """The cell's ``transform`` (before training): spectral normalisation of every linear
    and conv weight, or an ``nn.Dropout(p)`` after every (selected) activation."""
    if not cfg or cfg.get("name", "none") == "none":
        return model
    if cfg["name"] == "spectral_norm":
        from robustact.defenses import apply_spectral_norm

        out, _ = apply_spectral_norm(
            model, n_power_iterations=int(cfg.get("n_power_iterations", 1)),
            exclude=list(cfg.get("exclude", [])),
        )  # fmt: skip
    elif cfg["name"] == "dropout":
        from robustact.models import add_dropout

        out = add_dropout(model, _selected(model, cfg.get("where")), float(cfg["p"]))
    else:
        raise ValueError(f"unknown model transform {cfg['name']!r}; use spectral_norm or dropout")
    return out  # both record themselves in robustact_config: checkpoints rebuild them


def _swap(model: nn.Module, cfg: Mapping[str, Any], example: Tensor) -> nn.Module:
    if cfg["name"] == "cap":
        caps = find_caps(model)
        if not caps:
            raise ValueError("swap {name: cap} needs S-ReLU/D-ReLU caps; the model has none")
        v = float(cfg["max_value"])
        with torch.no_grad():
            for _, m in caps:
                if isinstance(m.max_value, Tensor):
                    m.max_value.fill_(v)
                else:
                    m.max_value = v
        return model
    args = {k: v for k, v in cfg.items() if k not in ("name", "count", *B.PLACEMENT_KEYS)}
    where = cfg.get("where")
    if "count" in cfg:
        where = list(range(int(cfg["count"])))
    factory = B.activation_factory(str(cfg["name"]), args)
    match = None if where is None else B.where_match(where)
    out, _ = replace_activations(model, factory, match, example_input=example)
    return out


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
        model = _swap(model, swap, train_x[:8].to(dev))
    if prep:
        from robustact.defenses import Preprocessed, get_preprocess, train_autoencoder

        name = str(prep["name"])
        kw = {k: v for k, v in prep.items() if k != "name" and k not in AE_TRAINING}
        if name == "autoencoder":
            kw["in_channels"] = int(train_x.shape[1])
        step = get_preprocess(name, **kw).to(dev)
        if name == "autoencoder":
            opts = {**AE_TRAINING, **{k: prep[k] for k in AE_TRAINING if k in prep}}
            extra["autoencoder_mse"] = train_autoencoder(
                step, train_x.to(dev), int(opts["epochs"]), float(opts["noise_std"]),
                lr=float(opts["lr"]), batch_size=int(opts["batch_size"]), seed=seed,
            )  # fmt: skip
        model = Preprocessed(model, step)
    model.eval()
    return model, extra
