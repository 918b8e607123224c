"""Section parsers of an experiment spec: each checks one part of the YAML document and
returns plain, canonical config dicts, recording every problem (with its path in the file
and, for names and keys, the closest match) instead of stopping at the first one."""

from __future__ import annotations

import difflib
import inspect
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from robustact._validate import describe_range, in_range, is_int, is_number
from robustact.activations import list_activations
from robustact.data import DATASETS, list_datasets
from robustact.experiments import builders as B
from robustact.experiments._specload import clip, show
from robustact.experiments.records import canonical_json
from robustact.models import list_models
from robustact.surgery import ACTIVATION_TYPES
from robustact.train import list_objectives

# numbers whose meaning fixes their range, whatever object takes them
_RANGES: dict[str, tuple[str, float | None, bool, float | None, bool]] = {
    # name: (kind, lo, lo_open, hi, hi_open); kind "num" or "int"
    "max_value": ("num", 0.0, True, None, False),
    "init_max": ("num", 0.0, True, None, False),
    "alpha": ("num", 0.0, True, None, False),
    "lam": ("num", 0.0, False, None, False),
    "penalty": ("num", 0.0, False, None, False),
    "beta": ("num", 0.0, False, None, False),
    "eps": ("num", 0.0, False, None, False),
    "step_size": ("num", 0.0, False, None, False),
    "clean_weight": ("num", 0.0, False, 1.0, False),
    "start_fraction": ("num", 0.0, True, 1.0, False),
    "switch_fraction": ("num", 0.0, True, 1.0, True),
    "val_fraction": ("num", 0.0, False, 1.0, True),  # 0: no split (_celldata)
    "negative_slope": ("num", None, False, None, False),
    "steps": ("int", 1, False, None, False),
    "restarts": ("int", 1, False, None, False),
    "queries": ("int", 1, False, None, False),
    "n_target_classes": ("int", 1, False, None, False),
    "ramp_epochs": ("int", 1, False, None, False),
    "switch_epoch": ("int", 1, False, None, False),
    "width": ("int", 1, False, None, False),
    "eot_samples": ("int", 1, False, None, False),
    "repeats": ("int", 1, False, None, False),
    "batch_size": ("int", 1, False, None, False),
    "n": ("int", 1, False, None, False),
    "size": ("int", 1, False, None, False),
}

#: TrainConfig fields a spec may not set (the grid, the runner or the CLI sets them).
_RUNTIME_TRAINING = {
    "seed": "set seeds in grid.seeds",
    "device": "the runner chooses the device (run_spec(device=...))",
    "progress": "the runner controls progress output",
    "extra": "not settable from a spec",
}


def norm_name(name: str) -> str:
    return name.lower().replace("-", "_")


@dataclass
class Ctx:
    """Collects error lines ``"<file>: <path>: <message>"``."""

    source: str
    errors: list[str] = field(default_factory=list)

    def err(self, path: str, msg: str) -> None:
        # one line, bounded: messages may quote user values or a constructor's error text
        self.errors.append(f"{self.source}: {clip(path or '<top>', 200)}: {clip(msg, 1000)}")


def plain_json(cfg: Any, path: str, ctx: Ctx) -> str | None:
    """``cfg``'s canonical JSON (what its cell ids hash), or None after an error: options
    passed through unchecked may hold non-string keys or non-finite numbers."""
    try:
        return canonical_json(cfg)
    except (TypeError, ValueError):
        ctx.err(path, "values must be strings, finite numbers, booleans, null, lists or "
                "mappings with string keys")  # fmt: skip
        return None


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    key = clip(key, 40)
    return f"{path}.{key}" if path else key


def suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(clip(str(word), 60), list(choices), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def mapping(node: Any, path: str, ctx: Ctx) -> dict[str, Any] | None:
    if not isinstance(node, Mapping):
        ctx.err(path, f"expected a mapping (key: value), got {show(node)}")
        return None
    return dict(node)


def listing(node: Any, path: str, ctx: Ctx, *, empty_ok: bool = False) -> list[Any] | None:
    if not isinstance(node, list):
        ctx.err(path, f"expected a list, got {show(node)}")
        return None
    if not node and not empty_ok:
        ctx.err(path, "expected a non-empty list")
        return None
    return node


def check_keys(
    node: Mapping[str, Any],
    allowed: Sequence[str],
    path: str,
    ctx: Ctx,
    required: Sequence[str] = (),
    refuse: Mapping[str, str] | None = None,
) -> bool:
    """Unknown keys (with a close match) and missing required keys; True when clean."""
    ok = True
    for k in node:
        if refuse and k in refuse:
            ctx.err(join(path, str(k)), f"cannot be set here: {refuse[k]}")
            ok = False
        elif k not in allowed:
            hint = suggest(str(k), allowed)
            ctx.err(join(path, str(k)), f"unknown key{hint} (allowed: {', '.join(allowed)})")
            ok = False
    for r in required:
        if r not in node:
            ctx.err(path, f'missing required key "{r}"')
            ok = False
    return ok


def lookup(value: Any, names: Sequence[str], kind: str, path: str, ctx: Ctx) -> str | None:
    """The registered spelling of ``value`` among ``names`` (case and -/_ insensitive)."""
    if not isinstance(value, str):
        ctx.err(path, f"expected a {kind} name (a string), got {show(value)}")
        return None
    table = {norm_name(n): n for n in names}
    hit = table.get(norm_name(value))
    if hit is None:
        hint = suggest(value, names)
        ctx.err(path, f"unknown {kind} {show(value)}{hint} (known: {', '.join(names)})")
    return hit


def _is_num(v: Any) -> bool:
    return is_number(v) and math.isfinite(v)


def number(
    v: Any,
    path: str,
    ctx: Ctx,
    kind: str = "num",
    lo: float | None = None,
    lo_open: bool = False,
    hi: float | None = None,
    hi_open: bool = False,
) -> Any:
    """A checked number (float for "num", int for "int"), or None after an error."""
    ok = _is_num(v) and (kind == "num" or is_int(v))
    if ok and in_range(v, lo, hi, min_open=lo_open, max_open=hi_open):
        return float(v) if kind == "num" else int(v)
    what = "a number" if kind == "num" else "an integer"
    rng = describe_range(lo, hi, min_open=lo_open, max_open=hi_open)
    ctx.err(path, f"expected {what}{rng}, got {show(v)}")
    return None


def ranged(name: str, v: Any, path: str, ctx: Ctx) -> Any:
    kind, lo, lo_open, hi, hi_open = _RANGES[name]
    return number(v, path, ctx, kind, lo, lo_open, hi, hi_open)


def typed_value(name: str, v: Any, param: inspect.Parameter | None, path: str, ctx: Ctx) -> Any:
    """Check ``v`` against the range table or the parameter's default type; canonical form."""
    if v is None and param is not None and param.default is None:
        return None
    if name in _RANGES:
        return ranged(name, v, path, ctx)
    default = None if param is None else param.default
    if isinstance(default, bool):
        if not isinstance(v, bool):
            ctx.err(path, f"expected true or false, got {show(v)}")
        return v
    if isinstance(default, int):
        return number(v, path, ctx, "int")
    if isinstance(default, float):
        return number(v, path, ctx, "num")
    if isinstance(default, str) and not isinstance(v, str):
        ctx.err(path, f"expected a string, got {show(v)}")
    return v


def kwargs_against(
    node: Mapping[str, Any],
    params: Mapping[str, inspect.Parameter],
    path: str,
    ctx: Ctx,
    *,
    extra_allowed: Sequence[str] = (),
    refuse: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """Check keyword arguments against a signature: unknown keys, missing required ones,
    and value types; returns canonical values or None after an error."""
    n0 = len(ctx.errors)
    allowed = [*params, *extra_allowed]
    refuse = refuse or {}
    allowed = [k for k in allowed if k not in refuse]
    required = [
        n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in refuse
    ]
    check_keys(node, allowed, path, ctx, required=required, refuse=refuse)
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k in params and k not in refuse:
            out[k] = typed_value(k, v, params[k], join(path, k), ctx)
        elif k in extra_allowed:
            out[k] = v
    return None if len(ctx.errors) > n0 else out


# --------------------------------------------------------------------------- grid entries


@dataclass(frozen=True)
class Entry:
    """One value of a grid axis: its canonical config and where it is written."""

    config: dict[str, Any]
    path: str

    @property
    def name(self) -> str:
        return str(self.config["name"])

    @property
    def label(self) -> str:
        """Short text, e.g. ``srelu(max_value=0.01)@act2``."""
        hidden = ("name", "where", "insert", "training")
        args = [f"{k}={v}" for k, v in self.config.items() if k not in hidden]
        text = self.name + (f"({', '.join(args)})" if args else "")
        if "where" in self.config:
            text += f"@{self.config['where']}"
        if "insert" in self.config:
            text += f"+{self.config['insert']}"
        return text


def named(node: Any, path: str, ctx: Ctx) -> tuple[Any, dict[str, Any]] | None:
    """A grid entry written as ``name`` or ``{name: ..., **options}``."""
    if isinstance(node, str):
        return node, {}
    m = mapping(node, path, ctx)
    if m is None:
        return None
    if "name" not in m:
        ctx.err(path, 'missing required key "name"')
        return None
    name = m.pop("name")
    return name, m


def _name_path(node: Any, path: str) -> str:
    return join(path, "name") if isinstance(node, Mapping) else path


def registered(
    node: Any, names: Sequence[str], kind: str, path: str, ctx: Ctx
) -> tuple[str, dict[str, Any]] | None:
    """A grid entry ``name`` or ``{name, **options}`` whose name is one of ``names``:
    ``(registered spelling, options)``, or None after an error."""
    got = named(node, path, ctx)
    if got is None:
        return None
    name = lookup(got[0], names, kind, _name_path(node, path), ctx)
    return None if name is None else (name, got[1])


def dataset_entry(node: Any, path: str, ctx: Ctx) -> dict[str, Any] | None:
    got = registered(node, list_datasets(), "dataset", path, ctx)
    if got is None:
        return None
    name = got[0]
    params = {
        k: p for k, p in B.callable_params(DATASETS.get(name)).items() if k not in ("root", "split")
    }
    refuse = {
        "root": "set data_root at the top of the spec (paths are not part of a cell's id)",
        "split": "cells train on the train split (80/20 train/val) and evaluate on test",
    }
    kw = kwargs_against(got[1], params, path, ctx, refuse=refuse)
    return None if kw is None else {"name": name, **kw}


def model_entry(node: Any, path: str, ctx: Ctx) -> dict[str, Any] | None:
    got = registered(node, list_models(), "model", path, ctx)
    if got is None:
        return None
    name = got[0]
    refuse = {
        "num_classes": "set from the dataset",
        "in_channels": "set from the dataset",
        "input_size": "set from the dataset",
        "act_layer": "activations come from grid.activations",
        "act_layers": "activations come from grid.activations (use where: to place one)",
    }
    params = B.model_builder_params(name)
    kw = kwargs_against(got[1], params, path, ctx, refuse=refuse)
    return None if kw is None else {"name": name, **kw}


def _where(v: Any, path: str, ctx: Ctx) -> Any:
    if isinstance(v, bool):
        ctx.err(path, f"expected an index, index list, name pattern or {{type: ...}}, got {v}")
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, list) and v and all(is_int(i) for i in v):
        return list(v)
    if isinstance(v, str) and v:
        if v.startswith("re:"):
            try:
                re.compile(v[3:])
            except re.error as e:
                ctx.err(path, f"bad regular expression {show(v[3:])}: {e}")
                return None
        return v
    if isinstance(v, Mapping) and set(v) == {"type"}:
        known = [*list_activations(), *(t.__name__ for t in ACTIVATION_TYPES)]
        t = lookup(v["type"], sorted(set(known)), "activation type", join(path, "type"), ctx)
        return None if t is None else {"type": t}
    ctx.err(
        path,
        f'expected an index, a list of indices, a name pattern ("act2", "layer*.act", '
        f'"re:...") or {{type: relu}}, got {show(v)}',
    )
    return None


def _opened(
    node: Any, names: list[str], what: str, path: str, ctx: Ctx
) -> tuple[str, dict[str, Any], int] | None:
    """A registry entry (``name`` or ``{name: {options}}``) opened for its own checks: the
    name, a copy of the options, and the error count before those checks."""
    got = registered(node, names, what, path, ctx)
    return None if got is None else (got[0], dict(got[1]), len(ctx.errors))


def activation_entry(node: Any, path: str, ctx: Ctx) -> dict[str, Any] | None:
    opened = _opened(node, list_activations(), "activation", path, ctx)
    if opened is None:
        return None
    name, opts, n0 = opened
    cfg: dict[str, Any] = {"name": name}
    if "where" in opts:
        cfg["where"] = _where(opts["where"], join(path, "where"), ctx)
    if "insert" in opts:
        ins = opts["insert"]
        places = ["before_output", "after_input"]
        if ins not in places:
            ctx.err(join(path, "insert"), f"expected one of {', '.join(places)}, got {show(ins)}"
                    + (suggest(ins, places) if isinstance(ins, str) else ""))  # fmt: skip
        cfg["insert"] = ins
    if "width" in opts:
        if "insert" not in opts:
            ctx.err(join(path, "width"), "width applies only with insert: (the new layer's width)")
        cfg["width"] = ranged("width", opts["width"], join(path, "width"), ctx)
    if "where" in opts and "insert" in opts:
        ctx.err(path, "give either where: (replace existing activations) or insert: (add a "
                "layer), not both")  # fmt: skip
    params = {
        k: p
        for k, p in B.callable_params(B.activation_class(name)).items()
        if k not in ("num_features", "generator", "inplace")
    }
    args = {k: v for k, v in opts.items() if k not in B.PLACEMENT_KEYS}
    kw = kwargs_against(args, params, path, ctx, extra_allowed=())
    if kw is not None and len(ctx.errors) == n0:
        try:
            B.activation_factory(name, kw)()
        except (ValueError, TypeError) as e:
            ctx.err(path, str(e))
    if len(ctx.errors) > n0 or kw is None:
        return None
    return {**cfg, **kw}


def attack_entry(node: Any, path: str, ctx: Ctx) -> dict[str, Any] | None:
    names = B.attack_names(training=True)
    got = registered(node, names, "attack", path, ctx)
    if got is None:
        return None
    name = got[0]
    cls = B.TRAIN_ONLY_ATTACKS.get(name) or B.ATTACKS.get(name)
    kw = kwargs_against(got[1], B.callable_params(cls), path, ctx)
    if kw is None:
        return None
    cfg = {"name": name, **kw}
    try:
        B.build_attack(cfg)
    except (ValueError, TypeError) as e:
        ctx.err(path, str(e))
        return None
    return cfg


_OBJ_EXTRA = ("penalty",)


def objective_entry(node: Any, path: str, ctx: Ctx, depth: int = 0) -> dict[str, Any] | None:
    opened = _opened(node, [*list_objectives(), "two_phase"], "objective", path, ctx)
    if opened is None:
        return None
    name, opts, n0 = opened
    cfg: dict[str, Any] = {"name": name}
    if "penalty" in opts:
        cfg["penalty"] = ranged("penalty", opts.pop("penalty"), join(path, "penalty"), ctx)
    if name == "two_phase":
        if depth:
            ctx.err(path, "two_phase cannot be nested inside another two_phase")
            return None
        allowed = ["first", "second", "switch_epoch", "switch_fraction", "penalty"]
        check_keys(opts, allowed, path, ctx, required=["second"])
        if "switch_epoch" in opts and "switch_fraction" in opts:
            ctx.err(path, "give switch_epoch or switch_fraction, not both")
        for k in ("first", "second"):
            if k in opts:
                cfg[k] = objective_entry(opts[k], join(path, k), ctx, depth + 1)
        for k in ("switch_epoch", "switch_fraction"):
            if k in opts:
                cfg[k] = ranged(k, opts[k], join(path, k), ctx)
    elif name == "adversarial":
        check_keys(opts, ["attack", "clean_weight", "penalty"], path, ctx, required=["attack"])
        if "attack" in opts:
            cfg["attack"] = attack_entry(opts["attack"], join(path, "attack"), ctx)
        if "clean_weight" in opts:
            cfg["clean_weight"] = ranged("clean_weight", opts["clean_weight"],
                                         join(path, "clean_weight"), ctx)  # fmt: skip
    else:
        from robustact.train import OBJECTIVES

        params = B.callable_params(OBJECTIVES.get(name))
        refuse = {"make_attack": "not settable from YAML (hybrid uses 7-step training PGD)"}
        kw = kwargs_against(opts, params, path, ctx, refuse=refuse)
        cfg.update(kw or {})
    if len(ctx.errors) > n0:
        return None
    try:
        B.build_objective(cfg, epochs=10**6)
    except (ValueError, TypeError, KeyError) as e:
        ctx.err(path, str(e))
        return None
    return cfg
