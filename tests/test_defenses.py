"""Unit tests of robustact.defenses: preprocessing forwards, BPDA switch, autoencoder,
robust-optimisation objectives."""

from __future__ import annotations

import io
import itertools
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustact.defenses import (
    BitDepthReduction,
    DenoisingAutoencoder,
    GaussianNoise,
    GradientPenalty,
    JPEGQuantization,
    LipschitzPenalty,
    MedianSmoothing,
    Preprocessed,
    apply_spectral_norm,
    dct_matrix,
    feature_squeezing,
    get_preprocess,
    input_gradient_norm,
    jpeg_quant_table,
    train_autoencoder,
)
from robustact.surgery import find_stochastic, is_stochastic, straight_through
from robustact.train.objectives import get_objective

Digits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


# ------------------------------------------------------------------------ bit depth
@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_bit_depth_gives_at_most_2_pow_k_levels(bits: int) -> None:
    x = torch.rand(16, 1, 8, 8)
    out = BitDepthReduction(bits)(x)
    levels = out.unique()
    assert len(levels) <= 2**bits
    # the levels lie on the grid j / (2^k - 1) and each pixel moves by at most half a step
    grid = levels * (2**bits - 1)
    assert torch.allclose(grid, grid.round(), atol=1e-5)
    assert (out - x).abs().max() <= 0.5 / (2**bits - 1) + 1e-6


def test_bit_depth_8_is_identity_on_8bit_images() -> None:
    x = torch.randint(0, 256, (4, 3, 5, 5)).float() / 255
    assert torch.equal(BitDepthReduction(8)(x), x)


# --------------------------------------------------------------------------- median
TOY = torch.tensor([[1.0, 2, 3], [4, 5, 6], [7, 8, 9]]).view(1, 1, 3, 3) / 10
# hand-computed: reflect pads row -1 with row 1 (2 rows/cols mirrored without the border)
TOY_REFLECT = torch.tensor([[4.0, 4, 5], [5, 5, 5], [5, 6, 6]]) / 10
# edge pads with the border pixel itself
TOY_EDGE = torch.tensor([[2.0, 3, 3], [4, 5, 6], [7, 7, 8]]) / 10


def test_median_matches_hand_computed_3x3() -> None:
    assert torch.equal(MedianSmoothing(3, "reflect")(TOY)[0, 0], TOY_REFLECT)
    assert torch.equal(MedianSmoothing(3, "edge")(TOY)[0, 0], TOY_EDGE)
    assert torch.equal(MedianSmoothing(3, "replicate")(TOY)[0, 0], TOY_EDGE)


def test_median_matches_scipy_and_removes_salt() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.rand(2, 3, 9, 7)
    for pad, mode in (("reflect", "mirror"), ("edge", "nearest")):
        ours = MedianSmoothing(3, pad)(x).numpy()
        ref = ndimage.median_filter(x.numpy(), size=(1, 1, 3, 3), mode=mode)
        np.testing.assert_array_equal(ours, ref)
    flat = torch.full((1, 1, 6, 6), 0.2)
    flat[0, 0, 2, 3] = 1.0  # an isolated bright pixel
    assert torch.equal(MedianSmoothing(3)(flat), torch.full((1, 1, 6, 6), 0.2))


# ----------------------------------------------------------------------------- JPEG
def test_dct_matrix_is_orthonormal_and_table_scales() -> None:
    d = dct_matrix(8)
    assert torch.allclose(d @ d.T, torch.eye(8, dtype=d.dtype), atol=1e-12)
    assert torch.equal(jpeg_quant_table(100), torch.ones(8, 8, dtype=torch.float64))
    assert jpeg_quant_table(50)[0, 0] == 16 and jpeg_quant_table(10)[0, 0] == 80


def test_jpeg_quality_100_near_identity_and_lower_quality_loses_more(digits: Digits) -> None:
    x = digits[2][:200]
    errs = [float((JPEGQuantization(q)(x) - x).pow(2).mean()) for q in (100, 90, 75, 50, 25, 10)]
    assert (JPEGQuantization(100)(x) - x).abs().max() < 0.01
    assert errs[0] < 1e-5
    assert all(a < b for a, b in itertools.pairwise(errs)), errs
    assert errs[-1] > 100 * errs[0]


