"""Building blocks shared by the model zoo: input normalisation, the model base class,
input-size parsing and the activation helper every constructor uses."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from robustact.activations import make_activation
from robustact.models._actspec import ActSpec, resolve_act_layer

__all__ = [
    "NORMALIZATION_PRESETS",
    "ImageClassifier",
    "Normalize",
    "act",
    "parse_input_size",
    "resolve_normalization",
]

#: Per-channel (mean, std) of common datasets' training splits, pixels in [0, 1].
NORMALIZATION_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "identity": ((0.0,), (1.0,)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "kmnist": ((0.1918,), (0.3483,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
NORMALIZATION_PRESETS["fmnist"] = NORMALIZATION_PRESETS["fashion_mnist"]
NORMALIZATION_PRESETS["tinyimagenet"] = NORMALIZATION_PRESETS["imagenet"]

Stat = float | Sequence[float] | str | None


def _preset(name: str, which: int) -> tuple[float, ...]:
    key = name.lower().replace("-", "_")
    if key not in NORMALIZATION_PRESETS:
        known = ", ".join(sorted(NORMALIZATION_PRESETS))
        raise ValueError(f"unknown normalisation preset {name!r}; known: {known}")
    return NORMALIZATION_PRESETS[key][which]


def _as_channels(value: float | Sequence[float], channels: int, what: str) -> list[float]:
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a number or a sequence of numbers, got {value!r}")
    vals = [float(value)] if isinstance(value, int | float) else [float(v) for v in value]
    if len(vals) == 1:
        vals = vals * channels
    if len(vals) != channels:
        raise ValueError(
            f"{what} has {len(vals)} values but the model has {channels} input channels; "
            "give one value or one per channel"
        )
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"{what} must be finite, got {vals}")
    return vals


def resolve_normalization(mean: Stat, std: Stat, channels: int) -> tuple[list[float], list[float]]:
    """Turn ``mean``/``std`` arguments into per-channel lists.

    Each may be None (identity: mean 0, std 1), a number, a per-channel sequence or a
    preset name from :data:`NORMALIZATION_PRESETS`. A preset ``mean`` with ``std=None``
    takes the preset's std too.
    """
    if isinstance(mean, str) and std is None:
        std = mean
    m = 0.0 if mean is None else _preset(mean, 0) if isinstance(mean, str) else mean
    s = 1.0 if std is None else _preset(std, 1) if isinstance(std, str) else std
    m_vals = _as_channels(m, channels, "mean")
    s_vals = _as_channels(s, channels, "std")
    if not all(v > 0 for v in s_vals):
        raise ValueError(f"std must be > 0 in every channel, got {s_vals}")
    return m_vals, s_vals


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``; the first layer of every robustact model.

    Keeping it inside the model lets attacks work on raw pixels in [0, 1]. The statistics
    are persistent buffers, so checkpoints carry them and they follow ``.to(device)``.

    Args:
        mean: one value per channel (or one value for all).
        std: one value per channel (or one value for all), each > 0.

    Shape: (N, C, *) -> (N, C, *); with a single channel any (N, *) input broadcasts.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        super().__init__()
        n = max(
            1 if isinstance(mean, int | float) else len(mean),
            1 if isinstance(std, int | float) else len(std),
        )
        m, s = resolve_normalization(mean, std, n)
        self.register_buffer("mean", torch.tensor(m, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(s, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        c = self.mean.numel()
        if c == 1:
            return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        if x.dim() < 2 or x.shape[1] != c:
            raise ValueError(
                f"Normalize has {c} channels but got input of shape {tuple(x.shape)}; "
                "pass images shaped (N, C, H, W)"
            )
        view = (1, c) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(view).to(x.dtype)) / self.std.view(view).to(x.dtype)

    def extra_repr(self) -> str:
        fmt = ", ".join
        return (
            f"mean=({fmt(f'{v:.4g}' for v in self.mean.tolist())}), "
            f"std=({fmt(f'{v:.4g}' for v in self.std.tolist())})"
        )


def parse_input_size(
    input_size: int | Sequence[int] | None, in_channels: int, default: tuple[int, int]
) -> tuple[int, int]:
    """Return ``(H, W)`` from an int, ``(H, W)`` or ``(C, H, W)`` (C must match)."""
    if input_size is None:
        return default
    if isinstance(input_size, bool):
        raise TypeError(f"input_size must be an int or a tuple, got {input_size!r}")
    size = [input_size] * 2 if isinstance(input_size, int) else list(input_size)
    if len(size) == 3:
        if int(size[0]) != in_channels:
            raise ValueError(
                f"input_size {tuple(size)} has {size[0]} channels but in_channels={in_channels}"
            )
        size = size[1:]
    if len(size) != 2 or not all(isinstance(v, int) and v >= 1 for v in size):
        raise ValueError(
            f"input_size must be H, (H, W) or (C, H, W) positive ints, got {input_size!r}"
        )
    return int(size[0]), int(size[1])


def act(act_layer: ActSpec, num_features: int) -> nn.Module:
    """A fresh activation module for a layer of ``num_features`` units or channels."""
    return make_activation(resolve_act_layer(act_layer), num_features)


class ImageClassifier(nn.Module):
    """Base class: owns ``self.normalize`` (the first child) and checks inputs.

    Subclasses build their layers after calling ``super().__init__`` and implement
    :meth:`forward_normalized`, which receives the normalised images.

    Shape: (N, C, H, W) in [0, 1] -> logits (N, num_classes).
    """

    def __init__(self, *, num_classes: int, in_channels: int, mean: Stat, std: Stat) -> None:
        super().__init__()
        m, s = resolve_normalization(mean, std, in_channels)
        self.normalize = Normalize(m, s)
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)

    def check_input(self, x: Tensor) -> None:
        """Raise a clear error unless ``x`` is (N, C, H, W) with C == ``in_channels``."""
        if not isinstance(x, Tensor):
            raise TypeError(f"model input must be a Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects images (N, {self.in_channels}, H, W), "
                f"got shape {tuple(x.shape)}"
            )

    def forward_normalized(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.forward_normalized(self.normalize(x))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, in_channels={self.in_channels}"


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    """``[Conv2d (no bias, 'same'-style padding), BatchNorm2d]`` for ``k`` odd."""
    return [
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]


def init_weights(model: nn.Module) -> None:
    """He-normal convs, unit BatchNorm, default Linear (shared by the CIFAR nets)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
