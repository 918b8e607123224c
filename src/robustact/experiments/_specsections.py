"""Spec sections beyond the grid entries: the evaluation block (protocols, eps, norm,
diagnostics) and the training block."""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any

from robustact.attacks.threat import canonical_norm
from robustact.evaluate.protocol import Protocol, list_protocols
from robustact.experiments import builders as B
from robustact.experiments._celldata import DATA_KEYS, check_extras
from robustact.experiments._specextra import diagnostics_section
from robustact.experiments._specparse import (
    _RUNTIME_TRAINING,
    Ctx,
    Entry,
    _is_num,
    check_keys,
    join,
    kwargs_against,
    listing,
    lookup,
    mapping,
    norm_name,
    ranged,
    show,
)
from robustact.train import ConfigError, TrainConfig


def protocol_entry(node: Any, path: str, ctx: Ctx) -> dict[str, Any] | None:
    builtin = list_protocols()
    if isinstance(node, str):
        name = lookup(node, builtin, "protocol", path, ctx)
        return None if name is None else {"name": name}
    m = mapping(node, path, ctx)
    if m is None:
        return None
    n0 = len(ctx.errors)
    if "attacks" not in m:
        check_keys(m, ["name"], path, ctx, required=["name"])
        name = lookup(m.get("name"), builtin, "protocol", join(path, "name"), ctx)
        return None if name is None or len(ctx.errors) > n0 else {"name": name}
    allowed = ["name", "attacks", "cascade", "eot_samples", "repeats"]
    check_keys(m, allowed, path, ctx, required=["name"])
    name = m.get("name")
    if not isinstance(name, str) or not name:
        ctx.err(join(path, "name"), f"expected a name for the custom protocol, got {show(name)}")
    elif norm_name(name) in {norm_name(b) for b in builtin}:
        ctx.err(join(path, "name"), f"{show(name)} is a built-in protocol; give your attack "
                "list another name")  # fmt: skip
    cfg: dict[str, Any] = {"name": name}
    if "cascade" in m and not isinstance(m["cascade"], bool):
        ctx.err(join(path, "cascade"), f"expected true or false, got {show(m['cascade'])}")
    for k in ("eot_samples", "repeats"):
        if k in m:
            cfg[k] = ranged(k, m[k], join(path, k), ctx)
    if "cascade" in m:
        cfg["cascade"] = m["cascade"]
    attacks = listing(m.get("attacks"), join(path, "attacks"), ctx)
    entries = [
        e
        for i, item in enumerate(attacks or [])
        if (e := _custom_attack(item, join(join(path, "attacks"), i), ctx)) is not None
    ]
    if len(ctx.errors) > n0 or not _builds(entries, str(name), path, ctx):
        return None
    cfg["attacks"] = entries
    return cfg


_ATTACK_OPTIONS = ("attack", "label", "bpda", "eot", "own_threat")


def _custom_attack(item: Any, ip: str, ctx: Ctx) -> dict[str, Any] | None:
    """One entry of a custom protocol's ``attacks:`` list, checked against the attack's
    signature (eps and norm are the protocol's unless ``own_threat``)."""
    im = mapping(item, ip, ctx)
    if im is None:
        return None
    if "attack" not in im:
        ctx.err(ip, 'missing required key "attack"')
        return None
    att = lookup(im["attack"], B.attack_names(), "attack", join(ip, "attack"), ctx)
    if att is None:
        return None
    params = B.callable_params(B.ATTACKS.get(att))
    refuse = {} if im.get("own_threat") else {
        "eps": "the protocol's eps (evaluation.eps) is used; set own_threat: true to keep one",
        "norm": "the protocol's norm (evaluation.norm) is used",
    }  # fmt: skip
    rest = {k: v for k, v in im.items() if k not in _ATTACK_OPTIONS}
    p2 = {k: p for k, p in params.items() if k not in ("eot",)}
    kw = kwargs_against(rest, p2, ip, ctx, refuse=refuse)
    if kw is None:
        return None
    return {**{k: im[k] for k in _ATTACK_OPTIONS if k in im}, "attack": att, **kw}


def _builds(entries: list[dict[str, Any]], name: str, path: str, ctx: Ctx) -> bool:
    """True when the custom protocol and each of its attacks can be built."""
    try:
        proto = Protocol.from_spec(entries, eps=0.1, name=name)
        import torch

        for e in proto.entries:
            e.build(torch.nn.Linear(1, 2), 0.1, "Linf", 1)
    except (ValueError, TypeError) as e:
        ctx.err(path, str(e))
        return False
    return True


def _ann_is_float(ann: Any) -> bool:
    s = str(ann)
    return "float" in s and "int" not in s


