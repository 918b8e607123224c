"""Experiment tracking as optional callbacks: TensorBoard and MLflow.

A tracker logs training curves (one step per epoch) and evaluation numbers::

    from robustact.tracking import TensorBoardTracker
    with TensorBoardTracker("runs/srelu") as tb:
        fit(model, "natural", data, config, on_epoch_end=tb.epoch_callback())
        tb.log_evaluation(result)          # an EvalResult, or any {name: number} mapping

Neither backend is a dependency of robustact: ``pip install robustact[tensorboard]`` or
``robustact[mlflow]``; constructing a tracker without its package is a one-line error
that says which package to install. ``make_tracker("tensorboard:DIR")`` /
``make_tracker("mlflow[:URI]")`` is what ``--track`` on the command line builds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["MLflowTracker", "TensorBoardTracker", "Tracker", "make_tracker", "numeric_items"]


def numeric_items(record: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Flatten a (nested) record into ``{"a/b": float}``, keeping finite numbers only.

    Example: ``{"loss": 0.3, "caps": {"act2": {"mean": 0.1}}}`` ->
    ``{"loss": 0.3, "caps/act2/mean": 0.1}``; booleans and strings are dropped.
    """
    out: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(numeric_items(value, prefix=f"{name}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            v = float(value)
            if math.isfinite(v):
                out[name] = v
    return out


class Tracker:
    """Base of the trackers: ``log_metrics`` plus helpers built on it; a context manager."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:  # pragma: no cover
        """Log ``{name: value}`` at ``step``."""
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release the backend."""

    def epoch_callback(self, prefix: str = "train/") -> Callable[[int, dict[str, Any]], None]:
        """A ``fit(..., on_epoch_end=...)`` callback logging each epoch's record."""

        def callback(epoch: int, record: dict[str, Any]) -> None:
            items = {k: v for k, v in record.items() if k != "epoch"}
            self.log_metrics(numeric_items(items, prefix=prefix), step=int(epoch))

        return callback

    def log_evaluation(self, result: Any, prefix: str = "eval/", step: int = 0) -> None:
        """Log an evaluation: an object with ``flat_metrics()`` or ``to_dict()`` (e.g.
        ``EvalResult``), or a mapping of numbers."""
        if hasattr(result, "flat_metrics"):
            data = result.flat_metrics()
        elif hasattr(result, "to_dict"):
            data = result.to_dict()
        elif isinstance(result, Mapping):
            data = result
        else:
            raise TypeError(
                f"cannot log a {type(result).__name__}: pass an EvalResult or a mapping"
            )
        self.log_metrics(numeric_items(data, prefix=prefix), step=step)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _need(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"{extra} tracking needs the {extra} package: pip install 'robustact[{extra}]'"
        ) from None


class TensorBoardTracker(Tracker):
    """Scalars to TensorBoard event files under ``log_dir`` (``tensorboard --logdir``).

    Args:
        log_dir: folder for the event files.
    """

    def __init__(self, log_dir: str) -> None:
        _need("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = str(log_dir)
        self._writer = SummaryWriter(log_dir=self.log_dir)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for name, value in metrics.items():
            self._writer.add_scalar(name, value, global_step=step)

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()


class MLflowTracker(Tracker):
    """Metrics (and optional parameters) to an MLflow run.

    Args:
        run_name: the run's name.
        tracking_uri: MLflow tracking URI (default: MLflow's own, ``./mlruns``).
        params: parameters to record once (e.g. the cell config), flattened.
    """

    def __init__(
        self,
        run_name: str | None = None,
        tracking_uri: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self._mlflow = _need("mlflow", "mlflow")
        if tracking_uri:
            self._mlflow.set_tracking_uri(tracking_uri)
        self._run = self._mlflow.start_run(run_name=run_name)
        if params:
            flat = numeric_items(params) | {
                k: str(v) for k, v in params.items() if isinstance(v, str)
            }
            self._mlflow.log_params(flat)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        # MLflow metric names may not contain some characters; '/' is allowed
        self._mlflow.log_metrics(dict(metrics), step=step)

    def close(self) -> None:
        self._mlflow.end_run()


def make_tracker(spec: str) -> Tracker:
    """``"tensorboard:DIR"`` or ``"mlflow"`` / ``"mlflow:URI"`` -> a tracker.

    Raises:
        ValueError: an unknown backend or a missing directory.
    """
    backend, _, arg = str(spec).partition(":")
    backend = backend.strip().lower()
    if backend == "tensorboard":
        if not arg:
            raise ValueError("--track tensorboard needs a folder: --track tensorboard:runs/x")
        return TensorBoardTracker(arg)
    if backend == "mlflow":
        return MLflowTracker(tracking_uri=arg or None)
    raise ValueError(f"--track {spec!r}: unknown backend; use tensorboard:DIR or mlflow[:URI]")
