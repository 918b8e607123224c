"""Typed, validated training configuration.

Every field is checked in ``__post_init__``, so a bad value fails when the config is built,
before any data is touched, with one line naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "plateau", "onecycle", "cosine", "piecewise")
VAL_ATTACKS = ("fgsm", "pgd")

#: Default learning rate of the D-ReLU cap group. Measured on digits (benchmarks/training.py,
#: caps initialised at 100, eq. 5.1 with lambda = 1, Adam): while the penalty dominates, Adam
#: moves a cap by almost exactly its learning rate per step (0.000999, 0.00999, 0.0999 and 0.98
#: per step for cap_lr 1e-3, 1e-2, 0.1, 1), so at the weights' 1e-3 a cap hardly leaves 100
#: (0.66 in 660 steps). 0.1 reaches the activation range in ~1000 steps (about two MNIST
#: epochs at batch 128) without overshooting; 1.0 gets there in ~100 steps but overshoots
#: below zero without the ``min_cap`` clamp.
DEFAULT_CAP_LR = 0.1


class ConfigError(ValueError):
    """A training configuration field has a value that is not allowed."""


def _fail(name: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"TrainConfig.{name} = {value!r} is invalid: {allowed}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


@dataclass
class TrainConfig:
    """Everything :func:`robustact.train.fit` needs besides the model, objective and data.

    Attributes:
        epochs: number of epochs (>= 1).
        batch_size: mini-batch size (>= 1).
        optimizer: "adam", "adamw" or "sgd".
        lr: learning rate of the weights (the peak rate for "onecycle").
        weight_decay: L2 (adam, sgd) or decoupled (adamw) weight decay of the weights.
        momentum: SGD momentum in [0, 1).
        nesterov: Nesterov momentum (SGD with momentum > 0 only).
        betas: Adam/AdamW betas, each in [0, 1).
        schedule: "none", "plateau" (ReduceLROnPlateau on the monitored loss), "onecycle"
            (stepped per batch), "cosine" (per epoch, to 0) or "piecewise" (per epoch, the rate
            is multiplied by ``gamma`` at each of ``milestones``).
        plateau_factor: ReduceLROnPlateau factor in (0, 1).
        plateau_patience: ReduceLROnPlateau patience in epochs.
        milestones: epochs (increasing, >= 1) for "piecewise".
        gamma: "piecewise" factor in (0, 1].
        onecycle_pct_start: fraction of the OneCycle cycle spent warming up, in (0, 1).
        cap_lr: learning rate of the D-ReLU caps' own parameter group (None: DEFAULT_CAP_LR).
        min_cap: after every step, D-ReLU caps are clamped to at least this value (a negative
            cap makes the unit output a negative constant); None: no clamping.
        early_stopping: stop after this many epochs without improvement of the monitored loss
            (validation loss when validation data is given, else training loss); None: off.
        min_delta: an improvement must exceed this to reset the early-stopping counter.
        max_grad_norm: clip the global gradient norm to this value; None: no clipping.
        seed: seeds the data order and all torch randomness, per epoch.
        device: where to train ("cpu", "cuda:0", ...); None: the model's device.
        val_attack: cheap attack for validation robust accuracy: None, "fgsm" or "pgd".
        val_eps: L-inf radius of the validation attack.
        val_steps: PGD steps of the validation attack.
        val_step_size: PGD step of the validation attack; None: ``2.5 * val_eps /
            val_steps``. The validation PGD takes all its steps for every point (as a
            training attack does), so with the training attack's settings it is the BReLU
            paper's validation PGD-7 (eps 0.03, step 0.00784, 7 steps).
        progress: show a rich progress bar with live metrics.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "none"
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    onecycle_pct_start: float = 0.3
    cap_lr: float | None = None
    min_cap: float | None = 0.0
    early_stopping: int | None = None
    min_delta: float = 0.0
    max_grad_norm: float | None = None
    seed: int = 0
    device: str | None = None
    val_attack: str | None = None
    val_eps: float = 0.1
    val_steps: int = 5
    val_step_size: float | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.optimizer = self.optimizer.lower() if isinstance(self.optimizer, str) else ""
        self._validate()

    # ------------------------------------------------------------------ presets
    @classmethod
    def dissertation(cls, **overrides: Any) -> TrainConfig:
        """Sooksatra (2025) §5.1: Adam 1e-3, ReduceLROnPlateau(0.5, 5), EarlyStopping(10)."""
        base: dict[str, Any] = dict(
            optimizer="adam", lr=1e-3, schedule="plateau", plateau_factor=0.5,
            plateau_patience=5, early_stopping=10,
        )  # fmt: skip
        return cls(**{**base, **overrides})

    @classmethod
    def brelu_paper(cls, **overrides: Any) -> TrainConfig:
        """BReLU paper Table 8: AdamW, max lr 0.01, weight decay 0.01, OneCycleLR, batch 512."""
        base: dict[str, Any] = dict(
            optimizer="adamw", lr=0.01, weight_decay=0.01, schedule="onecycle", batch_size=512,
        )  # fmt: skip
        return cls(**{**base, **overrides})

    # ------------------------------------------------------------------ helpers
    @property
    def effective_cap_lr(self) -> float:
        """The cap group's learning rate (``cap_lr`` or :data:`DEFAULT_CAP_LR`)."""
        return DEFAULT_CAP_LR if self.cap_lr is None else float(self.cap_lr)

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        out["milestones"] = list(self.milestones)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys fail with the list of known fields."""
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ConfigError(f"unknown TrainConfig field(s) {bad}; known: {sorted(known)}")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        if "milestones" in d:
            d["milestones"] = tuple(d["milestones"])
        return cls(**d)

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        def pos_int(name: str, minimum: int = 1) -> None:
            v = getattr(self, name)
            if not _is_int(v) or v < minimum:
                raise _fail(name, v, f"must be an int >= {minimum}")

        def num(name: str, lo: float, hi: float, lo_open: bool, hi_open: bool) -> None:
            v = getattr(self, name)
            ok = (
                _is_num(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
            )
            if not ok:
                lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
                raise _fail(name, v, f"must be a finite number in {lb}{lo:g}, {hi:g}{rb}")

        pos_int("epochs")
        pos_int("batch_size")
        if self.optimizer not in OPTIMIZERS:
            raise _fail("optimizer", self.optimizer, f"must be one of {list(OPTIMIZERS)}")
        num("lr", 0.0, math.inf, True, True)
        num("weight_decay", 0.0, math.inf, False, True)
        num("momentum", 0.0, 1.0, False, True)
        if not isinstance(self.nesterov, bool):
            raise _fail("nesterov", self.nesterov, "must be True or False")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise _fail("nesterov", True, "needs optimizer='sgd' and momentum > 0")
        b = self.betas
        if not (
            isinstance(b, (tuple, list))
            and len(b) == 2
            and all(_is_num(x) and 0 <= x < 1 for x in b)
        ):
            raise _fail("betas", b, "must be two numbers in [0, 1)")
        self.betas = (float(b[0]), float(b[1]))
        if not isinstance(self.schedule, str) or self.schedule.lower() not in SCHEDULES:
            raise _fail("schedule", self.schedule, f"must be one of {list(SCHEDULES)}")
        self.schedule = self.schedule.lower()
        num("plateau_factor", 0.0, 1.0, True, True)
        pos_int("plateau_patience", 0)
        ms = self.milestones
        if not (isinstance(ms, (tuple, list)) and all(_is_int(m) and m >= 1 for m in ms)) or list(
            ms
        ) != sorted(set(ms)):
            raise _fail("milestones", ms, "must be strictly increasing epochs >= 1")
        self.milestones = tuple(ms)
        if self.schedule == "piecewise" and not self.milestones:
            raise _fail("milestones", ms, "schedule='piecewise' needs at least one milestone")
        num("gamma", 0.0, 1.0, True, False)
        num("onecycle_pct_start", 0.0, 1.0, True, True)
        if self.cap_lr is not None:
            num("cap_lr", 0.0, math.inf, False, True)
        if self.min_cap is not None:
            num("min_cap", 0.0, math.inf, False, True)
        if self.early_stopping is not None:
            pos_int("early_stopping")
        num("min_delta", 0.0, math.inf, False, True)
        if self.max_grad_norm is not None:
            num("max_grad_norm", 0.0, math.inf, True, True)
        pos_int("seed", 0)
        if self.device is not None:
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError) as e:
                raise _fail("device", self.device, "must be a torch device string") from e
        if self.val_attack is not None and self.val_attack not in VAL_ATTACKS:
            raise _fail(
                "val_attack", self.val_attack, f"must be None or one of {list(VAL_ATTACKS)}"
            )
        num("val_eps", 0.0, 1.0, True, False)
        pos_int("val_steps")
        if self.val_step_size is not None:
            num("val_step_size", 0.0, 1.0, True, False)
        if not isinstance(self.progress, bool):
            raise _fail("progress", self.progress, "must be True or False")
        if not isinstance(self.extra, dict):
            raise _fail("extra", self.extra, "must be a dict")
