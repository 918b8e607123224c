"""Diagnostics from the seeds: how perturbations travel through a network.

* :func:`layer_distances` — per-layer L-inf / L2 distance between the activations of clean
  and adversarial inputs (dissertation Ch. 3, Fig 3.1/3.2: "the distance between each hidden
  layer's outputs resulted from passing clean samples and adversarial examples").
* :func:`sensitivity_map` — eq. 4.3, ``max(0, dZ_t/dx ⊙ sum_{c != t} dZ_c/dx)`` per pixel,
  with its summed score (dissertation §4.6, Fig 4.12).
* :func:`zero_gradient_distance` — the zero-gradient experiment (§4.4, Fig 4.5-4.7) through
  the attacks' ``ZeroGradPGD``.
* :func:`negative_unit_ratio` — fraction of negative values before and after every
  activation (BReLU paper, Table 6).
* :func:`cap_snapshot`, :func:`cap_trajectories` — D-ReLU caps over training.

The named, configurable runs of these are in :mod:`robustact.evaluate.diagnose`; their
figures in :mod:`robustact.report.plots`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robustact.attacks.adaptive import bpda_scope
from robustact.surgery import find_activations, find_caps, record_io

__all__ = [
    "LayerDistance",
    "NegativeRatio",
    "ZeroGradSummary",
    "cap_snapshot",
    "cap_trajectories",
    "layer_distances",
    "negative_unit_ratio",
    "sensitivity_map",
    "zero_gradient_distance",
]


def _layer_modules(model: nn.Module, where: str) -> list[tuple[str, nn.Module]]:
    if where == "activations":
        mods = find_activations(model)
    elif where == "linear":
        mods = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    else:
        raise ValueError(f"where must be 'activations' or 'linear', got {where!r}")
    if not mods:
        raise ValueError(f"model has no {where} modules to hook; try where='linear'")
    return mods


def _record_outputs(
    model: nn.Module, x: Tensor, mods: list[tuple[str, nn.Module]]
) -> dict[str, Tensor]:
    """Each module's output on one eval-mode, no-grad pass of ``x``."""
    return {name: out for name, (_, out) in record_io(model, x, mods).items()}


@dataclass(frozen=True)
class LayerDistance:
    """Mean over points of the per-point distance between clean and adversarial outputs.

    Attributes:
        name: dotted module name; units: values per point.
        linf, l2: mean L-inf and L2 distance of the layer outputs.
    """

    name: str
    units: int
    linf: float
    l2: float


def layer_distances(
    model: nn.Module, x: Tensor, x_adv: Tensor, *, where: str = "activations"
) -> list[LayerDistance]:
    """Per-layer distance between the outputs on ``x`` and on ``x_adv`` (dissertation Fig 3.1/3.2).

    Args:
        model: classifier; run in eval mode (restored). For stochastic models each pass
            draws fresh noise, so the distances include it.
        x, x_adv: clean and adversarial inputs (N, ...), same shape.
        where: ``"activations"`` hooks every activation module (the hidden layers' outputs,
            as measured in Ch. 3); ``"linear"`` every Linear/Conv2d output.
    Returns:
        One :class:`LayerDistance` per hooked module, in forward order, plus a final entry
        ``"input"`` first (the perturbation itself) so growth over depth is visible.
    """
    if x.shape != x_adv.shape:
        raise ValueError(f"x {tuple(x.shape)} and x_adv {tuple(x_adv.shape)} must match")
    mods = _layer_modules(model, where)
    a = _record_outputs(model, x, mods)
    b = _record_outputs(model, x_adv, mods)
    d0 = (x_adv - x).flatten(1)
    out = [
        LayerDistance(
            "input", int(d0.shape[1]), float(d0.abs().amax(1).mean()), float(d0.norm(dim=1).mean())
        )
    ]
    for name, _ in mods:
        if name not in a or name not in b:
            continue  # module not used in forward
        d = (b[name] - a[name]).flatten(1).double()
        out.append(
            LayerDistance(
                name, int(d.shape[1]), float(d.abs().amax(1).mean()), float(d.norm(dim=1).mean())
            )
        )
    return out


def sensitivity_map(
    model: nn.Module, x: Tensor, y: Tensor, *, bpda: bool = False
) -> tuple[Tensor, Tensor]:
    """Sensitivity map of eq. 4.3 and its summed score.

    ``smap(x) = max(0, dZ_t/dx ⊙ sum_{c != t} dZ_c/dx)`` elementwise, with ``Z`` the logits
    and ``t`` the true class: a pixel is sensitive when nudging it raises the true logit and
    the other logits together (so the two gradients agree in sign), which makes the decision
    easy to flip there. The paper sums the map over pixels as a robustness score.

    Args:
        model: classifier (eval mode; restored).
        x: inputs (N, ...); y: labels (N,).
        bpda: take gradients through the straight-through (BPDA) scope (caps pass gradient).
    Returns:
        ``(maps (N, ...), scores (N,))``.
    """
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be (N,) with N={x.shape[0]}, got {tuple(y.shape)}")
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad(), bpda_scope(model, bpda):
            xg = x.detach().clone().requires_grad_(True)
            z = model(xg)
            if z.dim() != 2 or int(y.max()) >= z.shape[1]:
                raise ValueError("model must return logits (N, K) with labels in [0, K)")
            z_t = z.gather(1, y[:, None]).sum()
            z_o = z.sum() - z_t
            (g_t,) = torch.autograd.grad(z_t, xg, retain_graph=True)
            (g_o,) = torch.autograd.grad(z_o, xg)
    finally:
        model.train(was_training)
    smap = (g_t * g_o).clamp_min(0.0).detach()
    return smap, smap.flatten(1).sum(dim=1)