def test_jpeg_agrees_with_pillow_and_handles_shapes() -> None:
    image = pytest.importorskip("PIL.Image")
    g = torch.Generator().manual_seed(1)
    x = F.interpolate(torch.rand(1, 1, 8, 8, generator=g), size=(32, 32), mode="bilinear")
    a = (x[0, 0].numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    image.fromarray(a, "L").save(buf, "JPEG", quality=50)
    pil = torch.tensor(np.array(image.open(io.BytesIO(buf.getvalue()))), dtype=torch.float32)
    ours = JPEGQuantization(50)(torch.tensor(a, dtype=torch.float32)[None, None] / 255)
    # libjpeg's integer DCT rounds differently near .5 boundaries: a coefficient may land
    # one step away, so compare on average and the distortion against the original
    diff = (ours[0, 0] * 255 - pil).abs()
    assert float(diff.mean()) < 0.5 and float(diff.max()) <= 8.0
    src = torch.tensor(a, dtype=torch.float32)
    mse_ours, mse_pil = ((ours[0, 0] * 255 - src) ** 2).mean(), ((pil - src) ** 2).mean()
    assert abs(float(mse_ours / mse_pil) - 1.0) < 0.1
    # per-channel: a 3-channel image is three grayscale images; odd sizes are kept
    rgb = torch.rand(2, 3, 13, 10)
    out = JPEGQuantization(60)(rgb)
    assert out.shape == rgb.shape
    assert torch.equal(out[:, 1:2], JPEGQuantization(60)(rgb[:, 1:2]))


# ---------------------------------------------------------------------------- noise
def test_noise_is_random_in_eval_and_reproducible_with_generator() -> None:
    x = torch.full((4, 1, 16, 16), 0.5)
    noise = GaussianNoise(0.1).eval()
    a, b = noise(x), noise(x)
    assert not torch.equal(a, b)
    assert abs(float((a - x).std()) - 0.1) < 0.01
    n1 = GaussianNoise(0.1, generator=torch.Generator().manual_seed(3)).eval()
    n2 = GaussianNoise(0.1, generator=torch.Generator().manual_seed(3)).eval()
    assert torch.equal(n1(x), n2(x))
    assert torch.equal(n1(x), n2(x))  # and the streams stay in step
    assert not GaussianNoise(0.0).stochastic
    model = Preprocessed(nn.Sequential(nn.Flatten(), nn.Linear(256, 3)), GaussianNoise(0.1))
    assert [n for n, _ in find_stochastic(model)] == ["preprocess"]
    assert not is_stochastic(Preprocessed(model.classifier, BitDepthReduction(3)))


# --------------------------------------------------------------------- straight-through
def _steps() -> dict[str, nn.Module]:
    return {
        "bit_depth": BitDepthReduction(2),
        "median": MedianSmoothing(3),
        "jpeg": JPEGQuantization(50),
        "squeeze": feature_squeezing(bits=3),
        "noise": GaussianNoise(0.1, generator=torch.Generator().manual_seed(0)),
    }


@pytest.mark.parametrize("name", ["bit_depth", "median", "jpeg", "squeeze", "noise"])
def test_straight_through_keeps_forward_and_gives_identity_backward(
    name: str, digits: Digits, digits_mlp: nn.Module
) -> None:
    x, y = digits[2][:32], digits[3][:32]
    step = _steps()[name]
    model = Preprocessed(digits_mlp, step).eval()

    def run(st: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if isinstance(step, GaussianNoise):
            assert step.generator is not None
            step.generator.manual_seed(0)  # the same noise draw in both modes
        xg = x.clone().requires_grad_(True)
        with torch.no_grad():
            z = step(x)  # the preprocessed point (same draw: reseed again below)
        if isinstance(step, GaussianNoise):
            assert step.generator is not None
            step.generator.manual_seed(0)
        if st:
            with straight_through(model):
                out = model(xg)
        else:
            out = model(xg)
        F.cross_entropy(out, y, reduction="sum").backward()
        assert xg.grad is not None
        return out.detach(), xg.grad, z

    out_plain, g_plain, z = run(False)
    out_st, g_st, _ = run(True)
    assert torch.equal(out_plain, out_st)  # forward bit-identical
    zg = z.clone().requires_grad_(True)
    F.cross_entropy(digits_mlp(zg), y, reduction="sum").backward()
    assert zg.grad is not None
    torch.testing.assert_close(g_st, zg.grad, rtol=1e-5, atol=1e-7)
    assert g_st.abs().sum() > 0
    if name in ("bit_depth", "jpeg", "squeeze"):
        assert torch.count_nonzero(g_plain) == 0  # round(): the masking to be caught
    if name == "median":  # each output pixel feeds back to one input pixel only
        assert (g_plain != 0).float().mean() < (g_st != 0).float().mean()
    assert not any(getattr(m, "straight_through", False) for m in model.modules())


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="bits"):
        BitDepthReduction(0)
    with pytest.raises(ValueError, match="odd"):
        MedianSmoothing(2)
    with pytest.raises(ValueError, match="padding"):
        MedianSmoothing(3, "wrap")
    with pytest.raises(ValueError, match="quality"):
        JPEGQuantization(0)
    with pytest.raises(ValueError, match="sigma"):
        GaussianNoise(-1.0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        BitDepthReduction(3)(torch.rand(4, 64))
    with pytest.raises(ValueError, match="Known"):
        get_preprocess("jpg2000")
    with pytest.raises(ValueError, match="edge"):
        MedianSmoothing(5)(torch.rand(1, 1, 2, 2))


# ---------------------------------------------------------------------- autoencoder
def test_autoencoder_trains_and_keeps_clean_accuracy(digits: Digits, digits_mlp: nn.Module) -> None:
    x, _, xt, yt = digits
    torch.manual_seed(0)
    ae = DenoisingAutoencoder(1, hidden=16)
    hist = train_autoencoder(ae, x, epochs=12, noise_std=0.1)
    assert len(hist) == 13
    assert hist[-1] < 0.5 * hist[0], hist
    base = _acc(digits_mlp, xt, yt)
    wrapped = _acc(Preprocessed(digits_mlp, ae).eval(), xt, yt)
    assert wrapped >= base - 0.03, (base, wrapped)
    assert DenoisingAutoencoder(3, 4)(torch.rand(2, 3, 7, 9)).shape == (2, 3, 7, 9)


# --------------------------------------------------------------------- robust optimisation
def _mlp() -> Any:  # an nn.Sequential; Any for its typed layer access
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def test_gradient_penalty_value_and_double_backprop(digits: Digits) -> None:
    x, y = digits[0][:64], digits[1][:64]
    model = _mlp()
    loss, m = GradientPenalty(lam=0.5, norm="l2")(model, x, y)
    norms = input_gradient_norm(model, x, y)
    torch.testing.assert_close(m["grad_norm"], norms.mean())
    torch.testing.assert_close(loss.detach(), m["ce"] + 0.5 * (norms**2).mean())
    _, m1 = GradientPenalty(lam=1.0, norm="l1")(model, x, y)
    torch.testing.assert_close(m1["grad_norm"], input_gradient_norm(model, x, y, "l1").mean())
    # the penalty reaches the weights (double backprop): gradients differ from plain CE
    loss.backward()
    g_pen = model[1].weight.grad.clone()
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    assert not torch.allclose(g_pen, model[1].weight.grad)
    obj = get_objective("gradient_penalty", lam=0.1, norm="l1")
    assert isinstance(obj, GradientPenalty) and obj.describe()["norm"] == "l1"
    with pytest.raises(ValueError, match="norm"):
        GradientPenalty(norm="linf")  # type: ignore[arg-type]


def test_spectral_norm_bounds_each_layer(digits: Digits) -> None:
    out_layer = nn.Linear(256, 10)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), out_layer)
    before = out_layer.weight.detach().clone()
    sn, names = apply_spectral_norm(model, n_power_iterations=1)
    assert names == ["0", "3"]
    assert torch.equal(out_layer.weight, before)  # the original is untouched
    sn.train()
    for _ in range(30):  # power iteration converges over training forwards
        sn(digits[0][:8])
    for n in names:
        layer: Any = sn.get_submodule(n)  # weight is computed by the parametrisation
        w = layer.weight.flatten(1)
        assert abs(float(torch.linalg.matrix_norm(w.detach(), ord=2)) - 1.0) < 1e-3
    _, only_conv = apply_spectral_norm(model, exclude=["3"])
    assert only_conv == ["0"]
    with pytest.raises(ValueError, match=r"no nn\.Linear"):
        apply_spectral_norm(nn.Sequential(nn.ReLU()))


