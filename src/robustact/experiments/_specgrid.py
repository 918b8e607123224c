"""The grid of an experiment spec: its axes, entries, exclude rules and include blocks.

Axes, in expansion order (each value is an :class:`Entry`, seeds are ints):

=============  =========  ==================================================================
grid key       cell key   what it sets
=============  =========  ==================================================================
datasets       dataset    the data (``list_datasets()``)
models         model      the architecture (``list_models()``), optional ``training:``
activations    activation the activation and its placement
objectives     objective  the training objective
preprocess     preprocess an input-preprocessing defence in front of the trained classifier
transforms     transform  a model change before training (``spectral_norm``, ``dropout``)
swaps          swap       an activation change after training (``{name: relu, count: 4}``,
                          ``{name: cap, max_value: 0.05}``)
seeds          seed       the seed
=============  =========  ==================================================================

``preprocess``, ``transforms`` and ``swaps`` default to ``[none]``; a ``none`` value is left
out of the cell config, so specs without them keep their cell ids. ``include`` lists partial
grids (axes replaced) whose cells are added to the main grid's (duplicates dropped), so a
spec can hold several small products instead of one huge one; ``exclude`` applies to all.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from robustact.experiments import _specextra as X
from robustact.experiments import _specparse as P
from robustact.experiments._specparse import Entry
from robustact.experiments._specsections import training_section

__all__ = ["AXES", "Entry", "Grid", "parse_grid"]

EntryParser = Callable[[Any, str, P.Ctx], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Axis:
    """One axis of the grid: its cell key, its grid key, the parser that validates an
    entry by building it (its builder lives next to it: ``builders`` for the core axes,
    ``_specextra`` for the defence axes), and whether a ``none`` value is left out of the
    cell config (so specs without the axis keep their cell ids)."""

    key: str
    grid_key: str
    parse: EntryParser | None = None  # None: the seeds (plain ints)
    optional: bool = False


def _model_entry(item: Any, path: str, ctx: P.Ctx) -> dict[str, Any] | None:
    """A model entry, with optional per-model ``training:`` overrides (e.g. the peak lr
    that differs between architectures in one table)."""
    if not (isinstance(item, Mapping) and "training" in item):
        return P.model_entry(item, path, ctx)
    rest = {k: v for k, v in item.items() if k != "training"}
    n0 = len(ctx.errors)
    cfg = P.model_entry(rest, path, ctx)
    training = training_section(item["training"], P.join(path, "training"), ctx)
    if cfg is None or training is None or len(ctx.errors) > n0:
        return None
    return {**cfg, "training": training} if training else cfg


#: Every axis, in expansion order.
AXES: tuple[Axis, ...] = (
    Axis("dataset", "datasets", P.dataset_entry),
    Axis("model", "models", _model_entry),
    Axis("activation", "activations", P.activation_entry),
    Axis("objective", "objectives", P.objective_entry),
    Axis("preprocess", "preprocess", X.preprocess_entry, optional=True),
    Axis("transform", "transforms", X.transform_entry, optional=True),
    Axis("swap", "swaps", X.swap_entry, optional=True),
    Axis("seed", "seeds"),
)
_GRID_KEY = {a.key: a.grid_key for a in AXES}
#: Axes whose ``none`` value is left out of the cell config.
OPTIONAL_AXES = tuple(a.key for a in AXES if a.optional)
_GRID_KEYS = (*(a.grid_key for a in AXES), "exclude", "include")


def _none(key: str) -> tuple[Entry, ...]:
    return (Entry({"name": "none"}, f"grid.{key}"),)


@dataclass(frozen=True)
class Grid:
    """The axes of a spec (``exclude`` drops combinations by name, ``include`` adds the
    cells of partial grids)."""

    datasets: tuple[Entry, ...]
    models: tuple[Entry, ...]
    activations: tuple[Entry, ...]
    objectives: tuple[Entry, ...]
    seeds: tuple[int, ...]
    exclude: tuple[dict[str, Any], ...] = ()
    preprocess: tuple[Entry, ...] = _none("preprocess")
    transforms: tuple[Entry, ...] = _none("transforms")
    swaps: tuple[Entry, ...] = _none("swaps")
    include: tuple[dict[str, Any], ...] = ()

    def axis(self, key: str) -> tuple[Any, ...]:
        """The values of cell key ``key`` ("dataset", ..., "seed")."""
        return tuple(getattr(self, _GRID_KEY[key]))

    def blocks(self) -> list[Grid]:
        """This grid without its includes, then one grid per include block."""
        main = dataclasses.replace(self, include=())
        return [main, *(dataclasses.replace(main, **block) for block in self.include)]

    def size(self) -> int:
        """Cells before exclude rules and de-duplication: the product of the axis lengths,
        summed over the main grid and the include blocks (nothing is expanded)."""
        return sum(math.prod(len(b.axis(a.key)) for a in AXES) for b in self.blocks())

    def live(self) -> list[tuple[int, ...]]:
        """Index tuples (one index per axis of ``AXES``) of this grid's kept cells (the
        include blocks are separate grids: see :meth:`blocks`)."""
        axes = [self.axis(a.key) for a in AXES]
        cube = itertools.product(*(range(len(a)) for a in axes))
        if not self.exclude:
            return list(cube)
        position = {a.key: i for i, a in enumerate(AXES)}
        rules = [
            [(position[k], {i for i, x in enumerate(axes[position[k]])
                            if (x if k == "seed" else x.name) == v}) for k, v in rule.items()]
            for rule in self.exclude
        ]  # fmt: skip
        return [
            idx for idx in cube
            if not any(all(idx[a] in hits for a, hits in rule) for rule in rules)
        ]  # fmt: skip

    def values(self, idx: tuple[int, ...]) -> dict[str, Any]:
        """{cell key: Entry or seed} of one index tuple of :meth:`live`."""
        return {a.key: getattr(self, a.grid_key)[i] for a, i in zip(AXES, idx, strict=True)}


# --------------------------------------------------------------------------- parsing


_GRID_DEFAULTS: dict[str, Any] = {
    "activations": (Entry({"name": "relu"}, "grid.activations"),),
    "objectives": (Entry({"name": "natural"}, "grid.objectives"),),
    "seeds": (0,),
    "exclude": (),
}


def _written_names(node: Any) -> dict[str, list[Any]]:
    """Names as written on each axis of a grid node and its include blocks (valid or not)."""
    out: dict[str, list[Any]] = {a.key: [] for a in AXES}
    if not isinstance(node, Mapping):
        return out
    blocks = node.get("include")
    for block in [node, *(blocks if isinstance(blocks, list) else [])]:
        if not isinstance(block, Mapping):
            continue
        for a in AXES:
            items = block.get(a.grid_key)
            for item in items if isinstance(items, list) else []:
                out[a.key].append(item.get("name") if isinstance(item, Mapping) else item)
    for axis in OPTIONAL_AXES:
        out[axis].append("none")
    return out


def _check_exclude(
    rules: list[dict[str, Any]], path: str, names: dict[str, list[Any]], broken: set[str],
    ctx: P.Ctx,
) -> None:  # fmt: skip
    for i, rule in enumerate(rules):
        for axis, v in rule.items():
            if axis not in broken and v not in names[axis]:
                known = [str(n) for n in dict.fromkeys(names[axis])]
                ctx.err(
                    f"{path}[{i}].{axis}",
                    f"{P.show(v)} matches no {axis} of the grid{P.suggest(str(v), known)} "
                    f"(grid has: {', '.join(known)})",
                )


def _axis_entries(axis: Axis, node: Any, path: str, ctx: P.Ctx) -> tuple[Entry, ...]:
    entries: list[Entry] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(P.listing(node, path, ctx) or []):
        ip = P.join(path, i)
        cfg = axis.parse(item, ip, ctx) if axis.parse is not None else None
        if cfg is None:
            continue
        canon = P.plain_json(cfg, ip, ctx)
        if canon is None:
            continue
        if canon in seen:
            ctx.err(ip, f"duplicate of {seen[canon]} (it would repeat the same cells)")
            continue
        seen[canon] = ip
        entries.append(Entry(cfg, ip))
    return tuple(entries)


def _seeds(node: Any, path: str, ctx: P.Ctx) -> tuple[int, ...]:
    seeds: list[int] = []
    for i, s in enumerate(P.listing(node, path, ctx) or []):
        sp = P.join(path, i)
        v = P.number(s, sp, ctx, "int", 0)
        if v is not None and v in seeds:
            ctx.err(sp, f"duplicate seed {v}")
        elif v is not None:
            seeds.append(v)
    return tuple(seeds)


def _axes(m: Mapping[str, Any], path: str, ctx: P.Ctx, broken: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in AXES:
        if a.grid_key not in m:
            continue
        n0 = len(ctx.errors)
        node, where = m[a.grid_key], P.join(path, a.grid_key)
        out[a.grid_key] = _seeds(node, where, ctx) if a.parse is None else _axis_entries(
            a, node, where, ctx)  # fmt: skip
        if len(ctx.errors) > n0:
            broken.add(a.key)
    return out


def parse_grid(node: Any, path: str, ctx: P.Ctx, partial: bool, base: Any = None) -> dict[str, Any]:
    """Grid fields from a ``grid:`` node (``partial``: only the axes it sets, as in
    ``quick.grid``; ``base``: the main grid node, whose names exclude rules may use)."""
    m = P.mapping(node, path, ctx)
    if m is None:
        return {}
    P.check_keys(m, _GRID_KEYS, path, ctx, required=() if partial else ("datasets", "models"))
    out: dict[str, Any] = {} if partial else dict(_GRID_DEFAULTS)
    broken: set[str] = set()  # axes with a bad entry: exclude rules there may name it
    out.update(_axes(m, path, ctx, broken))
    if "include" in m:
        ip = P.join(path, "include")
        blocks = []
        for i, b in enumerate(P.listing(m["include"], ip, ctx, empty_ok=True) or []):
            bp = P.join(ip, i)
            bm = P.mapping(b, bp, ctx)
            if bm is None:
                continue
            if not bm:
                ctx.err(bp, "an empty include block would repeat the main grid")
                continue
            axis_keys = tuple(a.grid_key for a in AXES)
            if P.check_keys(bm, axis_keys, bp, ctx):
                blocks.append(_axes(bm, bp, ctx, broken))
        out["include"] = tuple(blocks)
    if "exclude" in m:
        rules = []
        ep = P.join(path, "exclude")
        axes = tuple(a.key for a in AXES)
        for i, r in enumerate(P.listing(m["exclude"], ep, ctx, empty_ok=True) or []):
            rm = P.mapping(r, P.join(ep, i), ctx)
            if rm is not None and rm and P.check_keys(rm, axes, P.join(ep, i), ctx):
                rules.append(rm)
            elif rm == {}:
                ctx.err(P.join(ep, i), "an empty rule would exclude every cell")
        names = _written_names(m)
        for axis, more in _written_names(base).items():
            names[axis] += more
        _check_exclude(rules, ep, names, broken, ctx)
        out["exclude"] = tuple(rules)
    return out
