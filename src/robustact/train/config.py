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

from robustact._validate import describe_range, in_range, is_int, is_number

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


_INF = math.inf
#: Count fields and their minimum.
_INT_FIELDS = {
    "epochs": 1, "batch_size": 1, "plateau_patience": 0, "early_stopping": 1, "seed": 0,
    "val_steps": 1,
}  # fmt: skip
#: Number fields: (low, high, low open, high open).
_NUMBER_FIELDS = {
    "lr": (0.0, _INF, True, True),
    "weight_decay": (0.0, _INF, False, True),
    "momentum": (0.0, 1.0, False, True),
    "plateau_factor": (0.0, 1.0, True, True),
    "gamma": (0.0, 1.0, True, False),
    "onecycle_pct_start": (0.0, 1.0, True, True),
    "cap_lr": (0.0, _INF, False, True),
    "min_cap": (0.0, _INF, False, True),
    "min_delta": (0.0, _INF, False, True),
    "max_grad_norm": (0.0, _INF, True, True),
    "val_eps": (0.0, 1.0, True, False),
    "val_step_size": (0.0, 1.0, True, False),
}
#: Fields that may be None (off / the default).
_OPTIONAL = frozenset({"cap_lr", "min_cap", "early_stopping", "max_grad_norm", "val_step_size"})


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
        self._check_numbers()
        self._check_optimizer()
        self._check_schedule()
        if self.device is not None:
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError) as e:
                raise _fail("device", self.device, "must be a torch device string") from e
        if self.val_attack is not None and self.val_attack not in VAL_ATTACKS:
            raise _fail(
                "val_attack", self.val_attack, f"must be None or one of {list(VAL_ATTACKS)}"
            )
        if not isinstance(self.progress, bool):
            raise _fail("progress", self.progress, "must be True or False")
        if not isinstance(self.extra, dict):
            raise _fail("extra", self.extra, "must be a dict")

    def _check_numbers(self) -> None:
        """The count and number fields of :data:`_INT_FIELDS` and :data:`_NUMBER_FIELDS`
        (NumPy scalars become Python numbers, so the config stays JSON-ready)."""
        for name, minimum in _INT_FIELDS.items():
            v = getattr(self, name)
            if v is None and name in _OPTIONAL:
                continue
            if not is_int(v) or v < minimum:
                raise _fail(name, v, f"must be an int >= {minimum}")
            setattr(self, name, int(v))
        for name, (lo, hi, lo_open, hi_open) in _NUMBER_FIELDS.items():
            v = getattr(self, name)
            if v is None and name in _OPTIONAL:
                continue
            if not (
                is_number(v)
                and math.isfinite(v)
                and in_range(v, lo, hi, min_open=lo_open, max_open=hi_open)
            ):
                rng = describe_range(lo, hi, min_open=lo_open, max_open=hi_open)
                raise _fail(name, v, f"must be a finite number{rng}")
            if not isinstance(v, (int, float)):
                setattr(self, name, float(v))

    def _check_optimizer(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise _fail("optimizer", self.optimizer, f"must be one of {list(OPTIMIZERS)}")
        if not isinstance(self.nesterov, bool):
            raise _fail("nesterov", self.nesterov, "must be True or False")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise _fail("nesterov", True, "needs optimizer='sgd' and momentum > 0")
        b = self.betas
        if not (
            isinstance(b, (tuple, list))
            and len(b) == 2
            and all(is_number(x) and math.isfinite(x) and 0 <= x < 1 for x in b)
        ):
            raise _fail("betas", b, "must be two numbers in [0, 1)")
        self.betas = (float(b[0]), float(b[1]))

    def _check_schedule(self) -> None:
        if not isinstance(self.schedule, str) or self.schedule.lower() not in SCHEDULES:
            raise _fail("schedule", self.schedule, f"must be one of {list(SCHEDULES)}")
        self.schedule = self.schedule.lower()
        ms = self.milestones
        if not (isinstance(ms, (tuple, list)) and all(is_int(m) and m >= 1 for m in ms)) or list(
            ms
        ) != sorted(set(ms)):
            raise _fail("milestones", ms, "must be strictly increasing epochs >= 1")
        self.milestones = tuple(int(m) for m in ms)
        if self.schedule == "piecewise" and not self.milestones:
            raise _fail("milestones", ms, "schedule='piecewise' needs at least one milestone")
