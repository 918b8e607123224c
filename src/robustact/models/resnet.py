"""CIFAR-style ResNets (He et al., 2016): 3x3 stride-1 stem, no max-pool.

This is the ResNet-18 of the BReLU paper's appendix (Table 7): torchvision's ResNet with
the stem conv changed to 3x3/stride 1 and the max-pool removed. Stages of 64/128/256/512
(x4 for bottlenecks) at 32, 16, 8, 4 pixels for 32x32 inputs. Every block owns its own
activation modules (``act1``, ``act2``[, ``act3``]), so surgery can swap each site.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from robustact.models._actspec import ActSpec
from robustact.models._common import ImageClassifier, Stat, act, conv_bn, init_weights
from robustact.models._factory import register_model

__all__ = ["BasicBlock", "Bottleneck", "ResNet"]


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(*conv_bn(cin, cout, k=1, stride=stride))


class BasicBlock(nn.Module):
    """Two 3x3 convs: ``act2(bn2(conv2(act1(bn1(conv1(x))))) + shortcut(x))``."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, act_layer: ActSpec) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, planes, stride=stride)
        self.act1 = act(act_layer, planes)
        self.conv2, self.bn2 = conv_bn(planes, planes)
        self.shortcut = _shortcut(cin, planes, stride)
        self.act2 = act(act_layer, planes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: Tensor = self.act2(out + self.shortcut(x))
        return result


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride here, as in torchvision v1.5), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, act_layer: ActSpec) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1, self.bn1 = conv_bn(cin, planes, k=1)
        self.act1 = act(act_layer, planes)
        self.conv2, self.bn2 = conv_bn(planes, planes, stride=stride)
        self.act2 = act(act_layer, planes)
        self.conv3, self.bn3 = conv_bn(planes, out, k=1)
        self.shortcut = _shortcut(cin, out, stride)
        self.act3 = act(act_layer, out)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        result: Tensor = self.act3(out + self.shortcut(x))
        return result


class ResNet(ImageClassifier):
    """CIFAR ResNet.

    Args:
        block: "basic" or "bottleneck".
        layers: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
        width: channels of the first stage (64 in the paper); later stages double.
        stem: "cifar" (3x3 stride-1 conv, no max-pool) or "imagenet" (the paper's 7x7
            stride-2 conv and 3x3 stride-2 max-pool, for 224x224 inputs).
        num_classes, in_channels, act_layer, mean, std: as in ``create_model``.

    Shape: (N, C, H, W) with H, W >= 8 -> (N, num_classes) (global average pooling).
    """

    def __init__(
        self,
        *,
        block: str = "basic",
        layers: Sequence[int] = (2, 2, 2, 2),
        width: int = 64,
        num_classes: int = 10,
        in_channels: int = 3,
        act_layer: ActSpec = None,
        mean: Stat = None,
        std: Stat = None,
        stem: str = "cifar",
    ) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        blocks: dict[str, type[BasicBlock] | type[Bottleneck]] = {
            "basic": BasicBlock,
            "bottleneck": Bottleneck,
        }
        if block not in blocks:
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
        if len(layers) != 4 or not all(isinstance(n, int) and n >= 1 for n in layers):
            raise ValueError(f"layers must be four positive ints, got {layers!r}")
        cls = blocks[block]
        self.conv1: nn.Module
        self.bn1: nn.Module
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
        else:
            self.conv1, self.bn1 = conv_bn(in_channels, width)
        self.act1 = act(act_layer, width)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
        cin = width
        stages: list[nn.Module] = []
        for i, n in enumerate(layers):
            planes = width * 2**i
            seq = nn.Sequential()
            for j in range(n):
                seq.append(cls(cin, planes, 2 if (i > 0 and j == 0) else 1, act_layer))
                cin = planes * cls.expansion
            stages.append(seq)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)

    def forward_normalized(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        out: Tensor = self.fc(self.pool(x).flatten(1))
        return out


def _resnet(block: str, layers: tuple[int, int, int, int]) -> type[ResNet]:
    class _Variant(ResNet):
        def __init__(
            self,
            *,
            num_classes: int = 10,
            in_channels: int = 3,
            act_layer: ActSpec = None,
            width: int = 64,
            mean: Stat = None,
            std: Stat = None,
        ) -> None:
            super().__init__(
                block=block,
                layers=layers,
                width=width,
                num_classes=num_classes,
                in_channels=in_channels,
                act_layer=act_layer,
                mean=mean,
                std=std,
            )

    return _Variant


def _register(name: str, block: str, layers: tuple[int, int, int, int]) -> type[ResNet]:
    cls = _resnet(block, layers)
    cls.__name__ = cls.__qualname__ = name.replace("resnet", "ResNet")
    cls.__doc__ = f"CIFAR {name}: {block} blocks {layers} (see :class:`ResNet`)."
    return register_model(name, in_channels=3, input_size=(32, 32), family="resnet")(cls)


ResNet18 = _register("resnet18", "basic", (2, 2, 2, 2))
ResNet34 = _register("resnet34", "basic", (3, 4, 6, 3))
ResNet50 = _register("resnet50", "bottleneck", (3, 4, 6, 3))
ResNet101 = _register("resnet101", "bottleneck", (3, 4, 23, 3))


@register_model("resnet18_imagenet", in_channels=3, input_size=(224, 224), family="resnet")
class ResNet18ImageNet(ResNet):
    """ResNet-18 with the ImageNet stem (7x7 stride-2 conv + 3x3 stride-2 max-pool), as the
    BReLU paper trains it on ImageNet-100 ("the original structure ... without
    modifications"); 11.69 M parameters at 1000 classes."""

    def __init__(
        self, *, num_classes: int = 1000, in_channels: int = 3, act_layer: ActSpec = None,
        width: int = 64, mean: Stat = "imagenet", std: Stat = "imagenet",
    ) -> None:  # fmt: skip
        super().__init__(block="basic", layers=(2, 2, 2, 2), width=width,
                         num_classes=num_classes, in_channels=in_channels, act_layer=act_layer,
                         mean=mean, std=std, stem="imagenet")  # fmt: skip
