"""Robust-optimisation baselines: input-gradient penalty, spectral normalisation, Lipschitz
penalties.

What each one constrains (none of them certifies anything by itself):

* :class:`GradientPenalty` (double backprop; Drucker & LeCun 1992, Ross & Doshi-Velez
  2018) penalises the *local* slope of the loss at the training points,
  ``||grad_x CE(f(x), y)||``. To first order a perturbation ``delta`` with
  ``||delta||_p <= eps`` raises the loss by at most ``eps * ||grad_x CE||_q`` (q the dual
  norm), so the L2 version suits L2 threats and the L1 version Linf threats. It says
  nothing about the slope away from the data, and a flat loss can also be a masked one.
* :func:`apply_spectral_norm` (Miyato et al. 2018) divides every linear / conv weight by
  a power-iteration estimate of its largest singular value, so each dense layer is
  1-Lipschitz in L2 and, with 1-Lipschitz activations (ReLU, S-ReLU), the product bounds
  the network's L2 Lipschitz constant (times ``1/std`` of a Normalize layer). For convs
  torch normalises the kernel reshaped to ``(out, in * kh * kw)``; the convolution
  operator's norm can exceed that by up to about ``sqrt(kh * kw)``, so the conv bound is
  approximate. Batch norm is not constrained.
* :class:`LipschitzPenalty` is the soft version: ``lam * sum_l sigma_max(W_l) ** 2``
  (power iteration with persistent vectors, one step per call), or the Parseval penalty
  ``lam * sum_l ||W W^T - I||_F ** 2`` (Cisse et al. 2017) that pushes each layer
  towards orthonormal rows (every singular value 1), same reshaping for convs.

The objectives follow the training interface ``objective(model, x, y) -> (loss, metrics)``
and are registered in :data:`robustact.train.objectives.OBJECTIVES` when this module is
imported: ``"gradient_penalty"``, ``"lipschitz_penalty"`` and ``"parseval_penalty"`` (the
last two are ``Natural() + LipschitzPenalty(...)``).
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from robustact._validate import is_int
from robustact.models._record import record_edit, register_edit
from robustact.train.objectives import OBJECTIVES, Metrics, Natural, Objective

__all__ = [
    "GradientPenalty",
    "LipschitzPenalty",
    "apply_spectral_norm",
    "input_gradient_norm",
    "weight_layers",
]

_NORMS = ("l2", "l1")


def _check_lam(lam: float, who: str) -> float:
    v = float(lam)
    if not v >= 0 or v == float("inf"):
        raise ValueError(f"{who} lam must be a finite number >= 0, got {lam!r}")
    return v


def _per_sample_norm(g: Tensor, norm: str) -> Tensor:
    flat = g.flatten(1)
    return flat.abs().sum(1) if norm == "l1" else flat.norm(dim=1)


class GradientPenalty(Objective):
    """Double backprop: ``CE(f(x), y) + lam * mean_i R(grad_x CE(f(x_i), y_i))``.

    ``R`` is ``||g||_2 ** 2`` for ``norm="l2"`` (L2 threats) or ``||g||_1`` for
    ``norm="l1"`` (the first-order worst-case loss increase under an Linf threat, divided
    by eps). The gradient is per sample (of the summed, not averaged, CE), so the penalty
    does not shrink with the batch size.

    Metrics: ``ce``, ``acc``, ``grad_norm`` (mean per-sample ``||g||`` in ``norm``),
    ``grad_penalty`` (the weighted term).
    """

    name = "gradient_penalty"

    def __init__(self, lam: float = 0.1, norm: Literal["l2", "l1"] = "l2") -> None:
        self.lam = _check_lam(lam, "GradientPenalty")
        if norm not in _NORMS:
            raise ValueError(
                f"GradientPenalty norm must be 'l2' (L2 threat) or 'l1' (Linf threat), got {norm!r}"
            )
        self.norm = norm

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Metrics]:
        xg = x.detach().requires_grad_(True)
        logits = model(xg)
        ce_each = F.cross_entropy(logits, y, reduction="none")
        ce = ce_each.mean()
        # create_graph so the penalty back-propagates into the weights (double backprop)
        (g,) = torch.autograd.grad(ce_each.sum(), xg, create_graph=self.lam > 0)
        size = _per_sample_norm(g, self.norm)
        reg = (size**2 if self.norm == "l2" else size).mean()
        term = self.lam * reg
        acc = (logits.detach().argmax(1) == y).float().mean()
        metrics: Metrics = {
            "ce": ce.detach(),
            "acc": acc,
            "grad_norm": size.detach().mean(),
            "grad_penalty": term.detach(),
        }
        return ce + term, metrics

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "lam": self.lam, "norm": self.norm}


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` of ``model`` as ``(dotted_name, module)``."""
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kinds)]


