"""A small CNN that robustact never built: an example for ``--model examples/mynet.py:MyNet``.

Train it with plain PyTorch and save ``torch.save(model.state_dict(), "my.pt")``; then::

    robustact evaluate --model examples/mynet.py:MyNet --weights my.pt --dataset digits \
        --eps 8/255 --protocol adaptive --json -

Images come in as (N, 1, 8, 8) in [0, 1] (scikit-learn's digits); the model normalises them
itself, as robustact's contract asks (attacks work in pixel space).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MyNet(nn.Module):
    """Conv(1→c) → ReLU → Conv(c→2c, stride 2) → ReLU → Linear(2c·4·4 → classes).

    Args:
        channels: width of the first convolution.
        num_classes: number of outputs.
    """

    def __init__(self, channels: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(0.3))
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1)
        self.act2 = nn.ReLU()
        self.fc = nn.Linear(2 * channels * 4 * 4, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) for images (N, 1, 8, 8) in [0, 1]."""
        h = self.act1(self.conv1(x - self.mean))
        h = self.act2(self.conv2(h))
        return self.fc(h.flatten(1))


class FunctionalNet(nn.Module):
    """The same idea written with ``F.relu`` in ``forward``: surgery cannot swap its
    activations (robustact says so and how to fix it)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) for images (N, 1, 8, 8) in [0, 1]."""
        return self.fc2(torch.nn.functional.relu(self.fc1(x.flatten(1))))
