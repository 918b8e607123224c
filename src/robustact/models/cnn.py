"""Small MNIST/CIFAR convolutional networks: ``shallow_cnn``, ``lenet5``, ``small_cnn``.

Their flatten width depends on the input, so each takes ``input_size`` (28x28 default;
32x32 and other sizes work). Activations are named ``act1``, ``act2``, ... in order.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from robustact.models._actspec import ActSpec
from robustact.models._common import ImageClassifier, Stat, act, parse_input_size
from robustact.models._factory import register_model

__all__ = ["LeNet5", "ShallowCNN", "SmallCNN"]


def _out(size: int, k: int, pad: int = 0, stride: int = 1) -> int:
    """Spatial size after a conv/pool with kernel ``k``."""
    return (size + 2 * pad - k) // stride + 1


def _check_positive(h: int, w: int, name: str, min_size: int) -> None:
    if h < 1 or w < 1:
        raise ValueError(
            f"{name} needs inputs of at least {min_size}x{min_size}; the size is too small"
        )


class _Sequential(ImageClassifier):
    """An ImageClassifier whose body is ``features`` then ``classifier`` (both Sequential)."""

    features: nn.Sequential
    classifier: nn.Sequential

    def forward_normalized(self, x: Tensor) -> Tensor:
        out: Tensor = self.classifier(self.features(x).flatten(1))
        return out


@register_model("shallow_cnn", in_channels=1, input_size=(28, 28), family="cnn")
class ShallowCNN(_Sequential):
    """Two conv blocks and one hidden dense layer (the dissertation's "shallow CNN").

    ``conv(C, c1, 3, pad 1) - act1 - maxpool 2 - conv(c1, c2, 3, pad 1) - act2 - maxpool 2
    - fc(c2 * H/4 * W/4, hidden) - act3 - fc(hidden, num_classes)``.

    Shape: (N, C, H, W) -> (N, num_classes).
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        act_layer: ActSpec = None,
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        input_size: int | Sequence[int] | None = None,
        mean: Stat = None,
        std: Stat = None,
    ) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)
        c1, c2 = list(channels)
        h, w = parse_input_size(input_size, in_channels, (28, 28))
        fh, fw = h // 4, w // 4
        _check_positive(fh, fw, "shallow_cnn", 4)
        self.features = nn.Sequential()
        self.features.add_module("conv1", nn.Conv2d(in_channels, c1, 3, padding=1))
        self.features.add_module("act1", act(act_layer, c1))
        self.features.add_module("pool1", nn.MaxPool2d(2))
        self.features.add_module("conv2", nn.Conv2d(c1, c2, 3, padding=1))
        self.features.add_module("act2", act(act_layer, c2))
        self.features.add_module("pool2", nn.MaxPool2d(2))
        self.classifier = nn.Sequential()
        self.classifier.add_module("fc1", nn.Linear(c2 * fh * fw, hidden))
        self.classifier.add_module("act3", act(act_layer, hidden))
        self.classifier.add_module("fc_out", nn.Linear(hidden, num_classes))


@register_model("lenet5", in_channels=1, input_size=(28, 28), family="cnn")
class LeNet5(_Sequential):
    """LeNet-5 with max pooling: conv6(5) - pool - conv16(5) - pool - fc120 - fc84 - out.

    Inputs smaller than 32x32 (MNIST's 28x28) get padding 2 on the first conv, so the
    feature map is 16x5x5 for both 28x28 and 32x32 inputs, as in the original design.

    Shape: (N, C, H, W) -> (N, num_classes).
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        act_layer: ActSpec = None,
        input_size: int | Sequence[int] | None = None,
        mean: Stat = None,
        std: Stat = None,
    ) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)
        h, w = parse_input_size(input_size, in_channels, (28, 28))
        pad = 2 if min(h, w) < 32 else 0
        fh = _out(_out(_out(_out(h, 5, pad), 2, stride=2), 5), 2, stride=2)
        fw = _out(_out(_out(_out(w, 5, pad), 2, stride=2), 5), 2, stride=2)
        _check_positive(fh, fw, "lenet5", 12)
        self.features = nn.Sequential()
        self.features.add_module("conv1", nn.Conv2d(in_channels, 6, 5, padding=pad))
        self.features.add_module("act1", act(act_layer, 6))
        self.features.add_module("pool1", nn.MaxPool2d(2))
        self.features.add_module("conv2", nn.Conv2d(6, 16, 5))
        self.features.add_module("act2", act(act_layer, 16))
        self.features.add_module("pool2", nn.MaxPool2d(2))
        self.classifier = nn.Sequential()
        self.classifier.add_module("fc1", nn.Linear(16 * fh * fw, 120))
        self.classifier.add_module("act3", act(act_layer, 120))
        self.classifier.add_module("fc2", nn.Linear(120, 84))
        self.classifier.add_module("act4", act(act_layer, 84))
        self.classifier.add_module("fc_out", nn.Linear(84, num_classes))


@register_model("small_cnn", in_channels=1, input_size=(28, 28), family="cnn")
class SmallCNN(_Sequential):
    """The 4-conv + 3-FC MNIST network of TRADES (Zhang et al., 2019).

    ``conv32 - conv32 - pool - conv64 - conv64 - pool - fc200 - dropout - fc200 - out``,
    3x3 valid convs; with 28x28 inputs the flatten width is 64*4*4 = 1024 (32x32: 1600).
    The output layer keeps PyTorch's default init (TRADES zeroes it, which would give a
    zero input gradient before training).

    Shape: (N, C, H, W) -> (N, num_classes).
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        act_layer: ActSpec = None,
        drop_rate: float = 0.5,
        input_size: int | Sequence[int] | None = None,
        mean: Stat = None,
        std: Stat = None,
    ) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)
        if not 0.0 <= float(drop_rate) < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
        h, w = parse_input_size(input_size, in_channels, (28, 28))
        fh = _out(_out(_out(_out(h, 3), 3), 2, stride=2) - 4, 2, stride=2)
        fw = _out(_out(_out(_out(w, 3), 3), 2, stride=2) - 4, 2, stride=2)
        _check_positive(fh, fw, "small_cnn", 14)
        f = nn.Sequential()
        f.add_module("conv1", nn.Conv2d(in_channels, 32, 3))
        f.add_module("act1", act(act_layer, 32))
        f.add_module("conv2", nn.Conv2d(32, 32, 3))
        f.add_module("act2", act(act_layer, 32))
        f.add_module("pool1", nn.MaxPool2d(2))
        f.add_module("conv3", nn.Conv2d(32, 64, 3))
        f.add_module("act3", act(act_layer, 64))
        f.add_module("conv4", nn.Conv2d(64, 64, 3))
        f.add_module("act4", act(act_layer, 64))
        f.add_module("pool2", nn.MaxPool2d(2))
        self.features = f
        c = nn.Sequential()
        c.add_module("fc1", nn.Linear(64 * fh * fw, 200))
        c.add_module("act5", act(act_layer, 200))
        c.add_module("drop", nn.Dropout(float(drop_rate)))
        c.add_module("fc2", nn.Linear(200, 200))
        c.add_module("act6", act(act_layer, 200))
        c.add_module("fc_out", nn.Linear(200, num_classes))
        self.classifier = c
