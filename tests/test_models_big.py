"""The architectures written for the seeds' larger experiments: Inception v3 (Ch.5),
EfficientNet-B0 / V2-S (BReLU Table 1/3), the ImageNet-stem ResNet-18 (BReLU Table 2):
parameter counts against the published ones, output shapes on small inputs, and every
activation a module surgery can find."""

from __future__ import annotations

from typing import Any, cast

import pytest
import torch

from robustact.models import create_model, default_input_shape
from robustact.surgery import find_activations

# published parameter counts at 1000 classes (millions); Inception v3 without its aux head
PUBLISHED = {"inception_v3": 23.8, "efficientnet_b0": 5.3, "efficientnet_v2_s": 21.5,
             "resnet18_imagenet": 11.7}  # fmt: skip


@pytest.mark.slow  # the first meta-device build costs a few seconds once
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_matches_the_paper(name: str) -> None:
    with torch.device("meta"):  # no memory, no init cost
        m = create_model(name, num_classes=1000)
    n = sum(p.numel() for p in m.parameters()) / 1e6
    assert n == pytest.approx(PUBLISHED[name], abs=0.05), n


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_shapes_on_small_inputs(name: str) -> None:
    torch.manual_seed(0)
    m = create_model(name, num_classes=7).eval()
    c, h, _ = default_input_shape(name)
    size = 64 if name == "resnet18_imagenet" else h
    with torch.no_grad():
        out = m(torch.rand(2, c, size, size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    assert len(find_activations(m)) > 10


@pytest.mark.slow
def test_inception_imagenet_stem_and_stem_strides() -> None:
    m = create_model("inception_v3", num_classes=3, cifar_stem=False).eval()
    with torch.no_grad():
        assert m(torch.rand(1, 3, 75, 75)).shape == (1, 3)  # the smallest ImageNet-stem input
    # the CIFAR stem keeps 32x32 through the stem; the ImageNet stem divides by 8 (and more)
    cifar = create_model("inception_v3", num_classes=3).eval()
    with torch.no_grad():
        assert cast(Any, cifar).stem(torch.rand(1, 3, 32, 32)).shape == (1, 192, 32, 32)
        assert cast(Any, m).stem(torch.rand(1, 3, 299, 299)).shape == (1, 192, 35, 35)
    b0 = create_model("efficientnet_b0", num_classes=3, stem_stride=2)
    assert cast(Any, b0).stem[0].stride == (2, 2)
    with pytest.raises(ValueError, match="stem_stride must be 1 or 2"):
        create_model("efficientnet_b0", stem_stride=3)