@dataclass(frozen=True)
class ZeroGradSummary:
    """Zero-gradient experiment (§4.4): distance from x to where PGD meets a zero gradient.

    Attributes:
        mean_distance: mean L2 distance over the points where a zero gradient was found
            (as in the dissertation); NaN if none.
        found_fraction: fraction of points where one was found within the step budget.
        distances: (N,) distances (NaN where not found); steps: (N,) steps taken.
    """

    mean_distance: float
    found_fraction: float
    distances: Tensor
    steps: Tensor


def zero_gradient_distance(
    model: nn.Module, x: Tensor, y: Tensor, **kwargs: Any
) -> ZeroGradSummary:
    """Run ``robustact.attacks.ZeroGradPGD(**kwargs).walk(model, x, y)`` and summarise it."""
    from robustact.attacks import zerograd

    res = zerograd.ZeroGradPGD(**kwargs).walk(model, x, y)
    found = res.found.bool().cpu()
    dist = res.distance.detach().cpu().double()
    dist = torch.where(found, dist, torch.full_like(dist, math.nan))
    mean = float(dist[found].mean()) if bool(found.any()) else math.nan
    return ZeroGradSummary(
        mean_distance=mean,
        found_fraction=float(found.float().mean()),
        distances=dist,
        steps=torch.as_tensor(res.steps).cpu(),
    )


@dataclass(frozen=True)
class NegativeRatio:
    """Fraction of negative values entering (``pre``) and leaving (``post``) one activation."""

    name: str
    kind: str
    pre: float
    post: float


def negative_unit_ratio(model: nn.Module, x: Tensor) -> list[NegativeRatio]:
    """Negative-unit ratio before and after every activation module (BReLU paper Table 6).

    A value counts as negative when it is strictly < 0 (so ReLU's output, and BReLU's
    ``x * 0``, count as non-negative). One eval-mode pass on ``x``.
    """
    mods = _layer_modules(model, "activations")
    io = record_io(model, x, mods)  # one pass: a random gate's input and output agree
    pre = {name: i for name, (i, _) in io.items()}
    post = {name: o for name, (_, o) in io.items()}
    out = []
    for name, m in mods:
        if name in pre and name in post:
            out.append(
                NegativeRatio(
                    name,
                    type(m).__name__,
                    float((pre[name] < 0).float().mean()),
                    float((post[name] < 0).float().mean()),
                )
            )
    return out


def cap_snapshot(model: nn.Module, epoch: int) -> dict[str, Any]:
    """One history entry ``{"epoch": e, "caps": {layer: {"min", "mean", "max"}}}`` of a model."""
    caps: dict[str, dict[str, float]] = {}
    for name, m in find_caps(model):
        v = torch.as_tensor(m.max_value).detach().float().reshape(-1)
        caps[name] = {"min": float(v.min()), "mean": float(v.mean()), "max": float(v.max())}
    return {"epoch": int(epoch), "caps": caps}


def cap_trajectories(history: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Validate a cap history and reshape it per layer.

    Args:
        history: list of ``{"epoch": int, "caps": {layer: {"min": m, "mean": m, "max": m}}}``
            (one per epoch, e.g. from :func:`cap_snapshot`).
    Returns:
        ``{layer: {"epoch": [...], "min": [...], "mean": [...], "max": [...]}}``.
    """
    if not isinstance(history, Sequence) or not history:
        raise ValueError("history must be a non-empty list of {'epoch': e, 'caps': {...}} dicts")
    out: dict[str, dict[str, list[float]]] = {}
    for i, entry in enumerate(history):
        if not isinstance(entry, Mapping) or "epoch" not in entry or "caps" not in entry:
            raise ValueError(f"history[{i}] must be a dict with keys 'epoch' and 'caps'")
        caps = entry["caps"]
        if not isinstance(caps, Mapping):
            raise ValueError(f"history[{i}]['caps'] must map layer names to min/mean/max dicts")
        for layer, st in caps.items():
            if not isinstance(st, Mapping) or not {"min", "mean", "max"} <= set(st):
                raise ValueError(
                    f"history[{i}]['caps'][{layer!r}] needs keys 'min', 'mean' and 'max'"
                )
            row = out.setdefault(layer, {"epoch": [], "min": [], "mean": [], "max": []})
            row["epoch"].append(float(entry["epoch"]))
            for k in ("min", "mean", "max"):
                row[k].append(float(st[k]))
    return out