def apply_spectral_norm(
    model: nn.Module,
    *,
    n_power_iterations: int = 1,
    exclude: Sequence[str] = (),
    inplace: bool = False,
) -> tuple[nn.Module, list[str]]:
    """Spectrally normalise every linear and conv weight (see the module docstring).

    Uses ``torch.nn.utils.parametrizations.spectral_norm``: the power iteration advances
    ``n_power_iterations`` steps per forward pass in train mode and is frozen in eval mode.

    Args:
        model: any module.
        n_power_iterations: power-iteration steps per training forward pass.
        exclude: glob patterns on dotted module names to leave alone (e.g. the output
            layer, ``["head.*"]``).
        inplace: edit ``model`` itself instead of a deep copy.
    Returns:
        ``(model, names)``: the edited model and the dotted names normalised.
    Raises:
        ValueError: the model has no unexcluded linear/conv layer.
    """
    if not is_int(n_power_iterations):
        raise ValueError(f"n_power_iterations must be a positive int, got {n_power_iterations!r}")
    if n_power_iterations < 1:
        raise ValueError(f"n_power_iterations must be a positive int, got {n_power_iterations!r}")
    if isinstance(exclude, str):
        exclude = [exclude]
    target = model if inplace else copy.deepcopy(model)
    names = []
    for name, m in weight_layers(target):
        if any(fnmatch.fnmatchcase(name, pat) for pat in exclude):
            continue
        if parametrize.is_parametrized(m, "weight"):
            continue  # already normalised (or otherwise parametrised): leave it as it is
        names.append(name)
    if not names:
        raise ValueError(
            "apply_spectral_norm found no nn.Linear/nn.Conv layer to normalise "
            f"(exclude={list(exclude)!r})"
        )
    edit = {"op": "spectral_norm", "names": names, "n_power_iterations": n_power_iterations}
    return record_edit(_replay_spectral_norm(target, edit), edit), names


@register_edit("spectral_norm")
def _replay_spectral_norm(model: nn.Module, edit: Any) -> nn.Module:
    for name in edit["names"]:
        spectral_norm(
            model.get_submodule(str(name)), n_power_iterations=int(edit["n_power_iterations"])
        )
    return model


