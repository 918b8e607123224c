"""Per-epoch training history and the measurements that fill it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustact.surgery import find_caps

try:  # resource is POSIX-only
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]


@dataclass
class History:
    """Per-epoch records of a run.

    Each record has ``epoch`` (0-based), ``loss`` and the objective's metrics (training
    averages), ``val_loss``/``val_acc`` (with validation data), ``val_robust_acc`` (with
    ``config.val_attack``), ``lr`` (and ``lr_caps``), ``caps`` ({layer: {min, mean, max}}),
    ``seconds`` and ``peak_mem_mb``. ``history["loss"]`` gives one column (None where a
    record lacks the key).
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False

    def __getitem__(self, key: str) -> list[Any]:
        if not self.records or all(key not in r for r in self.records):
            known = sorted({k for r in self.records for k in r})
            raise KeyError(f"history has no column {key!r}; known: {known}")
        return [r.get(key) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def last(self) -> dict[str, Any]:
        """The latest epoch's record."""
        if not self.records:
            raise IndexError("history is empty")
        return self.records[-1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"records": self.records, "stopped_early": self.stopped_early}


def peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if resource is None:
        return float("nan")
    # ru_maxrss is the process's peak resident set in KiB on Linux (bytes on macOS)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if rss > 2**32 else rss / 2**10


def cap_stats(model: nn.Module) -> dict[str, dict[str, float]]:
    """{layer name: {"min", "mean", "max"}} of every S-ReLU/D-ReLU cap in ``model``."""
    out = {}
    for name, layer in find_caps(model):
        m = torch.as_tensor(layer.max_value).detach().float()
        if m.numel() == 0 or isinstance(m, nn.parameter.UninitializedParameter):
            continue
        out[name] = {"min": float(m.min()), "mean": float(m.mean()), "max": float(m.max())}
    return out


def batch_means(seen: dict[str, list[Tensor | float]], sizes: list[int]) -> dict[str, float]:
    """Batch-size-weighted means of the per-batch values (one device sync per key)."""
    out = {}
    for k, vals in seen.items():
        if not vals:
            continue
        dev = next((x.device for x in vals if isinstance(x, Tensor)), torch.device("cpu"))
        v = torch.stack(
            [torch.as_tensor(x, device=dev).detach().double().reshape(()) for x in vals]
        )
        w = torch.tensor(sizes[: len(vals)], dtype=torch.float64, device=dev)
        out[k] = float((v * w).sum() / w.sum())
    return out
