"""Dense networks of the dissertation (Ch. 4): general, reversed, equal and three-layer MLPs.

Hidden layer ``i`` (1-based) is ``fc{i}`` followed by activation ``act{i}``; the output
layer is ``fc_out``. ``act_layers=[None, "srelu"]`` puts S-ReLU on the second hidden layer
only (the dissertation's placement), the others taking ``act_layer``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from torch import Tensor, nn

from robustact.models._actspec import ActSpec
from robustact.models._common import ImageClassifier, Stat, act, parse_input_size
from robustact.models._factory import register_model

__all__ = ["MLP"]


class MLP(ImageClassifier):
    """Fully connected classifier that flattens its input.

    Args:
        num_classes: output logits.
        in_channels: channels of the input images.
        hidden: widths of the hidden layers, e.g. (392, 196).
        act_layer: activation of every hidden layer (None = ReLU).
        act_layers: optional per-hidden-layer activations (one per hidden layer; None
            entries fall back to ``act_layer``).
        input_size: (H, W) or (C, H, W) of the images; ignored when ``in_features`` given.
        in_features: flattened input size (must equal C*H*W of the inputs).
        mean, std: input normalisation (see :class:`Normalize`).

    Shape: (N, C, H, W) or (N, in_features) in [0, 1] -> (N, num_classes).
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        hidden: Sequence[int] = (392, 196),
        act_layer: ActSpec = None,
        act_layers: Sequence[ActSpec] | None = None,
        input_size: int | Sequence[int] | None = None,
        in_features: int | None = None,
        mean: Stat = None,
        std: Stat = None,
    ) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)
        widths = [hidden] if isinstance(hidden, int) else list(hidden)
        if not widths or not all(isinstance(w, int) and w >= 1 for w in widths):
            raise ValueError(
                f"hidden must be a non-empty sequence of positive ints, got {hidden!r}"
            )
        if in_features is None:
            h, w = parse_input_size(input_size, in_channels, (28, 28))
            in_features = in_channels * h * w
        elif isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"in_features must be a positive int, got {in_features!r}")
        if act_layers is None:
            per_layer: list[ActSpec] = [act_layer] * len(widths)
        else:
            per_layer = list(act_layers)
            if len(per_layer) != len(widths):
                raise ValueError(
                    f"act_layers has {len(per_layer)} entries but there are {len(widths)} "
                    "hidden layers; give one per hidden layer (None = act_layer)"
                )
            per_layer = [act_layer if a is None else a for a in per_layer]
        self.in_features = in_features
        self.hidden = tuple(widths)
        prev = in_features
        for i, (width, spec) in enumerate(zip(widths, per_layer, strict=True), start=1):
            self.add_module(f"fc{i}", nn.Linear(prev, width))
            self.add_module(f"act{i}", act(spec, width))
            prev = width
        self.fc_out = nn.Linear(prev, num_classes)

    def check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"model input must be a Tensor, got {type(x).__name__}")
        n = math.prod(x.shape[1:]) if x.dim() >= 2 else -1
        if n != self.in_features or (x.dim() == 4 and x.shape[1] != self.in_channels):
            raise ValueError(
                f"MLP expects (N, {self.in_channels}, H, W) images with "
                f"{self.in_features} values each, got shape {tuple(x.shape)}"
            )

    def forward_normalized(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for i in range(1, len(self.hidden) + 1):
            x = getattr(self, f"act{i}")(getattr(self, f"fc{i}")(x))
        out: Tensor = self.fc_out(x)
        return out


for _name, _hidden in (
    ("mlp_general", (392, 196)),  # dissertation "general": in-392-196-out
    ("mlp_reversed", (196, 392)),  # dissertation "reversed": in-196-392-out
    ("mlp_equal", (784, 784)),  # dissertation "equal": in-784-784-out
    ("mlp_three", (392, 196, 98)),
):
    register_model(_name, in_channels=1, input_size=(28, 28), family="mlp")(
        functools.partial(MLP, hidden=_hidden)
    )
