"""Experiment specs: a validated YAML grid that expands into cells with stable ids.

A spec is a grid of datasets x models x activations (with their placement) x training
objectives x seeds, trained with one training block and evaluated under one or more
protocols at given radii. Example::

    name: capped-mlp
    grid:
      datasets: [mnist_t10k]
      models: [{name: mlp_general}]
      activations:
        - relu                                        # every activation of the model
        - {name: srelu, max_value: 0.01, where: act2} # replace the matched ones only
        - {name: drelu, insert: before_output, width: 256}
      objectives:
        - natural
        - {name: drelu_penalty, lam: 0.001}
        - {name: adversarial, attack: {name: training_pgd, eps: 0.1, steps: 7}}
        - {name: trades, beta: 6, eps: 0.1}
        - {name: two_phase, second: {name: pgd_at, eps: 0.1}, switch_fraction: 0.5}
      seeds: [0, 1, 2]
      exclude: [{activation: relu, objective: drelu_penalty}]
    training: {epochs: 50, batch_size: 128, optimizer: adam, lr: 0.001, schedule: plateau}
    evaluation: {protocols: [seed, adaptive], eps: [0.05, 0.1], norm: linf, n: 1000}
    quick:                                            # --quick: small data, few epochs
      grid: {datasets: [digits], seeds: [0]}
      training: {epochs: 2}
      evaluation: {fast: true, n: 200}

Keys (``name``, ``grid`` and ``evaluation.eps`` are required):

* top level: ``name``, ``description``, ``output_dir`` (checkpoints) and ``data_root``
  (datasets), both relative to the spec file and not part of any cell id.
* ``grid.datasets``: ``list_datasets()`` names, or ``{name, **reader options}`` (e.g.
  ``size`` for digits). ``grid.models``: ``list_models()`` names or ``{name, **options}``
  (``hidden``, ``width``, ...; channels, classes and input size come from the dataset).
* ``grid.activations``: ``list_activations()`` names or ``{name, **arguments}`` plus a
  placement: none (every activation of the model), ``where:`` (a surgery match: an
  index, a list of indices, a glob on module names such as ``act2``, ``"re:..."``, or
  ``{type: relu}``) or ``insert: before_output | after_input`` with ``width``.
* ``grid.models`` entries may carry ``training: {...}``: TrainConfig overrides for that
  model's cells (e.g. the peak lr of each architecture in one table).
* ``grid.preprocess`` (default ``[none]``): ``list_preprocessors()`` names or ``{name,
  **arguments}``; the trained classifier is evaluated as ``Preprocessed(classifier,
  step)``; ``autoencoder`` (channels from the data) is trained on the cell's training
  split with ``epochs``, ``noise_std``, ``lr``, ``batch_size``.
* ``grid.transforms`` (default ``[none]``), applied before training: ``{name:
  spectral_norm, n_power_iterations, exclude: [globs]}`` or ``{name: dropout, p, where}``
  (an ``nn.Dropout`` after every, or every matched, activation).
* ``grid.swaps`` (default ``[none]``), applied after training (the checkpoint keeps the
  trained model): an activation ``{name, **arguments, where: match | count: k}`` replacing
  all, the matched or the first ``k`` activations, or ``{name: cap, max_value: m}``
  setting every S-ReLU/D-ReLU cap to ``m``. A ``none`` value of these three axes is left
  out of the cell config (specs without them keep their cell ids).
* ``grid.include``: partial grids (any axes, e.g. ``{objectives: [natural], preprocess:
  [jpeg, median]}``) whose cells are added to the main grid's; ``exclude`` applies to all.
* ``grid.objectives``: ``list_objectives()`` names or ``{name, **hyper-parameters}``;
  ``adversarial`` takes ``attack: {name, **kwargs}`` (any attack or ``training_pgd``) and
  ``clean_weight``; ``two_phase`` takes ``first`` (default natural), ``second`` and
  ``switch_epoch`` or ``switch_fraction``; any objective may add ``penalty: lam`` (the
  D-ReLU cap penalty). ``grid.seeds``: ints >= 0 (default [0]). ``grid.exclude``: rules
  ``{dataset|model|activation|objective|preprocess|transform|swap|seed: name}`` dropping
  matching combinations.
* ``training``: TrainConfig fields (not ``seed``/``device``/``progress``) and
  ``val_fraction`` (default 0.2; the train split is divided, stratified and seeded).
* ``evaluation``: ``protocols`` (``list_protocols()`` names or ``{name, attacks: [{attack,
  label, bpda, eot, own_threat, **kwargs}], cascade, eot_samples, repeats}``; default
  [seed, adaptive]), ``eps`` (number or list), ``norm`` (linf/l2), ``n`` (first n test
  points; default all), ``fast``, ``masking`` (default true), ``batch_size``,
  ``diagnostics`` (names or ``{name, **options}`` of ``layer_growth``, ``zero_gradient``,
  ``sensitivity_map``, ``negative_unit_ratio``, ``cap_trajectory``,
  ``input_gradient_norm``, ``pgd_steps``; run on the evaluated model after the protocols,
  stored as ``protocol == "diagnostics"`` rows and in ``extra["diagnostics"]``; see
  ``robustact.experiments._cellextras``).
* ``quick``: partial ``grid`` (axes replaced), ``training`` and ``evaluation`` (keys
  replaced) used by ``--quick``; without one, quick means fast protocols, at most 2
  epochs and 500 test points.

:func:`load_spec` checks the whole file before any work starts and raises one
:class:`SpecError` listing every problem, one line each, as ``file: path: message``
(with the closest known name or key where one is near).

Limits (a spec is untrusted input; see :mod:`robustact.experiments._specload`): a file
of at most 256 KiB of UTF-8 YAML, at most 20 000 values after expanding anchors/aliases,
nested at most 64 deep, no repeated mapping key, no ``!!python`` tags; a grid of at most
:data:`MAX_GRID_CELLS` cells, counted from the axis lengths before anything is expanded.
Expanding a grid costs time linear in its cells.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustact.experiments import _speccheck as C
from robustact.experiments import _specgrid as G
from robustact.experiments import _specload as L
from robustact.experiments import _specparse as P
from robustact.experiments import _specsections as S
from robustact.experiments._specgrid import AXES, OPTIONAL_AXES, Entry, Grid
from robustact.experiments.records import canonical_json

__all__ = ["Cell", "Entry", "Evaluation", "Grid", "Spec", "SpecError", "load_spec", "parse_spec"]

#: Validation fraction of every cell's train/val split unless ``training.val_fraction`` says.
DEFAULT_VAL_FRACTION = 0.2

#: Most cells a grid may have, counted before expanding it (the product of its axes
#: summed over the include blocks, before exclude rules).
MAX_GRID_CELLS = 1_000_000

#: What ``--quick`` does to a spec that has no ``quick:`` block.
DEFAULT_QUICK: dict[str, Any] = {"training": {"epochs": 2}, "evaluation": {"fast": True, "n": 500}}

_TOP_KEYS = ("name", "description", "grid", "training", "evaluation", "quick", "output_dir",
             "data_root")  # fmt: skip


class SpecError(ValueError):
    """An experiment spec is invalid; ``errors`` holds one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class Evaluation:
    """How every cell is evaluated: each protocol at each eps (under ``norm``)."""

    protocols: tuple[Entry, ...]
    eps: tuple[float, ...]
    norm: str = "Linf"
    n: int | None = None
    fast: bool = False
    masking: bool = True
    batch_size: int = 500
    diagnostics: tuple[dict[str, Any], ...] = ()

    def config(self) -> dict[str, Any]:
        out = {
            "protocols": [p.config for p in self.protocols], "eps": list(self.eps),
            "norm": self.norm, "n": self.n, "fast": self.fast, "masking": self.masking,
            "batch_size": self.batch_size,
        }  # fmt: skip
        if self.diagnostics:  # left out when empty: older specs keep their cell ids
            out["diagnostics"] = [dict(d) for d in self.diagnostics]
        return out