def training_section(node: Any, path: str, ctx: Ctx) -> dict[str, Any] | None:
    """Checked TrainConfig fields (canonical types) plus ``val_fraction``."""
    m = mapping(node, path, ctx)
    if m is None:
        return None
    tfields = {f.name: f for f in fields(TrainConfig)}
    allowed = [k for k in tfields if k not in _RUNTIME_TRAINING] + list(B.EXTRA_TRAINING_KEYS)
    n0 = len(ctx.errors)
    check_keys(m, allowed, path, ctx, refuse=_RUNTIME_TRAINING)
    out: dict[str, Any] = {}
    for k, v in m.items():
        if k not in allowed or k in _RUNTIME_TRAINING:
            continue
        ok, value = _training_value(k, v, join(path, k), ctx, tfields)
        if ok:
            out[k] = value
    for key, msg in check_extras(out):
        ctx.err(join(path, key), msg)
    if len(ctx.errors) > n0:
        return None
    try:
        B.build_train_config(out, 0)
    except ConfigError as e:
        hit = re.match(r"TrainConfig\.(\w+) = .* is invalid: (.*)", str(e))
        where = join(path, hit.group(1)) if hit else path
        ctx.err(where, hit.group(2) if hit else str(e))
        return None
    return out


def _training_value(
    k: str, v: Any, where: str, ctx: Ctx, tfields: dict[str, Any]
) -> tuple[bool, Any]:
    """One training key checked by TrainConfig itself; (False, None) after an error."""
    if k == "val_fraction":
        return True, ranged(k, v, where, ctx)
    if k in DATA_KEYS:
        return True, v
    raw = v
    if k in ("betas", "milestones") and isinstance(v, list):
        v = tuple(v)
    try:
        TrainConfig(**{k: v})
    except ConfigError as e:
        if f"TrainConfig.{k} " in str(e):
            ctx.err(where, str(e).split(" is invalid: ", 1)[-1] + f", got {show(raw)}")
            return False, None
    except TypeError as e:
        ctx.err(where, str(e))
        return False, None
    if _ann_is_float(tfields[k].type) and _is_num(v):
        return True, float(v)
    if k == "betas":
        return True, [float(b) for b in v]
    if k == "milestones":
        return True, list(v)
    return True, v


_EVAL_KEYS = ("protocols", "eps", "norm", "n", "fast", "masking", "batch_size", "diagnostics")


def evaluation_section(node: Any, path: str, ctx: Ctx, partial: bool) -> dict[str, Any]:
    """``Evaluation`` fields from an ``evaluation:`` node (``partial``: only the keys it
    sets, as in ``quick.evaluation``)."""
    m = mapping(node, path, ctx)
    if m is None:
        return {}
    check_keys(m, _EVAL_KEYS, path, ctx, required=() if partial else ("eps",))
    out: dict[str, Any] = {}
    if "protocols" in m or not partial:
        out["protocols"] = _protocols(m.get("protocols", ["seed", "adaptive"]), path, ctx)
    if "eps" in m:
        out["eps"] = _eps_list(m["eps"], join(path, "eps"), ctx)
    if "norm" in m:
        try:
            out["norm"] = canonical_norm(str(m["norm"]))
        except ValueError:
            ctx.err(join(path, "norm"), f"expected linf or l2, got {show(m['norm'])}")
    if "n" in m:
        out["n"] = None if m["n"] is None else ranged("n", m["n"], join(path, "n"), ctx)
    if "batch_size" in m:
        out["batch_size"] = ranged("batch_size", m["batch_size"], join(path, "batch_size"), ctx)
    if "diagnostics" in m:
        dp = join(path, "diagnostics")
        out["diagnostics"] = diagnostics_section(m["diagnostics"], dp, ctx)
    for k in ("fast", "masking"):
        if k in m:
            if not isinstance(m[k], bool):
                ctx.err(join(path, k), f"expected true or false, got {show(m[k])}")
            out[k] = bool(m[k])
    return out


def _protocols(raw: Any, path: str, ctx: Ctx) -> tuple[Entry, ...]:
    """``evaluation.protocols``: names or custom protocols, each listed once."""
    kp = join(path, "protocols")
    entries: list[Entry] = []
    for i, item in enumerate(listing(raw, kp, ctx) or []):
        cfg = protocol_entry(item, join(kp, i), ctx)
        if cfg is None:
            continue
        if any(e.name == cfg["name"] for e in entries):
            ctx.err(join(kp, i), f"protocol {show(cfg['name'])} is listed twice")
            continue
        entries.append(Entry(cfg, join(kp, i)))
    return tuple(entries)


def _eps_list(node: Any, ep: str, ctx: Ctx) -> tuple[float, ...]:
    """``evaluation.eps``: one radius or a non-empty list of distinct ones."""
    raw_eps = node if isinstance(node, list) else [node]
    eps: list[float] = []
    if not raw_eps:
        ctx.err(ep, "expected a number >= 0 or a non-empty list of them")
    for i, e in enumerate(raw_eps):
        v = ranged("eps", e, join(ep, i) if isinstance(node, list) else ep, ctx)
        if v is not None and v in eps:
            ctx.err(join(ep, i), f"duplicate eps {v:g}")
        elif v is not None:
            eps.append(v)
    return tuple(eps)
