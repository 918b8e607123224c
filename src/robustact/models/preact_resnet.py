"""Pre-activation ResNet-18 for CIFAR (He et al., 2016, "Identity mappings").

Blocks compute ``conv2(act2(bn2(conv1(act1(bn1(x)))))) + shortcut``, where the shortcut
conv (when the shape changes) reads the pre-activated input, as in the reference design.
A final ``bn - act`` precedes the global pooling.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from robustact.models._actspec import ActSpec
from robustact.models._common import ImageClassifier, Stat, act, init_weights
from robustact.models._factory import register_model

__all__ = ["PreActBlock", "PreActResNet"]


class PreActBlock(nn.Module):
    """Pre-activation basic block with its own ``act1``/``act2`` modules."""

    def __init__(self, cin: int, planes: int, stride: int, act_layer: ActSpec) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.act1 = act(act_layer, cin)
        self.conv1 = nn.Conv2d(cin, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = act(act_layer, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != planes:
            self.shortcut = nn.Conv2d(cin, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.act2(self.bn2(out)))
        return out + skip


@register_model("preact_resnet18", in_channels=3, input_size=(32, 32), family="resnet")
class PreActResNet(ImageClassifier):
    """Pre-activation ResNet (default: PreAct ResNet-18, 11.17 M parameters for 10 classes).

    Args:
        layers: blocks per stage (default (2, 2, 2, 2)).
        width: first-stage channels (64); stages double it.
        num_classes, in_channels, act_layer, mean, std: as in ``create_model``.

    Shape: (N, C, H, W) -> (N, num_classes).
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        act_layer: ActSpec = None,
        layers: Sequence[int] = (2, 2, 2, 2),
        width: int = 64,
        mean: Stat = None,
        std: Stat = None,
    ) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)
        if len(layers) != 4 or not all(isinstance(n, int) and n >= 1 for n in layers):
            raise ValueError(f"layers must be four positive ints, got {layers!r}")
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        cin = width
        stages: list[nn.Module] = []
        for i, n in enumerate(layers):
            planes = width * 2**i
            seq = nn.Sequential()
            for j in range(n):
                seq.append(PreActBlock(cin, planes, 2 if (i > 0 and j == 0) else 1, act_layer))
                cin = planes
            stages.append(seq)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn = nn.BatchNorm2d(cin)
        self.act = act(act_layer, cin)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)

    def forward_normalized(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.act(self.bn(x))
        out: Tensor = self.fc(self.pool(x).flatten(1))
        return out
