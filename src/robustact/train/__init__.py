"""Training: ``fit(model, objective, data, config) -> History``, objectives and checkpoints.

Example:
    >>> from robustact.train import TrainConfig, fit, Natural
    >>> history = fit(model, Natural(), (x, y), TrainConfig(epochs=5, progress=False),
    ...               val_data=(x_val, y_val))

The same loop trains under DistributedDataParallel with ``fit(..., strategy="ddp")`` (see
:mod:`robustact.train.strategy`). A diverging run raises :class:`DivergenceError`; data
outside the pixel contract (float images in [0, 1], int64 labels below the class count)
fails before training with a one-line ``ValueError``/``TypeError``.

D-ReLU caps train in their own parameter group at ``TrainConfig.cap_lr`` (default
:data:`DEFAULT_CAP_LR` = 0.1): Adam moves each parameter by at most about its learning rate per
step, so at the weights' 1e-3 a cap initialised at 100 hardly moves in a whole run
(see ``benchmarks/training.py`` for the measurement on digits).
"""

from robustact.train.adversary import TradesKL, TrainingPGD
from robustact.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_sidecar,
    save_checkpoint,
)
from robustact.train.config import DEFAULT_CAP_LR, ConfigError, TrainConfig
from robustact.train.loop import DivergenceError, History, cap_stats, fit, robust_accuracy
from robustact.train.objectives import (
    OBJECTIVES,
    Adversarial,
    DReLUPenalty,
    Natural,
    Objective,
    SumObjective,
    fgsm_at,
    get_objective,
    list_objectives,
    pgd_at,
    with_penalty,
)
from robustact.train.robust import Hybrid, Trades, TwoPhase, fit_then_finetune, two_phase
from robustact.train.schedules import EarlyStopping, build_optimizer, param_groups
from robustact.train.strategy import DDP, Strategy, get_strategy

__all__ = [
    "DDP",
    "DEFAULT_CAP_LR",
    "OBJECTIVES",
    "Adversarial",
    "CheckpointError",
    "ConfigError",
    "DReLUPenalty",
    "DivergenceError",
    "EarlyStopping",
    "History",
    "Hybrid",
    "Natural",
    "Objective",
    "Strategy",
    "SumObjective",
    "Trades",
    "TradesKL",
    "TrainConfig",
    "TrainingPGD",
    "TwoPhase",
    "build_optimizer",
    "cap_stats",
    "fgsm_at",
    "fit",
    "fit_then_finetune",
    "get_objective",
    "get_strategy",
    "list_objectives",
    "load_checkpoint",
    "param_groups",
    "pgd_at",
    "read_sidecar",
    "robust_accuracy",
    "save_checkpoint",
    "two_phase",
    "with_penalty",
]

# The robust-optimisation baselines (gradient penalty, Lipschitz/Parseval penalties) live with
# the other defences but are training objectives: importing them here registers them, so
# get_objective() and experiment specs know them. Imported last: it needs train.objectives.
from robustact.defenses import robust_opt as _robust_opt  # noqa: F401
