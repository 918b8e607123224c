"""EfficientNet-B0 (Tan & Le, 2019) and EfficientNet-V2-S (Tan & Le, 2021), written here
(torchvision does not import).

Stage tables are the papers' (B0: Table 1; V2-S: Table 4): MBConv blocks (1x1 expand,
depthwise kxk, squeeze-and-excitation at 1/4 of the block's input channels, linear 1x1
projection) and, in V2's first stages, Fused-MBConv (one kxk expand conv, linear 1x1
projection, no SE). 5.29 M (B0) and 21.46 M (V2-S) parameters at 1000 classes.

As in the BReLU paper's Appendix A.3 the stem's stride is ``stem_stride`` (1 by default,
for 32x32 CIFAR inputs; 2 is the ImageNet network) and dropout is off unless
``drop_rate`` is set; stochastic depth is not used. Every activation (SiLU in the papers;
``act_layer``, ReLU by default here like the rest of the zoo, pass ``"silu"`` for the
original) is its own module, including the one inside each SE unit.
"""

from __future__ import annotations

from torch import Tensor, nn

from robustact.models._actspec import ActSpec
from robustact.models._common import ImageClassifier, Stat, act, conv_bn, init_weights
from robustact.models._factory import register_model

__all__ = ["EfficientNet", "FusedMBConv", "MBConv"]

#: (block "mb" | "fused", expansion, kernel, first stride, output channels, repeats)
B0: tuple[tuple[str, int, int, int, int, int], ...] = (
    ("mb", 1, 3, 1, 16, 1), ("mb", 6, 3, 2, 24, 2), ("mb", 6, 5, 2, 40, 2),
    ("mb", 6, 3, 2, 80, 3), ("mb", 6, 5, 1, 112, 3), ("mb", 6, 5, 2, 192, 4),
    ("mb", 6, 3, 1, 320, 1),
)  # fmt: skip
V2_S: tuple[tuple[str, int, int, int, int, int], ...] = (
    ("fused", 1, 3, 1, 24, 2), ("fused", 4, 3, 2, 48, 4), ("fused", 4, 3, 2, 64, 4),
    ("mb", 4, 3, 2, 128, 6), ("mb", 6, 3, 1, 160, 9), ("mb", 6, 3, 2, 256, 15),
)  # fmt: skip


def _cbn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(*conv_bn(cin, cout, k=k, stride=stride, groups=groups))


class SqueezeExcite(nn.Module):
    """x * sigmoid(W2 act(W1 avgpool(x))), ``squeeze`` hidden channels."""

    def __init__(self, channels: int, squeeze: int, act_layer: ActSpec) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.act = act(act_layer, squeeze)
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean((2, 3), keepdim=True)
        out: Tensor = x * self.gate(self.expand(self.act(self.reduce(s))))
        return out


class MBConv(nn.Module):
    """Inverted residual with SE; residual when stride 1 and channels match."""

    def __init__(
        self, cin: int, cout: int, expand: int, k: int, stride: int, act_layer: ActSpec
    ) -> None:
        super().__init__()
        hid = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers = nn.Sequential()
        if expand != 1:
            layers.add_module("expand", _cbn(cin, hid, 1))
            layers.add_module("expand_act", act(act_layer, hid))
        layers.add_module("dw", _cbn(hid, hid, k, stride, groups=hid))
        layers.add_module("dw_act", act(act_layer, hid))
        layers.add_module("se", SqueezeExcite(hid, max(1, cin // 4), act_layer))
        layers.add_module("project", _cbn(hid, cout, 1))
        self.layers = layers

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.layers(x)
        return x + out if self.use_residual else out


class FusedMBConv(nn.Module):
    """kxk expand conv (stride here) then a linear 1x1 projection; no SE."""

    def __init__(
        self, cin: int, cout: int, expand: int, k: int, stride: int, act_layer: ActSpec
    ) -> None:
        super().__init__()
        self.use_residual = stride == 1 and cin == cout
        layers = nn.Sequential()
        if expand == 1:
            layers.add_module("fused", _cbn(cin, cout, k, stride))
            layers.add_module("fused_act", act(act_layer, cout))
        else:
            hid = cin * expand
            layers.add_module("fused", _cbn(cin, hid, k, stride))
            layers.add_module("fused_act", act(act_layer, hid))
            layers.add_module("project", _cbn(hid, cout, 1))
        self.layers = layers

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.layers(x)
        return x + out if self.use_residual else out


class EfficientNet(ImageClassifier):
    """An EfficientNet from a stage table (see :data:`B0`, :data:`V2_S`).

    Args:
        stages: rows ``(block, expansion, kernel, stride, channels, repeats)``.
        stem: stem conv channels (B0 32, V2-S 24).
        stem_stride: 1 (CIFAR, the BReLU paper's change) or 2 (ImageNet).
        drop_rate: dropout before the classifier (0 = none).
        num_classes, in_channels, act_layer, mean, std: as in ``create_model``.

    Shape: (N, C, H, W) -> (N, num_classes).
    """

    def __init__(
        self, *, stages: tuple[tuple[str, int, int, int, int, int], ...], stem: int,
        num_classes: int = 10, in_channels: int = 3, act_layer: ActSpec = None,
        stem_stride: int = 1, drop_rate: float = 0.0, mean: Stat = None, std: Stat = None,
    ) -> None:  # fmt: skip
        super().__init__(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
        if not 0.0 <= float(drop_rate) < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
        self.stem = _cbn(in_channels, stem, 3, stem_stride)
        self.stem_act = act(act_layer, stem)
        blocks = nn.Sequential()
        cin = stem
        for kind, e, k, s, c, n in stages:
            cls = FusedMBConv if kind == "fused" else MBConv
            for i in range(n):
                blocks.append(cls(cin, c, e, k, s if i == 0 else 1, act_layer))
                cin = c
        self.blocks = blocks
        self.head = _cbn(cin, 1280, 1)
        self.head_act = act(act_layer, 1280)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(float(drop_rate)) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(1280, num_classes)
        init_weights(self)

    def forward_normalized(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem_act(self.stem(x)))
        x = self.head_act(self.head(x))
        out: Tensor = self.fc(self.drop(self.pool(x).flatten(1)))
        return out


@register_model("efficientnet_b0", in_channels=3, input_size=(32, 32), family="efficientnet")
def efficientnet_b0(
    *, num_classes: int = 10, in_channels: int = 3, act_layer: ActSpec = None,
    stem_stride: int = 1, drop_rate: float = 0.0, mean: Stat = None, std: Stat = None,
) -> EfficientNet:  # fmt: skip
    """EfficientNet-B0 (see :class:`EfficientNet`)."""
    return EfficientNet(stages=B0, stem=32, num_classes=num_classes, in_channels=in_channels,
                        act_layer=act_layer, stem_stride=stem_stride, drop_rate=drop_rate,
                        mean=mean, std=std)  # fmt: skip


@register_model("efficientnet_v2_s", in_channels=3, input_size=(32, 32), family="efficientnet")
def efficientnet_v2_s(
    *, num_classes: int = 10, in_channels: int = 3, act_layer: ActSpec = None,
    stem_stride: int = 1, drop_rate: float = 0.0, mean: Stat = None, std: Stat = None,
) -> EfficientNet:  # fmt: skip
    """EfficientNet-V2-S (see :class:`EfficientNet`), the BReLU paper's third model."""
    return EfficientNet(stages=V2_S, stem=24, num_classes=num_classes, in_channels=in_channels,
                        act_layer=act_layer, stem_stride=stem_stride, drop_rate=drop_rate,
                        mean=mean, std=std)  # fmt: skip
