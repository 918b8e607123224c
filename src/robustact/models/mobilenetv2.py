"""MobileNetV2 (Sandler et al., 2018) with CIFAR strides.

The 3x3 stem has stride 1 and the second stage (24 channels) stride 1 instead of 2, so a
32x32 input reaches the last stage at 4x4 (the usual CIFAR adaptation). The original uses
ReLU6; here every activation is ``act_layer`` (ReLU by default; pass ``"relu6"`` for the
original). The projection 1x1 conv of each block stays linear (no activation).
"""

from __future__ import annotations

from torch import Tensor, nn

from robustact.models._actspec import ActSpec
from robustact.models._common import ImageClassifier, Stat, act, conv_bn, init_weights
from robustact.models._factory import register_model

__all__ = ["InvertedResidual", "MobileNetV2"]

#: (expansion t, output channels c, repeats n, first stride s) per stage, CIFAR strides.
CIFAR_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """Expand (1x1) - depthwise (3x3) - project (1x1, linear), residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, act_layer: ActSpec) -> None:
        super().__init__()
        hid = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers = nn.Sequential()
        if expand != 1:
            conv, bn = conv_bn(cin, hid, k=1)
            layers.add_module("expand_conv", conv)
            layers.add_module("expand_bn", bn)
            layers.add_module("expand_act", act(act_layer, hid))
        conv, bn = conv_bn(hid, hid, k=3, stride=stride, groups=hid)
        layers.add_module("dw_conv", conv)
        layers.add_module("dw_bn", bn)
        layers.add_module("dw_act", act(act_layer, hid))
        conv, bn = conv_bn(hid, cout, k=1)
        layers.add_module("project_conv", conv)
        layers.add_module("project_bn", bn)
        self.layers = layers

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.layers(x)
        return x + out if self.use_residual else out


@register_model("mobilenet_v2", in_channels=3, input_size=(32, 32), family="mobilenet")
class MobileNetV2(ImageClassifier):
    """MobileNetV2 for 32x32 inputs (2.24 M parameters for 10 classes at width 1).

    Args:
        width_mult: channel multiplier (1.0 = the paper's network).
        drop_rate: dropout before the classifier (0 = none).
        num_classes, in_channels, act_layer, mean, std: as in ``create_model``.

    Shape: (N, C, H, W) -> (N, num_classes).
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        act_layer: ActSpec = None,
        width_mult: float = 1.0,
        drop_rate: float = 0.0,
        mean: Stat = None,
        std: Stat = None,
    ) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)
        if not float(width_mult) > 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult!r}")
        if not 0.0 <= float(drop_rate) < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}")

        def ch(c: int) -> int:
            # round to a multiple of 8, never below 90 % of the target (as in the paper's code)
            v = max(8, int(c * width_mult + 4) // 8 * 8)
            return v + 8 if v < 0.9 * c * width_mult else v

        stem = ch(32)
        self.stem_conv, self.stem_bn = conv_bn(in_channels, stem)
        self.stem_act = act(act_layer, stem)
        blocks = nn.Sequential()
        cin = stem
        for t, c, n, s in CIFAR_SETTINGS:
            cout = ch(c)
            for i in range(n):
                blocks.append(InvertedResidual(cin, cout, s if i == 0 else 1, t, act_layer))
                cin = cout
        self.blocks = blocks
        last = max(1280, ch(1280))
        self.head_conv, self.head_bn = conv_bn(cin, last, k=1)
        self.head_act = act(act_layer, last)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(float(drop_rate)) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(last, num_classes)
        init_weights(self)

    def forward_normalized(self, x: Tensor) -> Tensor:
        x = self.stem_act(self.stem_bn(self.stem_conv(x)))
        x = self.head_act(self.head_bn(self.head_conv(self.blocks(x))))
        out: Tensor = self.fc(self.drop(self.pool(x).flatten(1)))
        return out
