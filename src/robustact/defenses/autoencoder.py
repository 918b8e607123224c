"""A small convolutional denoising autoencoder used as an input-reconstruction defence.

The autoencoder (MagNet's reformer, Meng & Chen 2017; dissertation Fig. 1.2) is trained
to map ``x + noise`` back to ``x`` on the classifier's own training data; the defence is
``Preprocessed(classifier, ae)``. It is differentiable end to end, so an adaptive attack
needs no BPDA: plain gradients through the reconstruction are the honest attack.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustact._validate import is_int
from robustact.defenses.preprocess import PREPROCESSORS, _check_images

__all__ = ["DenoisingAutoencoder", "train_autoencoder"]


class DenoisingAutoencoder(nn.Module):
    """Conv encoder (one stride-2 stage) and decoder back to the input size, sigmoid output.

    Works for any image size (MNIST 28x28, digits 8x8, CIFAR 32x32): the decoder
    upsamples to the input's exact height and width.

    Args:
        in_channels: image channels C.
        hidden: channels of the hidden feature maps.

    Shape: (N, C, H, W) in [0, 1] -> (N, C, H, W) in (0, 1).
    """

    adaptive = "none"  # differentiable: plain gradients are the adaptive attack

    def __init__(self, in_channels: int = 1, hidden: int = 32) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("hidden", hidden)):
            if not is_int(v) or v < 1:
                raise ValueError(f"DenoisingAutoencoder {name} must be a positive int, got {v!r}")
        self.in_channels = in_channels
        self.hidden = hidden
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, in_channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        _check_images(x, "DenoisingAutoencoder")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"DenoisingAutoencoder built for {self.in_channels} channels got input "
                f"{tuple(x.shape)}; build it with in_channels={x.shape[1]}"
            )
        h = self.encoder(x)
        h = F.interpolate(h, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(self.decoder(h))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, hidden={self.hidden}"


def train_autoencoder(
    ae: nn.Module,
    x: Tensor,
    epochs: int = 20,
    noise_std: float = 0.1,
    *,
    lr: float = 1e-2,
    batch_size: int = 64,
    seed: int = 0,
) -> list[float]:
    """Train ``ae`` to denoise: minimise ``MSE(ae(clamp(x + noise_std * n)), x)``.

    Args:
        ae: the autoencoder (trained in place, returned in eval mode).
        x: training images (N, C, H, W) in [0, 1] (the classifier's training data).
        epochs: passes over ``x``.
        noise_std: Gaussian corruption std in pixel units (0 gives a plain autoencoder).
        lr: Adam learning rate.
        batch_size: minibatch size.
        seed: seeds the shuffling and the corruption (a ``torch.Generator``).
    Returns:
        Clean reconstruction MSE ``mean((ae(x) - x) ** 2)`` before training and after each
        epoch (``epochs + 1`` floats).
    """
    _check_images(x, "train_autoencoder")
    if not is_int(epochs) or epochs < 0:
        raise ValueError(f"train_autoencoder epochs must be an int >= 0, got {epochs!r}")
    if not float(noise_std) >= 0:
        raise ValueError(f"train_autoencoder noise_std must be >= 0, got {noise_std!r}")
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"train_autoencoder batch_size must be a positive int, got {batch_size!r}")
    x = x.detach()
    g = torch.Generator(device="cpu").manual_seed(seed)
    opt = torch.optim.Adam(ae.parameters(), lr=lr)

    def clean_mse() -> float:
        ae.eval()
        with torch.no_grad():
            return float(
                sum(
                    F.mse_loss(ae(x[i : i + 512]), x[i : i + 512], reduction="sum")
                    for i in range(0, len(x), 512)
                )
                / x.numel()
            )

    history = [clean_mse()]
    for _ in range(epochs):
        ae.train()
        perm = torch.randperm(len(x), generator=g).to(x.device)
        for i in range(0, len(x), batch_size):
            xb = x[perm[i : i + batch_size]]
            noise = torch.randn(xb.shape, generator=g, dtype=xb.dtype).to(x.device)
            xn = (xb + float(noise_std) * noise).clamp(0.0, 1.0)
            opt.zero_grad()
            F.mse_loss(ae(xn), xb).backward()
            opt.step()
        history.append(clean_mse())
    ae.eval()
    return history


PREPROCESSORS.add("autoencoder", DenoisingAutoencoder)
