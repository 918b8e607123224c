"""What a cell does besides train-and-evaluate: model transforms before training, activation
swaps and preprocessing defences after it, and the diagnostics of the seeds.

Diagnostic rows (``protocol == "diagnostics"``; the full results also go to the cell's
``extra["diagnostics"]``):

* ``("layer_growth/<layer>" | "layer_growth_adaptive/<layer>", "linf" | "l2", v, eps,
  norm)``: distance between the layer outputs on clean and PGD inputs (dissertation Fig
  3.1/3.2); ``_adaptive`` uses PGD with a margin loss and BPDA through caps.
* ``("zero_gradient", "mean_distance" | "found_fraction", v)``: §4.4.
* ``("sensitivity_map" | "sensitivity_map+bpda", "score_mean", v)``: eq. 4.3 summed over
  pixels, averaged over points.
* ``("negative_unit_ratio/<layer>", "pre" | "post", v)``: BReLU paper Table 6.
* ``("cap/<layer>", "min" | "mean" | "max", v)``: the caps after the last epoch (the whole
  trajectory is in ``extra``).
* ``("input_gradient_norm", "mean", v)`` and ``("pgd_steps/<k>", "accuracy", v, eps, norm)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustact.attacks.adaptive import Adaptive, resolve_eot
from robustact.experiments import builders as B
from robustact.experiments._specextra import AE_TRAINING, DIAGNOSTICS
from robustact.experiments.records import MetricRow
from robustact.surgery import find_caps, replace_activations

__all__ = [
    "TRAINED_DIR",
    "apply_transform",
    "defended_model",
    "load_trained",
    "publish_trained",
    "run_diagnostics",
    "train_id",
]

#: Folder (under a run's output_dir) of the classifiers shared by cells that differ only
#: after training (swaps, preprocessing, evaluation): ``<output_dir>/_trained/<train id>``.
TRAINED_DIR = "_trained"

#: Cell config keys that act only after training.
_AFTER_TRAINING = ("evaluation", "swap", "preprocess")


def train_id(config: Mapping[str, Any]) -> str:
    """The id of what a cell trains: its config without the after-training parts, so the
    cells of one classifier under several swaps/defences/evaluations share it."""
    from robustact.experiments.records import cell_id

    return cell_id({k: v for k, v in config.items() if k not in _AFTER_TRAINING})


def _trained_path(output_dir: str | os.PathLike[str], config: Mapping[str, Any]) -> Path:
    return Path(output_dir) / TRAINED_DIR / train_id(config) / "model.safetensors"


def load_trained(
    model: nn.Module, config: Mapping[str, Any], output_dir: str | os.PathLike[str] | None
) -> Any:
    """Load a classifier another cell already trained into ``model`` (in place); returns
    its training ``History``, or None when there is none to reuse."""
    if output_dir is None or not _trained_path(output_dir, config).is_file():
        return None
    from robustact.train import History, load_checkpoint

    _, meta = load_checkpoint(_trained_path(output_dir, config), model)
    extra = meta.get("extra") or {}
    return History(list(meta.get("history") or []), bool(extra.get("stopped_early", False)))


def publish_trained(
    checkpoint: str | None, config: Mapping[str, Any], output_dir: str | os.PathLike[str] | None
) -> None:
    """Copy a freshly trained cell checkpoint to the shared folder (as atomically as a
    save: a reader sees no checkpoint or the whole one)."""
    if checkpoint is None or output_dir is None:
        return
    from robustact.train.checkpoint import copy_checkpoint

    copy_checkpoint(checkpoint, _trained_path(output_dir, config))


def _selected(model: nn.Module, where: Any) -> list[str]:
    """Dotted names of the activations a spec ``where`` selects (all when None)."""
    _, names = replace_activations(model, "relu", None if where is None else B.where_match(where))
    return names


def apply_transform(model: nn.Module, cfg: Mapping[str, Any] | None) -> nn.Module:
    """The cell's ``transform`` (before training): spectral normalisation of every linear
    and conv weight, or an ``nn.Dropout(p)`` after every (selected) activation."""
    if not cfg or cfg.get("name", "none") == "none":
        return model
    if cfg["name"] == "spectral_norm":
        from robustact.defenses import apply_spectral_norm

        out, _ = apply_spectral_norm(
            model, n_power_iterations=int(cfg.get("n_power_iterations", 1)),
            exclude=list(cfg.get("exclude", [])),
        )  # fmt: skip
    elif cfg["name"] == "dropout":
        from robustact.models import add_dropout

        out = add_dropout(model, _selected(model, cfg.get("where")), float(cfg["p"]))
    else:
        raise ValueError(f"unknown model transform {cfg['name']!r}; use spectral_norm or dropout")
    return out  # both record themselves in robustact_config: checkpoints rebuild them


def _swap(model: nn.Module, cfg: Mapping[str, Any], example: Tensor) -> nn.Module:
    if cfg["name"] == "cap":
        caps = find_caps(model)
        if not caps:
            raise ValueError("swap {name: cap} needs S-ReLU/D-ReLU caps; the model has none")
        v = float(cfg["max_value"])
        with torch.no_grad():
            for _, m in caps:
                if isinstance(m.max_value, Tensor):
                    m.max_value.fill_(v)
                else:
                    m.max_value = v
        return model
    args = {k: v for k, v in cfg.items() if k not in ("name", "count", *B.PLACEMENT_KEYS)}
    where = cfg.get("where")
    if "count" in cfg:
        where = list(range(int(cfg["count"])))
    factory = B.activation_factory(str(cfg["name"]), args)
    match = None if where is None else B.where_match(where)
    out, _ = replace_activations(model, factory, match, example_input=example)
    return out


def defended_model(
    model: nn.Module, config: Mapping[str, Any], train_x: Tensor, seed: int
) -> tuple[nn.Module, dict[str, Any]]:
    """The model the cell evaluates: the trained classifier after its ``swap`` and behind
    its ``preprocess`` defence (an autoencoder is trained here on ``train_x``).

    Returns:
        ``(model in eval mode, extra)``; ``extra`` holds the autoencoder's loss curve.
    """
    extra: dict[str, Any] = {}
    dev = next((p.device for p in model.parameters()), train_x.device)
    swap, prep = config.get("swap"), config.get("preprocess")
    if swap:
        model = _swap(model, swap, train_x[:8].to(dev))
    if prep:
        from robustact.defenses import Preprocessed, get_preprocess, train_autoencoder

        name = str(prep["name"])
        kw = {k: v for k, v in prep.items() if k != "name" and k not in AE_TRAINING}
        if name == "autoencoder":
            kw["in_channels"] = int(train_x.shape[1])
        step = get_preprocess(name, **kw).to(dev)
        if name == "autoencoder":
            opts = {**AE_TRAINING, **{k: prep[k] for k in AE_TRAINING if k in prep}}
            extra["autoencoder_mse"] = train_autoencoder(
                step, train_x.to(dev), int(opts["epochs"]), float(opts["noise_std"]),
                lr=float(opts["lr"]), batch_size=int(opts["batch_size"]), seed=seed,
            )  # fmt: skip
        model = Preprocessed(model, step)
    model.eval()
    return model, extra


# --------------------------------------------------------------------------- diagnostics


def _opts(d: Mapping[str, Any]) -> dict[str, Any]:
    return {**{k: dflt for k, (_, dflt) in DIAGNOSTICS[str(d["name"])].items()}, **d}


def _pgd(eps: float, steps: int, step_size: float, norm: str, seed: int, **kw: Any) -> Any:
    from robustact.attacks import PGD

    return PGD(eps=eps, steps=steps, step_size=step_size, norm=norm, seed=seed, **kw)


def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _layer_growth(
    model: nn.Module, x: Tensor, y: Tensor, o: Mapping[str, Any], eps_list: Sequence[float],
    norm: str, seed: int,
) -> tuple[list[MetricRow], dict[str, Any]]:  # fmt: skip
    from robustact.evaluate.diagnostics import layer_distances

    rows: list[MetricRow] = []
    extra: dict[str, Any] = {}
    eot = resolve_eot(model, "auto")
    for eps in [o["eps"]] if o["eps"] is not None else eps_list:
        step = o["step_size"] or eps / 10
        runs: list[tuple[str, dict[str, Any], bool]] = [("layer_growth", {}, False)]
        if o["adaptive"]:
            runs.append(("layer_growth_adaptive", {"loss": "margin", "eot": eot}, True))
        for label, kw, bpda in runs:
            atk = _pgd(eps, o["steps"], step, norm, seed, **kw)
            x_adv = (Adaptive(atk, bpda=True) if bpda else atk)(model, x, y)
            dists = layer_distances(model, x, x_adv, where=o["where"])
            extra[f"{label}@{eps:g}"] = [vars(d) for d in dists]
            for d in dists:
                where = f"{label}/{d.name}"
                rows.append(MetricRow("diagnostics", where, "linf", d.linf, eps, norm))
                rows.append(MetricRow("diagnostics", where, "l2", d.l2, eps, norm))
    return rows, extra


def run_diagnostics(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    diagnostics: Sequence[Mapping[str, Any]],
    *,
    eps: Sequence[float],
    norm: str,
    history: Sequence[Mapping[str, Any]],
    seed: int,
) -> tuple[list[MetricRow], dict[str, Any]]:
    """Run the cell's ``evaluation.diagnostics`` on the evaluated model.

    Args:
        model: the evaluated (defended) model, eval mode.
        x, y: test points (N, C, H, W), (N,) on the model's device; each diagnostic uses
            its first ``n``.
        diagnostics: the configs (``{"name": ..., **options}``).
        eps, norm: the evaluation's threat models (for the attack-based diagnostics).
        history: the training records (for ``cap_trajectory``).
        seed: seeds every attack.
    Returns:
        ``(rows, extra)`` (see the module docstring).
    """
    from robustact.evaluate import diagnostics as D

    rows: list[MetricRow] = []
    extra: dict[str, Any] = {}
    for d in diagnostics:
        o = _opts(d)
        name = str(o["name"])
        xs, ys = x[: o.get("n", len(x))], y[: o.get("n", len(y))]
        if name == "layer_growth":
            lg_rows, extra[name] = _layer_growth(model, xs, ys, o, eps, norm, seed)
            rows += lg_rows
        elif name == "zero_gradient":
            zn = "L2" if o["norm"] == "l2" else "Linf"
            z = D.zero_gradient_distance(model, xs, ys, eps=o["eps"], steps=o["steps"],
                                         step_size=o["step_size"], norm=zn)  # fmt: skip
            extra[name] = {"mean_distance": z.mean_distance, "found_fraction": z.found_fraction}
            rows.append(MetricRow("diagnostics", name, "found_fraction", z.found_fraction))
            if not math.isnan(z.mean_distance):
                rows.append(MetricRow("diagnostics", name, "mean_distance", z.mean_distance))
        elif name == "sensitivity_map":
            extra[name] = {}
            for bpda in (False, True) if o["bpda"] else (False,):
                smap, scores = D.sensitivity_map(model, xs, ys, bpda=bpda)
                label = name + ("+bpda" if bpda else "")
                rows.append(MetricRow("diagnostics", label, "score_mean", float(scores.mean())))
                i = int((ys == 5).nonzero()[0]) if bool((ys == 5).any()) else 0
                extra[name][label] = {
                    "score_mean": float(scores.mean()), "example_index": i,
                    "example_label": int(ys[i]), "example_score": float(scores[i]),
                    "example_map": smap[i].sum(0).cpu().round(decimals=8).tolist(),
                }  # fmt: skip
        elif name == "negative_unit_ratio":
            ratios = D.negative_unit_ratio(model, xs)
            extra[name] = [vars(r) for r in ratios]
            for r in ratios:
                rows.append(MetricRow("diagnostics", f"{name}/{r.name}", "pre", r.pre))
                rows.append(MetricRow("diagnostics", f"{name}/{r.name}", "post", r.post))
        elif name == "cap_trajectory":
            hist = [{"epoch": h["epoch"], "caps": h["caps"]} for h in history if h.get("caps")]
            if not hist:
                extra[name] = {"skipped": "the model has no S-ReLU/D-ReLU caps"}
                continue
            traj = D.cap_trajectories(hist)
            extra[name] = traj
            for layer, t in traj.items():
                for k in ("min", "mean", "max"):
                    rows.append(MetricRow("diagnostics", f"cap/{layer}", k, t[k][-1]))
        elif name == "input_gradient_norm":
            from robustact.defenses import input_gradient_norm

            v = float(input_gradient_norm(model, xs, ys, norm=o["norm"]).mean())
            extra[name] = v
            rows.append(MetricRow("diagnostics", name, "mean", v))
        elif name == "pgd_steps":
            curve: dict[str, float] = {}
            for e in eps:
                for k in o["steps"]:
                    step = o["step_size"] or 2.5 * e / k
                    atk = _pgd(e, k, step, norm, seed, eot=o["eot"])
                    acc = _accuracy(model, atk(model, xs, ys), ys)
                    curve[f"{k}@{e:g}"] = acc
                    rows.append(MetricRow("diagnostics", f"{name}/{k}", "accuracy", acc, e, norm))
            extra[name] = curve
    return rows, extra
