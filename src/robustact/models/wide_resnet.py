"""Wide ResNets (Zagoruyko & Komodakis, 2016) for CIFAR: WRN-depth-k.

``depth = 6n + 4``: a 3x3 stem with 16 channels, three groups of ``n`` pre-activation
blocks with 16k, 32k, 64k channels (strides 1, 2, 2), then ``bn - act - pool - fc``.
WRN-28-10 has 36.48 M parameters and WRN-34-10 46.16 M (10 classes), the models of
TRADES/AT benchmarks.
"""

from __future__ import annotations

from torch import Tensor, nn

from robustact.models._actspec import ActSpec
from robustact.models._common import ImageClassifier, Stat, act, init_weights
from robustact.models._factory import register_model

__all__ = ["WideBlock", "WideResNet"]


class WideBlock(nn.Module):
    """``conv2(drop(act2(bn2(conv1(act1(bn1(x))))))) + shortcut``.

    When the shape changes, the 1x1 shortcut reads the pre-activated input.
    """

    def __init__(
        self, cin: int, cout: int, stride: int, act_layer: ActSpec, drop_rate: float
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.act1 = act(act_layer, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = act(act_layer, cout)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(self.drop(self.act2(self.bn2(self.conv1(out)))))
        return out + skip


@register_model("wide_resnet", in_channels=3, input_size=(32, 32), family="wide_resnet")
class WideResNet(ImageClassifier):
    """WRN-depth-widen_factor.

    Args:
        depth: total depth, ``6n + 4`` (e.g. 16, 22, 28, 34, 40).
        widen_factor: channel multiplier ``k`` (>= 1).
        drop_rate: dropout between the two convs of each block (0 = none).
        num_classes, in_channels, act_layer, mean, std: as in ``create_model``.

    Shape: (N, C, H, W) -> (N, num_classes).
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        act_layer: ActSpec = None,
        depth: int = 28,
        widen_factor: int = 10,
        drop_rate: float = 0.0,
        mean: Stat = None,
        std: Stat = None,
    ) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ValueError(
                f"depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34...), got {depth!r}"
            )
        if isinstance(widen_factor, bool) or not isinstance(widen_factor, int) or widen_factor < 1:
            raise ValueError(f"widen_factor must be a positive int, got {widen_factor!r}")
        if not 0.0 <= float(drop_rate) < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.depth, self.widen_factor = depth, widen_factor
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        cin = widths[0]
        groups: list[nn.Module] = []
        for g, stride in enumerate((1, 2, 2)):
            seq = nn.Sequential()
            for j in range(n):
                cout = widths[g + 1]
                seq.append(WideBlock(cin, cout, stride if j == 0 else 1, act_layer, drop_rate))
                cin = cout
            groups.append(seq)
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(cin)
        self.act = act(act_layer, cin)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)

    def forward_normalized(self, x: Tensor) -> Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        x = self.act(self.bn(x))
        out: Tensor = self.fc(self.pool(x).flatten(1))
        return out


def _variant(name: str, depth: int, widen: int) -> None:
    def build(
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        act_layer: ActSpec = None,
        drop_rate: float = 0.0,
        mean: Stat = None,
        std: Stat = None,
    ) -> WideResNet:
        return WideResNet(
            num_classes=num_classes,
            in_channels=in_channels,
            act_layer=act_layer,
            depth=depth,
            widen_factor=widen,
            drop_rate=drop_rate,
            mean=mean,
            std=std,
        )

    build.__name__ = name
    build.__doc__ = f"WRN-{depth}-{widen} (see :class:`WideResNet`)."
    register_model(name, in_channels=3, input_size=(32, 32), family="wide_resnet")(build)


_variant("wrn_28_10", 28, 10)
_variant("wrn_34_10", 34, 10)