class LipschitzPenalty(Objective):
    """Penalty term on layer weights; add it to a loss: ``Natural() + LipschitzPenalty(1e-2)``.

    ``kind="spectral"``: ``lam * sum_l sigma_max(W_l) ** 2``, with ``sigma_max`` the
    power-iteration estimate ``u^T W v`` (vectors kept between calls and refreshed
    ``n_power_iterations`` times per call without gradient, as in spectral norm).
    ``kind="parseval"``: ``lam * sum_l ||G_l - I||_F ** 2`` with ``G = W W^T`` (or
    ``W^T W`` when W has more rows than columns). Conv kernels are reshaped to
    ``(out, in * kh * kw)``.

    Metrics: ``lipschitz_penalty`` (the weighted term), and ``sigma_max`` (the largest
    layer estimate) for the spectral kind.
    """

    name = "lipschitz_penalty_term"

    def __init__(
        self,
        lam: float = 1e-2,
        kind: Literal["spectral", "parseval"] = "spectral",
        n_power_iterations: int = 1,
        seed: int = 0,
    ) -> None:
        self.lam = _check_lam(lam, "LipschitzPenalty")
        if kind not in ("spectral", "parseval"):
            raise ValueError(
                f"LipschitzPenalty kind must be 'spectral' or 'parseval', got {kind!r}"
            )
        if not is_int(n_power_iterations):
            raise ValueError(f"n_power_iterations must be a positive int, got {n_power_iterations}")
        if n_power_iterations < 1:
            raise ValueError(f"n_power_iterations must be a positive int, got {n_power_iterations}")
        self.kind = kind
        self.n_power_iterations = n_power_iterations
        self.seed = seed
        self._u: dict[str, Tensor] = {}

    def _sigma(self, name: str, w: Tensor) -> Tensor:
        u = self._u.get(name)
        steps = self.n_power_iterations
        if u is None or u.shape[0] != w.shape[0] or u.device != w.device:
            g = torch.Generator(device="cpu").manual_seed(self.seed)
            u = torch.randn(w.shape[0], generator=g, dtype=w.dtype).to(w.device)
            steps = max(steps, 100)  # converge once from a cold start
        with torch.no_grad():
            wd = w.detach()
            for _ in range(steps):
                v = F.normalize(wd.T @ u, dim=0)
                u = F.normalize(wd @ v, dim=0)
        self._u[name] = u
        return u @ (w @ v)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Metrics]:
        terms = []
        sigmas = []
        for name, m in weight_layers(model):
            weight = m.weight
            assert isinstance(weight, Tensor)
            w = weight.flatten(1)
            if self.kind == "spectral":
                s = self._sigma(name, w)
                sigmas.append(s.detach())
                terms.append(s**2)
            else:
                gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
                eye = torch.eye(gram.shape[0], device=w.device, dtype=w.dtype)
                terms.append(((gram - eye) ** 2).sum())
        if not terms:
            raise ValueError("LipschitzPenalty found no nn.Linear/nn.Conv layer in the model")
        term = self.lam * torch.stack(terms).sum()
        metrics: Metrics = {"lipschitz_penalty": term.detach()}
        if sigmas:
            metrics["sigma_max"] = torch.stack(sigmas).max()
        return term, metrics

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "lam": self.lam,
            "kind": self.kind,
            "n_power_iterations": self.n_power_iterations,
            "seed": self.seed,
        }


def input_gradient_norm(
    model: nn.Module, x: Tensor, y: Tensor, norm: Literal["l2", "l1"] = "l2"
) -> Tensor:
    """Per-sample ``||grad_x CE(model(x), y)||`` (N,), with the model in eval mode.

    Args:
        model: classifier (N, C, H, W) -> (N, K); its mode is restored afterwards.
        x: inputs (N, C, H, W); y: labels (N,).
        norm: ``"l2"`` or ``"l1"``.
    """
    if norm not in _NORMS:
        raise ValueError(f"input_gradient_norm norm must be 'l2' or 'l1', got {norm!r}")
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            ce = F.cross_entropy(model(xg), y, reduction="sum")
            (g,) = torch.autograd.grad(ce, xg)
    finally:
        model.train(was_training)
    return _per_sample_norm(g, norm).detach()


def _lipschitz(lam: float = 1e-2, n_power_iterations: int = 1, seed: int = 0) -> Objective:
    return Natural() + LipschitzPenalty(lam, "spectral", n_power_iterations, seed)


def _parseval(lam: float = 1e-3) -> Objective:
    return Natural() + LipschitzPenalty(lam, "parseval")


for _name, _factory in (
    ("gradient_penalty", GradientPenalty),
    ("lipschitz_penalty", _lipschitz),
    ("parseval_penalty", _parseval),
):
    if _name not in OBJECTIVES:  # importing twice (reload) must not fail
        OBJECTIVES.add(_name, _factory)
