"""Input-preprocessing defences as ``nn.Module`` s that sit in front of a classifier.

``Preprocessed(classifier, preprocess)`` is itself a classifier (images (N, C, H, W) in
[0, 1] -> logits), so every attack, protocol and report runs on it unchanged.

Every preprocessing step that is non-differentiable or random is a
:class:`~robustact.activations.StraightThroughMixin`: in plain mode it back-propagates
its true (masked) gradient, and inside :func:`robustact.surgery.straight_through` it keeps
its exact forward value but back-propagates as the identity (BPDA, Athalye et al. 2018).
``adaptive`` names the attack an honest evaluation needs against each step:

=====================  ======================================  =========================
step                   plain-mode input gradient               adaptive attack
=====================  ======================================  =========================
BitDepthReduction      zero almost everywhere (``round``)      ``"bpda"`` (identity)
MedianSmoothing        sparse: one pixel per window            ``"bpda"`` (identity)
JPEGQuantization       zero almost everywhere (``round``)      ``"bpda"`` (identity)
GaussianNoise          exact for one draw, random across calls ``"eot"`` (+ identity)
=====================  ======================================  =========================

The zero and sparse gradients are exactly the gradient masking that
:func:`robustact.evaluate.masking_report` is meant to catch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustact._registry import Registry
from robustact._validate import is_int
from robustact.activations import StraightThroughMixin
from robustact.models._record import record_edit, register_edit

__all__ = [
    "JPEG_LUMINANCE_TABLE",
    "PREPROCESSORS",
    "BitDepthReduction",
    "GaussianNoise",
    "JPEGQuantization",
    "MedianSmoothing",
    "Preprocess",
    "Preprocessed",
    "dct_matrix",
    "feature_squeezing",
    "get_preprocess",
    "jpeg_quant_table",
    "list_preprocessors",
]

#: Registry of preprocessing steps: ``get_preprocess("jpeg", quality=75)``.
PREPROCESSORS: Registry[Callable[..., nn.Module]] = Registry("preprocessing defence")


def _check_images(x: Tensor, who: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{who} expects images of shape (N, C, H, W), got {shape}")
    if not x.is_floating_point():
        raise TypeError(f"{who} expects a float tensor in [0, 1], got dtype {x.dtype}")


class Preprocess(StraightThroughMixin, nn.Module):
    """Base class: ``transform`` is the defence; ``forward`` adds the BPDA switch.

    Subclasses implement :meth:`transform` (N, C, H, W) -> (N, C, H, W). With
    ``straight_through`` on, the output is bit-identical to ``transform(x)`` and its
    gradient w.r.t. ``x`` is the identity.
    """

    #: the attack an honest evaluation needs to get through this step
    adaptive: str = "bpda"

    def __init__(self) -> None:
        super().__init__()
        self.straight_through = False

    def transform(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        _check_images(x, type(self).__name__)
        y = self.transform(x)
        if self.straight_through:
            # y.detach() + 0 keeps the forward bit-exact; the gradient flows through x
            return y.detach() + (x - x.detach())
        return y


class BitDepthReduction(Preprocess):
    """Colour-depth squeezing (Xu et al. 2018): ``round(x * (2^k - 1)) / (2^k - 1)``.

    Inputs are clamped to [0, 1] first, so the output takes at most ``2 ** bits`` values.
    Plain-mode gradient: zero almost everywhere.

    Args:
        bits: target bit depth, 1 to 16 (Xu et al. use 1 for MNIST, 5 for CIFAR-10).
    """

    def __init__(self, bits: int = 4) -> None:
        super().__init__()
        if not is_int(bits) or not 1 <= bits <= 16:
            raise ValueError(f"BitDepthReduction bits must be an int in 1..16, got {bits!r}")
        self.bits = bits

    def transform(self, x: Tensor) -> Tensor:
        levels = float(2**self.bits - 1)
        return torch.round(x.clamp(0.0, 1.0) * levels) / levels

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


_PADDING = {"reflect": "reflect", "edge": "replicate", "replicate": "replicate", "zeros": "zeros"}


class MedianSmoothing(Preprocess):
    """Spatial median filter (Xu et al. 2018), per channel, output the input's size.

    Padding (``kernel_size // 2`` pixels each side):

    * ``"reflect"`` (default) mirrors without repeating the border pixel
      (``[a b c] -> b [a b c] b``, numpy/torch ``reflect``);
    * ``"edge"`` (alias ``"replicate"``) repeats the border pixel (``a [a b c] c``);
    * ``"zeros"`` pads with 0 (black), which biases borders of dark-background images.

    Plain-mode gradient: each output pixel back-propagates only to the pixel chosen as
    its median (sparse). Only odd kernels: an even window has no single median pixel.

    Args:
        kernel_size: odd window side (3 = 3x3).
        padding: ``"reflect"``, ``"edge"``/``"replicate"`` or ``"zeros"``.
    """

    def __init__(self, kernel_size: int = 3, padding: str = "reflect") -> None:
        super().__init__()
        k = kernel_size
        if not is_int(k) or k < 1 or k % 2 == 0:
            raise ValueError(f"MedianSmoothing kernel_size must be an odd int >= 1, got {k!r}")
        if padding not in _PADDING:
            raise ValueError(
                f"MedianSmoothing padding must be one of {sorted(_PADDING)}, got {padding!r}"
            )
        self.kernel_size = k
        self.padding = padding

    def transform(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        k, p = self.kernel_size, self.kernel_size // 2
        if k == 1:
            return x
        mode = _PADDING[self.padding]
        if mode == "reflect" and (h <= p or w <= p):
            raise ValueError(
                f"reflect padding of {p} needs images larger than {p} pixels, got {h}x{w}; "
                "use padding='edge'"
            )
        xp = F.pad(x, (p, p, p, p), mode="constant" if mode == "zeros" else mode)
        # (N*C, 1, H+2p, W+2p) -> windows (N*C, k*k, H*W)
        win = F.unfold(xp.reshape(n * c, 1, h + 2 * p, w + 2 * p), kernel_size=k)
        return win.median(dim=1).values.reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, padding={self.padding!r}"


#: The standard JPEG luminance quantisation table (ITU-T T.81, Annex K, Table K.1).
JPEG_LUMINANCE_TABLE: tuple[tuple[int, ...], ...] = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)


def dct_matrix(n: int = 8, dtype: torch.dtype = torch.float64) -> Tensor:
    """Orthonormal DCT-II matrix ``D`` (n, n): ``D @ b @ D.T`` is the 2-D DCT of a block."""
    k = torch.arange(n, dtype=dtype).unsqueeze(1)
    i = torch.arange(n, dtype=dtype).unsqueeze(0)
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] = d[0] / math.sqrt(2.0)
    return d


def jpeg_quant_table(quality: int) -> Tensor:
    """Luminance table scaled by the IJG quality rule (8, 8), entries in [1, 255]."""
    if not is_int(quality) or not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be an int in 1..100, got {quality!r}")
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    q = torch.tensor(JPEG_LUMINANCE_TABLE, dtype=torch.float64)
    return torch.floor((q * scale + 50) / 100).clamp(1, 255)


class JPEGQuantization(Preprocess):
    """JPEG-style compression in torch: 8x8 block DCT, quantise, inverse DCT.

    Pixels are mapped to 0..255 and centred (-128), each 8x8 block is DCT-transformed
    with a precomputed orthonormal matrix, every coefficient is rounded to a multiple of
    the luminance table scaled by ``quality`` (IJG rule), and the blocks are transformed
    back and rounded to 8-bit levels. Every channel is treated as its own grayscale
    image with the luminance table (no YCbCr conversion or chroma subsampling). Images
    whose sides are not multiples of 8 are edge-padded and cropped back. At quality 100
    every table entry is 1 (near-identity); lower quality discards more high-frequency
    detail. Plain-mode gradient: zero almost everywhere.

    Args:
        quality: 1 (coarsest) to 100.
    """

    table: Tensor
    dct: Tensor

    def __init__(self, quality: int = 75) -> None:
        super().__init__()
        self.quality = quality
        self.register_buffer("table", jpeg_quant_table(quality).float(), persistent=False)
        self.register_buffer("dct", dct_matrix(8).float(), persistent=False)

    def transform(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        ph, pw = (-h) % 8, (-w) % 8
        z = x.clamp(0.0, 1.0) * 255.0 - 128.0
        if ph or pw:
            z = F.pad(z, (0, pw, 0, ph), mode="replicate")
        hh, ww = z.shape[-2] // 8, z.shape[-1] // 8
        d = self.dct.to(device=x.device, dtype=x.dtype)
        q = self.table.to(device=x.device, dtype=x.dtype)
        blocks = z.reshape(n, c, hh, 8, ww, 8).transpose(3, 4)  # (N, C, hh, ww, 8, 8)
        coef = d @ blocks @ d.T
        coef = torch.round(coef / q) * q
        rec = (d.T @ coef @ d).transpose(3, 4).reshape(n, c, hh * 8, ww * 8)
        rec = torch.round(rec + 128.0).clamp(0.0, 255.0) / 255.0
        return rec[..., :h, :w]

    def extra_repr(self) -> str:
        return f"quality={self.quality}"


class GaussianNoise(Preprocess):
    """Additive Gaussian noise ``clamp(x + sigma * n, 0, 1)``, random in train and eval.

    ``stochastic`` is True (for ``sigma > 0``), so :func:`robustact.surgery.find_stochastic`
    flags the model and the adaptive protocol averages gradients over draws (EOT). In
    plain mode the gradient is the true one of a single draw (identity, zero where the
    clamp is active); with ``straight_through`` on it is the identity everywhere.

    Args:
        sigma: noise standard deviation in pixel units (>= 0).
        clip: clamp the result to [0, 1].
        generator: optional ``torch.Generator`` for reproducible draws (may live on
            another device than the input; samples are moved to ``x.device``).
    """

    adaptive = "eot"

    def __init__(
        self, sigma: float = 0.1, clip: bool = True, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        s = float(sigma)
        if not s >= 0 or s == float("inf"):
            raise ValueError(f"GaussianNoise sigma must be a finite number >= 0, got {sigma!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"GaussianNoise generator must be a torch.Generator, got {type(generator)}"
            )
        self.sigma = s
        self.clip = bool(clip)
        self.generator = generator

    @property
    def stochastic(self) -> bool:
        """True when two forward passes differ (``sigma > 0``)."""
        return self.sigma > 0

    def transform(self, x: Tensor) -> Tensor:
        if self.sigma == 0:
            return x
        g = self.generator
        if g is not None:
            noise = torch.randn(x.shape, generator=g, device=g.device, dtype=x.dtype)
            noise = noise.to(x.device)
        else:
            noise = torch.randn_like(x)
        y = x + self.sigma * noise
        return y.clamp(0.0, 1.0) if self.clip else y

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}, clip={self.clip}"


class Preprocessed(nn.Module):
    """A classifier behind an input-preprocessing defence: ``classifier(preprocess(x))``.

    Args:
        classifier: maps images (N, C, H, W) in [0, 1] to logits (N, K).
        preprocess: maps (N, C, H, W) to (N, C, H, W), e.g. :class:`JPEGQuantization`,
            a trained :class:`~robustact.defenses.autoencoder.DenoisingAutoencoder`, or
            an ``nn.Sequential`` of steps (see :func:`feature_squeezing`).
    """

    def __init__(self, classifier: nn.Module, preprocess: nn.Module) -> None:
        super().__init__()
        for name, m in (("classifier", classifier), ("preprocess", preprocess)):
            if not isinstance(m, nn.Module):
                raise TypeError(f"Preprocessed {name} must be an nn.Module, got {type(m)}")
        self.preprocess = preprocess
        self.classifier = classifier
        # the model record (robustact.models._record): the classifier's, plus this wrapper
        step = getattr(preprocess, "robustact_preprocess", None)
        edit = {
            "op": "preprocess",
            "step": step
            or {
                "name": None,
                "class": f"{type(preprocess).__module__}.{type(preprocess).__qualname__}",
            },
        }
        record_edit(self, edit, base=classifier, rebuildable=step is not None)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.preprocess(x))


def feature_squeezing(bits: int = 1, kernel_size: int = 3, padding: str = "reflect") -> nn.Module:
    """Xu et al.'s two squeezers in sequence: bit-depth reduction, then median smoothing.

    Returns ``nn.Sequential(BitDepthReduction(bits), MedianSmoothing(kernel_size, padding))``
    (N, C, H, W) -> (N, C, H, W). Xu et al. use 1 bit and a 2x2 median on MNIST; only odd
    kernels exist here, so the default is 3x3.
    """
    return nn.Sequential(BitDepthReduction(bits), MedianSmoothing(kernel_size, padding))


PREPROCESSORS.add("bit_depth", BitDepthReduction)
PREPROCESSORS.add("median", MedianSmoothing)
PREPROCESSORS.add("jpeg", JPEGQuantization)
PREPROCESSORS.add("gaussian_noise", GaussianNoise)
PREPROCESSORS.add("feature_squeezing", feature_squeezing)


def list_preprocessors() -> list[str]:
    """Names accepted by :func:`get_preprocess`."""
    return PREPROCESSORS.names()


def get_preprocess(name: str, **kwargs: object) -> nn.Module:
    """Build a registered preprocessing step by name, e.g. ``get_preprocess("jpeg", quality=50)``.

    ``"autoencoder"`` is registered by :mod:`robustact.defenses.autoencoder` and returns an
    untrained autoencoder (train it with ``train_autoencoder`` before use).
    """
    ctor = PREPROCESSORS.get(name)
    try:
        step = ctor(**kwargs)
    except TypeError as e:
        raise ValueError(
            f"bad arguments {sorted(kwargs)} for preprocessing {name!r}: {e}"
        ) from None
    # what Preprocessed records so a checkpoint can rebuild the step (JSON-ready only)
    desc = {"name": name.lower().replace("-", "_"), "kwargs": dict(kwargs)}
    try:
        json.dumps(desc, allow_nan=False)
    except (TypeError, ValueError):
        return step
    object.__setattr__(step, "robustact_preprocess", desc)
    return step


@register_edit("preprocess")
def _replay_preprocess(model: nn.Module, edit: Any) -> nn.Module:
    step = edit["step"]
    if not isinstance(step, dict) or not isinstance(step.get("name"), str):
        raise ValueError(
            f"preprocessing step {step!r} was not built by get_preprocess and cannot be rebuilt"
        )
    return Preprocessed(model, get_preprocess(step["name"], **dict(step.get("kwargs") or {})))