@dataclass(frozen=True)
class Cell:
    """One point of the grid: ``config`` is plain JSON; ``cell_id`` its store hash."""

    cell_id: str
    config: dict[str, Any]
    label: str


@dataclass(frozen=True)
class Spec:
    """A validated experiment spec (see the module docstring)."""

    name: str
    source: str
    grid: Grid
    training: dict[str, Any]
    evaluation: Evaluation
    description: str = ""
    output_dir: Path | None = None
    data_root: Path | None = None
    quick: dict[str, Any] | None = field(default=None, repr=False)

    def resolved(self, quick: bool = False) -> Spec:
        """This spec, or with its ``quick:`` overrides applied (``DEFAULT_QUICK`` if none).

        Quick training keys also override the per-model ``training:`` blocks."""
        if not quick:
            return self
        q = self.quick or _default_quick(self)
        grid = dataclasses.replace(self.grid, **q.get("grid", {}))
        forced = set(q.get("training", {}))
        if forced:
            grid = dataclasses.replace(
                grid,
                models=tuple(_drop_training(e, forced) for e in grid.models),
                include=tuple(
                    {**b, "models": tuple(_drop_training(e, forced) for e in b["models"])}
                    if "models" in b
                    else b
                    for b in grid.include
                ),
            )
        evaluation = dataclasses.replace(self.evaluation, **q.get("evaluation", {}))
        training = {**self.training, **q.get("training", {})}
        return dataclasses.replace(self, grid=grid, evaluation=evaluation, training=training)

    def cells(self, quick: bool = False) -> list[Cell]:
        """The expanded grid, in axis order (datasets, models, activations, objectives,
        preprocess, transforms, swaps, seeds), then the cells of each ``include`` block
        that are new; with ``quick`` the quick overrides apply.

        Linear in the number of cells: each entry is serialised once and a cell's id is
        the hash of its parts' canonical JSON joined in key order, which is exactly
        ``records.cell_id(config)``."""
        spec = self.resolved(quick)
        evaluation = spec.evaluation.config()
        fixed = {"evaluation": (evaluation, canonical_json(evaluation))}
        base_training = {"val_fraction": DEFAULT_VAL_FRACTION, **spec.training}
        out: list[Cell] = []
        seen: set[str] = set()
        for g in spec.grid.blocks():
            parts = [_axis_parts(g, a.key, base_training) for a in AXES]
            for idx in g.live():
                chosen = [p[i] for p, i in zip(parts, idx, strict=True)]
                items = dict(fixed)
                for part in chosen:
                    items.update(part.items)
                text = ",".join(f'"{k}":{items[k][1]}' for k in sorted(items))
                cid = hashlib.sha256(f"{{{text}}}".encode()).hexdigest()[:16]
                if cid in seen:
                    continue
                seen.add(cid)
                label = "/".join(p.label for p in chosen if p.label)
                cfg = {k: items[k][0] for k in _CELL_KEYS if k in items}
                out.append(Cell(cid, cfg, label))
        return out


