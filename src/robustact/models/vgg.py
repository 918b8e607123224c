"""VGG-16 for CIFAR as in the BReLU paper's appendix (A.2, Table 9).

Starting from torchvision's VGG-16 (no batch norm): the max-pools after the third, fourth
and fifth conv blocks are removed, so 32x32 inputs give 512x8x8 features; the adaptive
average pool to 7x7 is kept; the two 4096-unit hidden layers become one ``fc_hidden`` layer
of 1024 units and the dropout is removed. Table 9's classifier rows are "[-1, 1024] Fully
connected, Activation function; [-1, 10] Fully connected": one hidden layer, so the default
is ``fc_hidden=(1024,)`` (25088 -> 1024 -> classes); ``fc_hidden=(1024, 1024)`` keeps
torchvision's three-layer shape.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from robustact.models._actspec import ActSpec
from robustact.models._common import ImageClassifier, Stat, act
from robustact.models._factory import register_model

__all__ = ["VGG"]

#: VGG-16 conv widths per block; "M" marks a max-pool kept in the CIFAR variant.
VGG16_CFG: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    512,
    512,
    512,
    512,
    512,
    512,
)


@register_model("vgg16", in_channels=3, input_size=(32, 32), family="vgg")
class VGG(ImageClassifier):
    """VGG-16, CIFAR variant (see the module docstring).

    Args:
        fc_hidden: widths of the classifier's hidden layers.
        batch_norm: add BatchNorm after each conv (off in the paper's variant).
        num_classes, in_channels, act_layer, mean, std: as in ``create_model``.

    Shape: (N, C, H, W) -> (N, num_classes).
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        act_layer: ActSpec = None,
        fc_hidden: Sequence[int] = (1024,),
        batch_norm: bool = False,
        mean: Stat = None,
        std: Stat = None,
    ) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)
        hidden = list(fc_hidden)
        if not all(isinstance(w, int) and w >= 1 for w in hidden):
            raise ValueError(f"fc_hidden must be positive ints, got {fc_hidden!r}")
        f = nn.Sequential()
        cin, k, p = in_channels, 0, 0
        for item in VGG16_CFG:
            if item == "M":
                p += 1
                f.add_module(f"pool{p}", nn.MaxPool2d(2))
                continue
            assert isinstance(item, int)
            k += 1
            f.add_module(f"conv{k}", nn.Conv2d(cin, item, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                f.add_module(f"bn{k}", nn.BatchNorm2d(item))
            f.add_module(f"act{k}", act(act_layer, item))
            cin = item
        self.features = f
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        c = nn.Sequential()
        prev = cin * 7 * 7
        for i, width in enumerate(hidden, start=1):
            c.add_module(f"fc{i}", nn.Linear(prev, width))
            c.add_module(f"act{i}", act(act_layer, width))
            prev = width
        c.add_module("fc_out", nn.Linear(prev, num_classes))
        self.classifier = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_normalized(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        out: Tensor = self.classifier(x.flatten(1))
        return out
