"""Inception v3 (Szegedy et al., 2016), written here (torchvision does not import).

The blocks follow the paper's Figures 5-7 with the widths of the reference implementation
(Mixed_5b .. Mixed_7c, 23.8 M parameters at 1000 classes without the auxiliary head, which
is not built: nothing here trains with it). ``cifar_stem=True`` (the default, for the 32x32
inputs of the dissertation's CIFAR experiments, whose stem the seed does not give) keeps
every stem convolution but with stride 1, "same" padding and no max-pools, so 32x32 images
reach Mixed_7c at 7x7; ``cifar_stem=False`` is the 299x299 ImageNet stem. The parameter
count is the same either way. Every convolution is conv (no bias) - BatchNorm - activation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustact.models._actspec import ActSpec
from robustact.models._common import ImageClassifier, Stat, act, init_weights
from robustact.models._factory import register_model

__all__ = ["InceptionV3"]

_K = int | tuple[int, int]


def _pad(k: _K) -> tuple[int, int]:
    kh, kw = (k, k) if isinstance(k, int) else k
    return kh // 2, kw // 2


class ConvBN(nn.Sequential):
    """Conv2d (no bias) - BatchNorm2d (eps 1e-3) - activation."""

    def __init__(
        self, cin: int, cout: int, k: _K, act_layer: ActSpec, stride: int = 1,
        padding: int | tuple[int, int] | None = None,
    ) -> None:  # fmt: skip
        pad = _pad(k) if padding is None else padding
        super().__init__(
            nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False),
            nn.BatchNorm2d(cout, eps=1e-3),
            act(act_layer, cout),
        )


class _Branches(nn.Module):
    """Runs every branch on the input and concatenates the results along channels."""

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


class _Split(nn.Module):
    """A 1x3 and a 3x1 convolution of the same input, concatenated (Fig 7's expanded bank)."""

    def __init__(self, cin: int, cout: int, a: ActSpec) -> None:
        super().__init__()
        self.a, self.b = ConvBN(cin, cout, (1, 3), a), ConvBN(cin, cout, (3, 1), a)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.a(x), self.b(x)], 1)


def _pool_proj(cin: int, cout: int, a: ActSpec) -> nn.Sequential:
    return nn.Sequential(nn.AvgPool2d(3, 1, 1), ConvBN(cin, cout, 1, a))


def block_a(cin: int, pool: int, a: ActSpec) -> _Branches:
    """Fig 5 (35x35): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | pool-1x1; 224 + ``pool`` channels."""
    return _Branches(
        ConvBN(cin, 64, 1, a),
        nn.Sequential(ConvBN(cin, 48, 1, a), ConvBN(48, 64, 5, a)),
        nn.Sequential(ConvBN(cin, 64, 1, a), ConvBN(64, 96, 3, a), ConvBN(96, 96, 3, a)),
        _pool_proj(cin, pool, a),
    )


def block_b(cin: int, a: ActSpec) -> _Branches:
    """Grid reduction 35 -> 17: 3x3/2 | 1x1-3x3-3x3/2 | max-pool; 480 + cin channels."""
    return _Branches(
        ConvBN(cin, 384, 3, a, stride=2, padding=0),
        nn.Sequential(
            ConvBN(cin, 64, 1, a), ConvBN(64, 96, 3, a), ConvBN(96, 96, 3, a, stride=2, padding=0)
        ),
        nn.MaxPool2d(3, 2),
    )


def block_c(cin: int, c7: int, a: ActSpec) -> _Branches:
    """Fig 6 (17x17, factorised 7x7): four branches of 192 channels (768)."""
    return _Branches(
        ConvBN(cin, 192, 1, a),
        nn.Sequential(ConvBN(cin, c7, 1, a), ConvBN(c7, c7, (1, 7), a), ConvBN(c7, 192, (7, 1), a)),
        nn.Sequential(
            ConvBN(cin, c7, 1, a),
            ConvBN(c7, c7, (7, 1), a),
            ConvBN(c7, c7, (1, 7), a),
            ConvBN(c7, c7, (7, 1), a),
            ConvBN(c7, 192, (1, 7), a),
        ),
        _pool_proj(cin, 192, a),
    )


def block_d(cin: int, a: ActSpec) -> _Branches:
    """Grid reduction 17 -> 8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max-pool; 512 + cin."""
    return _Branches(
        nn.Sequential(ConvBN(cin, 192, 1, a), ConvBN(192, 320, 3, a, stride=2, padding=0)),
        nn.Sequential(
            ConvBN(cin, 192, 1, a),
            ConvBN(192, 192, (1, 7), a),
            ConvBN(192, 192, (7, 1), a),
            ConvBN(192, 192, 3, a, stride=2, padding=0),
        ),
        nn.MaxPool2d(3, 2),
    )


def block_e(cin: int, a: ActSpec) -> _Branches:
    """Fig 7 (8x8, expanded filter bank): 320 + 768 + 768 + 192 = 2048 channels."""
    return _Branches(
        ConvBN(cin, 320, 1, a),
        nn.Sequential(ConvBN(cin, 384, 1, a), _Split(384, 384, a)),
        nn.Sequential(ConvBN(cin, 448, 1, a), ConvBN(448, 384, 3, a), _Split(384, 384, a)),
        _pool_proj(cin, 192, a),
    )


def _stem(cin: int, a: ActSpec, cifar: bool) -> nn.Sequential:
    s, p0 = (1, 1) if cifar else (2, 0)
    pool: list[nn.Module] = [] if cifar else [nn.MaxPool2d(3, 2)]
    return nn.Sequential(
        ConvBN(cin, 32, 3, a, stride=s, padding=p0), ConvBN(32, 32, 3, a, padding=p0),
        ConvBN(32, 64, 3, a), *pool, ConvBN(64, 80, 1, a),
        ConvBN(80, 192, 3, a, padding=p0), *pool,
    )  # fmt: skip


@register_model("inception_v3", in_channels=3, input_size=(32, 32), family="inception")
class InceptionV3(ImageClassifier):
    """Inception v3 without the auxiliary classifier.

    Args:
        cifar_stem: stride-1 stem without max-pools for 32x32 inputs (see the module
            docstring); False: the ImageNet stem (inputs of at least 75x75).
        drop_rate: dropout before the classifier (the paper's 0.2 is not the default:
            nothing else in the zoo drops out unless asked).
        num_classes, in_channels, act_layer, mean, std: as in ``create_model``.

    Shape: (N, C, H, W) -> (N, num_classes); H, W >= 32 with the CIFAR stem.
    """

    def __init__(
        self, *, num_classes: int = 10, in_channels: int = 3, act_layer: ActSpec = None,
        cifar_stem: bool = True, drop_rate: float = 0.0, mean: Stat = None, std: Stat = None,
    ) -> None:  # fmt: skip
        super().__init__(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)
        if not 0.0 <= float(drop_rate) < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
        a = act_layer
        self.stem = _stem(in_channels, a, bool(cifar_stem))
        self.mixed = nn.Sequential(
            block_a(192, 32, a), block_a(256, 64, a), block_a(288, 64, a), block_b(288, a),
            block_c(768, 128, a), block_c(768, 160, a), block_c(768, 160, a),
            block_c(768, 192, a), block_d(768, a), block_e(1280, a), block_e(2048, a),
        )  # fmt: skip
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(float(drop_rate)) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(2048, num_classes)
        init_weights(self)

    def forward_normalized(self, x: Tensor) -> Tensor:
        x = self.mixed(self.stem(x))
        out: Tensor = self.fc(self.drop(self.pool(x).flatten(1)))
        return out