@dataclass(frozen=True)
class _Part:
    """What one axis value adds to a cell: ``{cell key: (value, canonical JSON)}`` and
    its part of the label (empty: none)."""

    items: dict[str, tuple[Any, str]]
    label: str


def _axis_parts(g: Grid, key: str, base_training: Mapping[str, Any]) -> list[_Part]:
    if key == "seed":
        return [_Part({"seed": (s, canonical_json(s))}, f"seed{s}") for s in g.seeds]
    parts = []
    for e in g.axis(key):
        if key in OPTIONAL_AXES and e.name == "none":  # left out: older specs keep their ids
            parts.append(_Part({}, ""))
            continue
        cfg = dict(e.config)
        items = {key: (cfg, "")}
        if key == "model":
            training = {**base_training, **cfg.pop("training", {})}
            items["training"] = (training, canonical_json(training))
        items[key] = (cfg, canonical_json(cfg))
        parts.append(_Part(items, f"{key}={e.label}" if key in OPTIONAL_AXES else e.label))
    return parts


#: Keys of a cell config, in the order they are written.
_CELL_KEYS = ("dataset", "model", "activation", "objective", *OPTIONAL_AXES, "seed", "training",
              "evaluation")  # fmt: skip


def _drop_training(e: Entry, keys: set[str]) -> Entry:
    if "training" not in e.config:
        return e
    kept = {k: v for k, v in e.config["training"].items() if k not in keys}
    cfg = {k: v for k, v in e.config.items() if k != "training"}
    return Entry({**cfg, "training": kept} if kept else cfg, e.path)


def _default_quick(spec: Spec) -> dict[str, Any]:
    epochs = min(int(spec.training.get("epochs", 10)), DEFAULT_QUICK["training"]["epochs"])
    return {"training": {"epochs": epochs}, "evaluation": dict(DEFAULT_QUICK["evaluation"])}


# --------------------------------------------------------------------------- loading


def load_spec(path: str | os.PathLike[str]) -> Spec:
    """Read and validate a YAML spec (``yaml.safe_load`` only).

    Raises:
        SpecError: every problem in the file, one line each.
    """
    p = Path(path)
    src = os.fspath(path)
    try:
        with p.open("rb") as f:
            raw = f.read(L.MAX_SPEC_BYTES + 1)  # never more than the bound
    except OSError as e:
        raise SpecError([f"{src}: cannot read the spec: {e.strerror or e}"]) from None
    try:
        data = L.read_yaml(raw)
    except L.LoadProblemError as e:
        raise SpecError([f"{src}: {e.where + ': ' if e.where else ''}{e}"]) from None
    return parse_spec(data, source=src, base_dir=p.parent)


