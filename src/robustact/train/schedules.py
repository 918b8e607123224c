"""Optimisers (with the D-ReLU caps in their own group), learning-rate schedules, early stopping."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustact.activations import cap_parameters
from robustact.train.config import TrainConfig


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """Two groups: the weights, then the D-ReLU caps (own lr, no weight decay).

    Caps get no weight decay because the dissertation's eq. 5.1 penalty is their only
    regulariser (use the ``drelu_penalty`` objective); decaying them too would double it.
    """
    caps = [p for p in cap_parameters(model) if p.requires_grad]
    cap_ids = {id(p) for p in caps}
    weights = [p for p in model.parameters() if p.requires_grad and id(p) not in cap_ids]
    groups: list[dict[str, Any]] = [{"params": weights, "name": "weights"}]
    if caps:
        groups.append(
            {"params": caps, "name": "caps", "lr": config.effective_cap_lr, "weight_decay": 0.0}
        )
    return groups


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``config.optimizer`` over :func:`param_groups`."""
    groups = param_groups(model, config)
    if not any(g["params"] for g in groups):
        raise ValueError("the model has no trainable parameters; nothing to train")
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )  # fmt: skip
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


class Schedule:
    """A learning-rate schedule with one call site per batch and one per epoch.

    Wraps the torch scheduler so the loop need not know which ones step per batch
    (OneCycle) and which per epoch (cosine, piecewise) or on a metric (plateau).
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
    ) -> None:
        self.kind = config.schedule
        self.sched: Any = None
        lrs = [g["lr"] for g in optimizer.param_groups]
        if self.kind == "plateau":
            self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=config.plateau_factor,
                patience=config.plateau_patience,
            )  # fmt: skip
        elif self.kind == "onecycle":
            self.sched = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=lrs, total_steps=config.epochs * max(1, steps_per_epoch),
                pct_start=config.onecycle_pct_start,
                cycle_momentum=not (config.optimizer == "sgd" and config.momentum == 0),
            )  # fmt: skip
        elif self.kind == "cosine":
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
        elif self.kind == "piecewise":
            self.sched = torch.optim.lr_scheduler.MultiStepLR(
                optimizer, milestones=list(config.milestones), gamma=config.gamma
            )

    def after_batch(self) -> None:
        """Call after every optimiser step."""
        if self.kind == "onecycle":
            self.sched.step()

    def after_epoch(self, monitored: float) -> None:
        """Call once per epoch with the monitored loss (used by "plateau")."""
        if self.kind == "plateau":
            self.sched.step(monitored)
        elif self.kind in ("cosine", "piecewise"):
            self.sched.step()

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready scheduler state (scalars only)."""
        return {} if self.sched is None else jsonable(self.sched.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if self.sched is not None and state:
            self.sched.load_state_dict(unjsonable(state))


@dataclass
class EarlyStopping:
    """Stop when the monitored loss has not improved by ``min_delta`` for ``patience`` epochs."""

    patience: int
    min_delta: float = 0.0
    best: float = math.inf
    bad_epochs: int = 0

    def step(self, value: float) -> bool:
        """Record one epoch's value; True when training should stop."""
        if value < self.best - self.min_delta:
            self.best = value
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        return jsonable({"best": self.best, "bad_epochs": self.bad_epochs})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        s = unjsonable(state)
        self.best, self.bad_epochs = float(s["best"]), int(s["bad_epochs"])


def current_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """{"lr": weights' rate, "lr_caps": caps' rate (when the model has caps)}."""
    out = {}
    for g in optimizer.param_groups:
        out["lr_caps" if g.get("name") == "caps" else "lr"] = float(g["lr"])
    return out


# ------------------------------------------------------------------ JSON-safe scalars
_NONFINITE = "__float__"


def jsonable(obj: Any) -> Any:
    """Turn scheduler/optimiser scalar state into strict JSON (inf/nan as tagged dicts)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return {_NONFINITE: repr(obj)}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return jsonable(obj.item())
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a JSON checkpoint")


def unjsonable(obj: Any) -> Any:
    """Inverse of :func:`jsonable`."""
    if isinstance(obj, dict):
        if set(obj) == {_NONFINITE}:
            return float(obj[_NONFINITE])
        return {k: unjsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unjsonable(v) for v in obj]
    return obj
