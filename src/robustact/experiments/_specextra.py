"""The defence axes of a spec (``preprocess``, ``transforms``, ``swaps``), each parsed and
built here (:func:`preprocess_entry` / :func:`build_preprocess`, :func:`transform_entry` /
:func:`apply_transform`, :func:`swap_entry` / :func:`apply_swap`), and the options of the
``evaluation.diagnostics`` list (run by :mod:`robustact.experiments._cellextras`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from robustact._validate import is_int
from robustact.experiments import _specparse as P
from robustact.experiments import builders as B
from robustact.surgery import find_caps, replace_activations

#: Keys of an ``autoencoder`` preprocess entry that configure its training, not the network.
AE_TRAINING = {"epochs": 20, "noise_std": 0.1, "lr": 1e-2, "batch_size": 64}

TRANSFORMS = ("spectral_norm", "dropout")

#: Diagnostics and their options: option -> (kind, default). Kinds: "int" (>= 1), "pos"
#: (> 0), "pos|inf", "num|none" (>= 0 or null), "bool", "ints" (list of ints >= 1) or a
#: tuple of allowed strings.
DIAGNOSTICS: dict[str, dict[str, tuple[Any, Any]]] = {
    "layer_growth": {
        "n": ("int", 200), "eps": ("num|none", None), "steps": ("int", 20),
        "step_size": ("num|none", None), "where": (("activations", "linear"), "activations"),
        "adaptive": ("bool", True),
    },
    "zero_gradient": {
        "n": ("int", 200), "eps": ("pos|inf", math.inf), "steps": ("int", 100),
        "step_size": ("pos", 0.01), "norm": (("linf", "l2"), "linf"),
    },
    "sensitivity_map": {"n": ("int", 200), "bpda": ("bool", True)},
    "negative_unit_ratio": {"n": ("int", 500)},
    "cap_trajectory": {},
    "input_gradient_norm": {"n": ("int", 200), "norm": (("l2", "l1"), "l2")},
    "logit_variability": {"n": ("int", 100), "runs": ("int", 5)},
    "pgd_steps": {
        "n": ("int", 200), "steps": ("ints", [1, 2, 5, 10, 20, 50]),
        "step_size": ("num|none", None), "eot": ("int", 1),
    },
}  # fmt: skip


def _none_or(node: Any, path: str, ctx: P.Ctx, names: list[str], kind: str) -> Any:
    """("none" | (name, options)) or None after an error."""
    if node is None or node == "none" or (isinstance(node, Mapping) and node.get("name") == "none"):
        if isinstance(node, Mapping) and set(node) != {"name"}:
            ctx.err(path, f"a none {kind} takes no options")
            return None
        return "none"
    got = P.named(node, path, ctx)
    if got is None:
        return None
    name_path = P.join(path, "name") if isinstance(node, Mapping) else path
    name = P.lookup(got[0], [*names, "none"], kind, name_path, ctx)
    return None if name is None else (name, dict(got[1]))


def _value(kind: Any, v: Any, path: str, ctx: P.Ctx) -> Any:
    if isinstance(kind, tuple):
        if not isinstance(v, str) or v.lower() not in kind:
            ctx.err(path, f"expected one of {', '.join(kind)}, got {P.show(v)}")
            return None
        return v.lower()
    if kind == "bool":
        if not isinstance(v, bool):
            ctx.err(path, f"expected true or false, got {P.show(v)}")
        return v
    if kind == "ints":
        if not (isinstance(v, list) and v) or not all(is_int(i) and i >= 1 for i in v):
            ctx.err(path, f"expected a non-empty list of integers >= 1, got {P.show(v)}")
            return None
        return sorted(set(v))
    if kind == "int":
        return P.number(v, path, ctx, "int", 1)
    if kind == "num|none":
        return None if v is None else P.number(v, path, ctx, "num", 0.0)
    if kind == "pos|inf" and isinstance(v, float) and math.isinf(v) and v > 0:
        return v
    return P.number(v, path, ctx, "num", 0.0, lo_open=True)


def _options(
    opts: Mapping[str, Any], schema: Mapping[str, tuple[Any, Any]], path: str, ctx: P.Ctx
) -> dict[str, Any] | None:
    n0 = len(ctx.errors)
    P.check_keys(opts, list(schema), path, ctx)
    out = {k: _value(schema[k][0], v, P.join(path, k), ctx) for k, v in opts.items() if k in schema}
    return None if len(ctx.errors) > n0 else out


# --------------------------------------------------------------------------- axes


def preprocess_entry(node: Any, path: str, ctx: P.Ctx) -> dict[str, Any] | None:
    """``none``, ``{name: jpeg, quality: 50}``, ``{name: autoencoder, hidden: 16, epochs:
    20, noise_std: 0.1}`` (trained on the cell's training split; channels from the data)."""
    from robustact.defenses import PREPROCESSORS, get_preprocess, list_preprocessors

    got = _none_or(node, path, ctx, list_preprocessors(), "preprocessing defence")
    if got is None or got == "none":
        return None if got is None else {"name": "none"}
    name, opts = got
    params = {k: p for k, p in B.callable_params(PREPROCESSORS.get(name)).items()
              if k != "generator"}  # fmt: skip
    refuse = {"in_channels": "set from the dataset"} if name == "autoencoder" else {}
    extra = list(AE_TRAINING) if name == "autoencoder" else []
    n0 = len(ctx.errors)
    kw = P.kwargs_against(opts, params, path, ctx, extra_allowed=extra, refuse=refuse)
    if kw is None:
        return None
    for k in extra:
        if k in kw:
            kind = "int" if k in ("epochs", "batch_size") else "num"
            lo = 1 if k == "batch_size" else 0
            kw[k] = P.number(kw[k], P.join(path, k), ctx, kind, lo, lo_open=k == "lr")
    build = {k: v for k, v in kw.items() if k not in AE_TRAINING}
    if len(ctx.errors) == n0:
        try:
            get_preprocess(name, **({"in_channels": 1} if refuse else {}), **build)
        except (ValueError, TypeError) as e:
            ctx.err(path, str(e))
    return None if len(ctx.errors) > n0 else {"name": name, **kw}


def transform_entry(node: Any, path: str, ctx: P.Ctx) -> dict[str, Any] | None:
    """``none``, ``{name: spectral_norm, n_power_iterations: 1, exclude: ["fc_out"]}`` or
    ``{name: dropout, p: 0.1}`` (an ``nn.Dropout`` after every activation, or the
    ``where:`` ones)."""
    got = _none_or(node, path, ctx, list(TRANSFORMS), "model transform")
    if got is None or got == "none":
        return None if got is None else {"name": "none"}
    name, opts = got
    n0 = len(ctx.errors)
    cfg: dict[str, Any] = {"name": name}
    if name == "spectral_norm":
        P.check_keys(opts, ["n_power_iterations", "exclude"], path, ctx)
        if "n_power_iterations" in opts:
            cfg["n_power_iterations"] = P.number(
                opts["n_power_iterations"], P.join(path, "n_power_iterations"), ctx, "int", 1
            )
        if "exclude" in opts:
            ex = opts["exclude"]
            if not (isinstance(ex, list) and all(isinstance(s, str) and s for s in ex)):
                ctx.err(P.join(path, "exclude"), f"expected a list of name globs, got {P.show(ex)}")
            cfg["exclude"] = ex
    else:
        P.check_keys(opts, ["p", "where"], path, ctx, required=["p"])
        if "p" in opts:
            cfg["p"] = P.number(opts["p"], P.join(path, "p"), ctx, "num", 0.0, False, 1.0, True)
        if "where" in opts:
            cfg["where"] = P._where(opts["where"], P.join(path, "where"), ctx)
    return None if len(ctx.errors) > n0 else cfg


def swap_entry(node: Any, path: str, ctx: P.Ctx) -> dict[str, Any] | None:
    """``none``; ``{name: cap, max_value: m}`` (every S-ReLU/D-ReLU cap set to ``m`` after
    training); or an activation ``{name: relu, **args}`` replacing the trained model's
    activations (all, the ``where:`` ones, or the first ``count`` from the input)."""
    from robustact.activations import list_activations

    got = _none_or(node, path, ctx, [*list_activations(), "cap"], "activation swap")
    if got is None or got == "none":
        return None if got is None else {"name": "none"}
    name, opts = got
    n0 = len(ctx.errors)
    if name == "cap":
        P.check_keys(opts, ["max_value"], path, ctx, required=["max_value"])
        mv = P.ranged("max_value", opts["max_value"], P.join(path, "max_value"), ctx) \
            if "max_value" in opts else None  # fmt: skip
        return None if len(ctx.errors) > n0 else {"name": "cap", "max_value": mv}
    for k in ("insert", "width"):
        if k in opts:
            ctx.err(P.join(path, k), "a swap replaces existing activations; insert layers in "
                    "grid.activations")  # fmt: skip
    count = opts.pop("count", None)
    if count is not None and "where" in opts:
        ctx.err(path, "give where: or count:, not both")
    cfg = P.activation_entry({"name": name, **opts}, path, ctx)
    if count is not None:
        c = P.number(count, P.join(path, "count"), ctx, "int", 1)
        if cfg is not None:
            cfg["count"] = c
    return None if cfg is None or len(ctx.errors) > n0 else cfg


# --------------------------------------------------------------------------- building


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


def apply_swap(model: nn.Module, cfg: Mapping[str, Any], example: Tensor) -> nn.Module:
    """The cell's ``swap`` (after training): every S-ReLU/D-ReLU cap set to ``max_value``
    (in place), or the selected activations replaced (``example``: a batch (N, C, H, W)
    sizing per-unit activations)."""
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


def build_preprocess(
    cfg: Mapping[str, Any], train_x: Tensor, seed: int
) -> tuple[nn.Module, dict[str, Any]]:
    """The cell's ``preprocess`` step on ``train_x``'s device; an autoencoder is trained
    here on ``train_x`` (N, C, H, W) and its loss curve returned in the extra dict."""
    from robustact.defenses import get_preprocess, train_autoencoder

    name = str(cfg["name"])
    kw = {k: v for k, v in cfg.items() if k != "name" and k not in AE_TRAINING}
    if name == "autoencoder":
        kw["in_channels"] = int(train_x.shape[1])
    step = get_preprocess(name, **kw).to(train_x.device)
    if name != "autoencoder":
        return step, {}
    opts = {**AE_TRAINING, **{k: cfg[k] for k in AE_TRAINING if k in cfg}}
    mse = train_autoencoder(
        step, train_x, int(opts["epochs"]), float(opts["noise_std"]), lr=float(opts["lr"]),
        batch_size=int(opts["batch_size"]), seed=seed,
    )  # fmt: skip
    return step, {"autoencoder_mse": mse}


# --------------------------------------------------------------------------- diagnostics


def diagnostics_section(node: Any, path: str, ctx: P.Ctx) -> tuple[dict[str, Any], ...]:
    """``evaluation.diagnostics``: names or ``{name, **options}`` of :data:`DIAGNOSTICS`."""
    out: list[dict[str, Any]] = []
    for i, item in enumerate(P.listing(node, path, ctx, empty_ok=True) or []):
        ip = P.join(path, i)
        got = P.named(item, ip, ctx)
        if got is None:
            continue
        name_path = P.join(ip, "name") if isinstance(item, Mapping) else ip
        name = P.lookup(got[0], list(DIAGNOSTICS), "diagnostic", name_path, ctx)
        if name is None:
            continue
        if any(d["name"] == name for d in out):
            ctx.err(ip, f"diagnostic {P.show(name)} is listed twice")
            continue
        opts = _options(got[1], DIAGNOSTICS[name], ip, ctx)
        if opts is not None:
            out.append({"name": name, **opts})
    return tuple(out)