def test_lipschitz_penalty_estimates_spectral_norms(digits: Digits) -> None:
    model = _mlp()
    pen = LipschitzPenalty(lam=1.0, kind="spectral")
    term, m = pen(model, digits[0][:4], digits[1][:4])
    exact = [torch.linalg.matrix_norm(model[i].weight, ord=2) for i in (1, 3)]
    torch.testing.assert_close(m["sigma_max"], max(exact), rtol=1e-3, atol=0)
    torch.testing.assert_close(term.detach(), sum(s**2 for s in exact), rtol=2e-3, atol=0)
    term.backward()  # differentiable in the weights
    assert model[1].weight.grad is not None and model[1].weight.grad.abs().sum() > 0
    # Parseval: zero exactly for orthonormal rows
    lin = nn.Linear(8, 4)
    with torch.no_grad():
        lin.weight.copy_(torch.linalg.qr(torch.randn(8, 4)).Q.T)
    pz, _ = LipschitzPenalty(1.0, kind="parseval")(nn.Sequential(lin), digits[0], digits[1])
    assert float(pz.detach()) < 1e-10
    both = get_objective("lipschitz_penalty", lam=0.01)
    _, metrics = both(model, digits[0][:16], digits[1][:16])
    assert {"ce", "acc", "lipschitz_penalty", "sigma_max"} <= set(metrics)