def parse_spec(
    data: Any, source: str = "<spec>", base_dir: str | os.PathLike[str] | None = None
) -> Spec:
    """Validate a spec given as a mapping (as ``yaml.safe_load`` returns it).

    Args:
        data: the document.
        source: file name used in error lines.
        base_dir: folder that relative ``output_dir``/``data_root`` are resolved against
            (default: the working directory).
    """
    ctx = P.Ctx(source)
    try:
        L.check_value_size(data)
    except L.LoadProblemError as e:
        raise SpecError([f"{source}: {e}"]) from None
    top = P.mapping(data, "", ctx)
    if top is None:
        raise SpecError(ctx.errors)
    P.check_keys(top, _TOP_KEYS, "", ctx, required=("name", "grid", "evaluation"))
    name = top.get("name")
    if "name" in top and (not isinstance(name, str) or not name.strip()):
        ctx.err("name", f"expected a non-empty string, got {P.show(name)}")
    desc = top.get("description", "")
    if not isinstance(desc, str):
        ctx.err("description", f"expected a string, got {P.show(desc)}")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    dirs: dict[str, Path | None] = {}
    for key in ("output_dir", "data_root"):
        v = top.get(key)
        if v is not None and not (isinstance(v, str) and v):
            ctx.err(key, f"expected a path (a string), got {P.show(v)}")
            v = None
        dirs[key] = None if v is None else base / Path(v).expanduser()
    grid = G.parse_grid(top["grid"], "grid", ctx, partial=False) if "grid" in top else {}
    training = S.training_section(top.get("training", {}), "training", ctx) or {}
    ev = (
        S.evaluation_section(top["evaluation"], "evaluation", ctx, False)
        if "evaluation" in top
        else {}
    )
    quick = _quick(top["quick"], "quick", ctx, top.get("grid")) if "quick" in top else None
    axes = ("datasets", "models", "activations", "objectives", "seeds")
    optional = ("preprocess", "transforms", "swaps")
    if not all(grid.get(k) for k in axes) or not all(grid[k] for k in optional if k in grid):
        raise SpecError(ctx.errors or [f"{source}: the spec has no valid grid/evaluation"])
    spec = Spec(
        name=str(name), source=source, grid=Grid(**grid), training=training,
        evaluation=Evaluation(**{"protocols": (), "eps": (), **ev}), description=str(desc),
        output_dir=dirs["output_dir"], data_root=dirs["data_root"], quick=quick,
    )  # fmt: skip
    P.plain_json(spec.training, "training", ctx)
    P.plain_json(spec.evaluation.config(), "evaluation", ctx)
    _check_grid_size(spec, ctx)
    # combinations are checked on the entries that parsed, so one run reports everything
    C.check_combinations(spec, ctx)
    if quick is not None:
        qctx = P.Ctx(source)
        C.check_combinations(spec.resolved(True), qctx)
        seen = set(ctx.errors)
        ctx.errors += [f"{e} (with the quick: overrides)" for e in qctx.errors if e not in seen]
    if ctx.errors or not (spec.evaluation.protocols and spec.evaluation.eps):
        raise SpecError(list(dict.fromkeys(ctx.errors)) or [f"{source}: nothing to evaluate"])
    return spec


def _check_grid_size(spec: Spec, ctx: P.Ctx) -> None:
    """Refuse a grid over :data:`MAX_GRID_CELLS` before anything expands it."""
    for label, s in (("grid", spec), ("quick.grid", spec.resolved(True) if spec.quick else None)):
        n = 0 if s is None else s.grid.size()
        if n > MAX_GRID_CELLS:
            ctx.err(label, f"the grid has {n:,} cells (the product of its axes, before "
                    f"exclude); at most {MAX_GRID_CELLS:,}: use include blocks or split the "
                    "spec")  # fmt: skip
            raise SpecError(ctx.errors)


# --------------------------------------------------------------------------- sections


def _quick(node: Any, path: str, ctx: P.Ctx, base_grid: Any) -> dict[str, Any] | None:
    m = P.mapping(node, path, ctx)
    if m is None:
        return None
    P.check_keys(m, ("grid", "training", "evaluation"), path, ctx)
    out: dict[str, Any] = {}
    if "grid" in m:
        out["grid"] = G.parse_grid(m["grid"], P.join(path, "grid"), ctx, True, base=base_grid)
    if "training" in m:
        out["training"] = S.training_section(m["training"], P.join(path, "training"), ctx) or {}
    if "evaluation" in m:
        out["evaluation"] = S.evaluation_section(
            m["evaluation"], P.join(path, "evaluation"), ctx, True
        )
    return out


def spec_summary(spec: Spec, quick: bool = False) -> Mapping[str, Any]:
    """Counts per axis and the number of cells (for ``robustact run --dry-run``)."""
    s = spec.resolved(quick)
    g = s.grid
    counts = {a.grid_key: len(g.axis(a.key)) for a in AXES}
    return {
        "name": s.name, **counts, "include": len(g.include), "cells": len(s.cells()),
        "protocols": [p.name for p in s.evaluation.protocols], "eps": list(s.evaluation.eps),
        "diagnostics": [d["name"] for d in s.evaluation.diagnostics],
    }  # fmt: skip
