"""Turn a feed-forward model into the chain of :mod:`~robustact.certify.ops` a bound walks.

Supported: ``nn.Sequential`` nests, robustact's ``MLP`` and its ``shallow_cnn`` / ``lenet5`` /
``small_cnn`` (Normalize first, the flatten inside ``forward``), and the leaf modules in
:data:`SUPPORTED`. The chain is checked against the model's own forward pass, so a model
whose ``forward`` does something the chain does not (a residual, a custom step) is refused
instead of being certified wrongly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from robustact.activations import DReLU, SReLU
from robustact.certify.ops import Affine, Clip, Conv, Dense, Diagonal, MaxPool, Op, Reshape
from robustact.models._common import Normalize
from robustact.models.cnn import _Sequential
from robustact.models.mlp import MLP

__all__ = ["SUPPORTED", "build_chain", "run_chain"]

#: What certify can bound, for error messages and docs.
SUPPORTED = (
    "Normalize, Linear, Conv2d (zero padding), BatchNorm1d/2d (eval, running stats), Flatten, "
    "ReLU, ReLU6, SReLU, DReLU, AvgPool2d, MaxPool2d (no ceil_mode), Identity, Dropout, "
    "nn.Sequential of these, robustact's MLP models and shallow_cnn/lenet5/small_cnn"
)


def _modules(model: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """The leaf modules of ``model`` in forward order, with a Flatten where it flattens."""
    dot = f"{prefix}." if prefix else ""
    if isinstance(model, MLP):
        parts: list[tuple[str, nn.Module]] = [
            ("normalize", model.normalize),
            ("flatten", nn.Flatten()),
        ]
        for i in range(1, len(model.hidden) + 1):
            parts += [(f"fc{i}", getattr(model, f"fc{i}")), (f"act{i}", getattr(model, f"act{i}"))]
        parts.append(("fc_out", model.fc_out))
    elif isinstance(model, _Sequential):
        parts = [
            ("normalize", model.normalize),
            ("features", model.features),
            ("flatten", nn.Flatten()),
            ("classifier", model.classifier),
        ]
    elif isinstance(model, nn.Sequential):
        parts = list(model.named_children())
    else:
        return [(prefix or type(model).__name__, model)]
    out: list[tuple[str, nn.Module]] = []
    for name, child in parts:
        out += _modules(child, dot + name)
    return out


def _unsupported(name: str, module: nn.Module, why: str = "") -> ValueError:
    detail = f" ({why})" if why else ""
    return ValueError(
        f"certify cannot bound layer {name!r} of type {type(module).__name__}{detail}; "
        f"supported: {SUPPORTED}"
    )


def _channel_view(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A per-channel (dim 0 of ``shape``) vector, or a scalar, viewed to broadcast to shape."""
    t = t.detach()
    if t.numel() == 1:
        return t.reshape((1,) * len(shape))
    return t.reshape(-1, *([1] * (len(shape) - 1)))


def _batchnorm(name: str, bn: nn.modules.batchnorm._BatchNorm, shape: tuple[int, ...]) -> Op:
    if bn.running_mean is None or bn.running_var is None:
        raise _unsupported(name, bn, "needs running statistics (track_running_stats=True)")
    scale = 1.0 / torch.sqrt(bn.running_var + bn.eps)
    shift = -bn.running_mean * scale
    if bn.weight is not None:
        scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
    return Diagonal(name, shape, _channel_view(scale, shape), _channel_view(shift, shape))


def _activation(name: str, module: nn.Module, shape: tuple[int, ...]) -> Op:
    inf = torch.tensor(math.inf)
    if isinstance(module, nn.ReLU6):
        return Clip(name, shape, torch.tensor(6.0))
    if isinstance(module, nn.ReLU):
        return Clip(name, shape, inf)
    if isinstance(module, SReLU):
        return Clip(name, shape, torch.tensor(float(module.max_value)))
    assert isinstance(module, DReLU)
    if module.num_features is None:
        raise _unsupported(name, module, "lazy caps: run one forward pass first")
    return Clip(name, shape, _channel_view(module.max_value.clamp(min=0.0), shape))


def _to_op(name: str, m: nn.Module, shape: tuple[int, ...], out: tuple[int, ...]) -> Op | None:
    """The op for leaf module ``m`` seeing inputs (N, *shape) and giving (N, *out)."""
    if isinstance(m, nn.Identity | nn.Dropout | nn.Dropout1d | nn.Dropout2d):
        return None
    if isinstance(m, Normalize):
        scale = 1.0 / m.std
        return Diagonal(
            name, shape, _channel_view(scale, shape), _channel_view(-m.mean * scale, shape)
        )
    if isinstance(m, nn.Linear):
        if len(shape) != 1:
            raise _unsupported(name, m, f"applied to a {shape} input; flatten first")
        return Dense(name, m.weight.detach(), None if m.bias is None else m.bias.detach())
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            raise _unsupported(name, m, f"padding_mode={m.padding_mode!r}")
        return Conv(name, m, shape, out)
    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
        return _batchnorm(name, m, shape)
    if isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise _unsupported(name, m, "only Flatten(start_dim=1, end_dim=-1)")
        return Reshape(name, shape, out)
    if isinstance(m, nn.ReLU | nn.ReLU6 | SReLU | DReLU):
        return _activation(name, m, shape)
    if isinstance(m, nn.AvgPool2d):
        return Affine(name, m, shape, out, monotone=True)
    if isinstance(m, nn.MaxPool2d):
        if m.ceil_mode or m.return_indices:
            raise _unsupported(name, m, "ceil_mode / return_indices")
        return MaxPool(name, m, shape, out)
    raise _unsupported(name, m)


def run_chain(chain: list[Op], x: Tensor) -> Tensor:
    """The chain's forward pass, (N, *input) -> (N, K)."""
    for op in chain:
        x = op.forward(x)
    return x


@torch.no_grad()
def build_chain(model: nn.Module, x: Tensor) -> list[Op]:
    """Ops for ``model`` (in eval mode) on inputs like ``x`` (N, C, H, W); checks that the
    chain reproduces ``model(x)``, else raises ValueError."""
    chain: list[Op] = []
    h = x[:1]
    for name, module in _modules(model, ""):
        out = module(h)
        op = _to_op(name, module, tuple(h.shape[1:]), tuple(out.shape[1:]))
        if op is not None:
            chain.append(op)
        h = out
    if not chain or not isinstance(chain[-1], Dense):
        raise ValueError("certify needs a model whose last layer is nn.Linear (the logits)")
    ref, mine = model(x), run_chain(chain, x)
    if ref.shape != mine.shape or not torch.allclose(ref, mine, rtol=1e-4, atol=1e-4):
        raise ValueError(
            f"certify could not reproduce {type(model).__name__}'s forward pass from its layers "
            f"(a residual or custom forward step?); supported: {SUPPORTED}"
        )
    return chain
