"""The seeds' published numbers for each recipe, and a join that puts ours beside them.

Every recipe ``NAME`` has a file ``robustact/recipes/paper/NAME.yaml`` that transcribes, from
the seed text, each number of the tables it reproduces (table id, row, column, the value as
printed, its fraction, and the seed line it is on), the seed's own evaluation protocol with
quotes (anything the seed leaves unstated is marked ``assumption: true``), and per row a
``match:`` of dotted cell-config paths, so a cell can be matched to its row without guessing.
Figures that print no numbers are entries with ``numbers_none: <reason>``. Matching cells to
rows and joining measured values: ``robustact.experiments.paper_join``.

pydantic is not installed in the project's environment, so the file format is a set of frozen
dataclasses validated by hand; every bad file fails with one line naming the file, the YAML
path and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "Column",
    "NoRow",
    "PaperFileError",
    "PaperNumber",
    "PaperNumbers",
    "PaperTable",
    "ProtocolItem",
    "Row",
    "SourceRef",
    "list_paper_files",
    "load_paper_numbers",
    "parse_paper_numbers",
]

UNITS = {"%": 100.0, "fraction": 1.0}
KINDS = ("table", "figure")


class PaperFileError(ValueError):
    """A paper-numbers file is malformed (message: file, YAML path, problem and fix)."""


@dataclass(frozen=True)
class SourceRef:
    """Where a number or statement is in the seed: file, 1-based line, verbatim quote."""

    file: str
    line: int
    quote: str


@dataclass(frozen=True)
class ProtocolItem:
    """One statement of the seed's evaluation protocol (or an assumption where unstated)."""

    text: str
    assumption: bool
    source: SourceRef | None


@dataclass(frozen=True)
class Column:
    """A column as the seed names it; ``attack`` None: clean accuracy or a non-attack metric."""

    label: str
    metric: str
    attack: str | None
    eps: float | None


@dataclass(frozen=True)
class Row:
    """A row (method / model / dataset as the seed names them) and the cell configs it matches."""

    label: str
    method: str
    dataset: str
    model: str | None
    match: Mapping[str, Any] | None
    note: str | None


@dataclass(frozen=True)
class NoRow:
    """Cells of the recipe that the seed's table has no row for, and why."""

    match: Mapping[str, Any]
    reason: str


@dataclass(frozen=True)
class PaperNumber:
    """One published number: ``value`` exactly as printed, ``fraction`` normalised to [0, 1]."""

    row: str
    column: str
    value: str
    unit: str
    fraction: float
    sd: str | None
    rank: str | None
    source: SourceRef
    note: str | None


@dataclass(frozen=True)
class PaperTable:
    """A seed table or figure; a figure without printed numbers has ``numbers_none``.

    ``ambiguous`` says where the extracted text does not fix a number's place (those numbers
    are left out); ``note`` records layout changes (a column group made part of the row) and
    the seed's own inconsistencies.
    """

    id: str
    kind: str
    title: str
    source: SourceRef
    unit: str
    protocol: tuple[ProtocolItem, ...]
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    no_rows: tuple[NoRow, ...]
    numbers: tuple[PaperNumber, ...]
    numbers_none: str | None
    ambiguous: str | None
    note: str | None

    def row(self, label: str) -> Row:
        """The row called ``label`` (KeyError listing the labels if there is none)."""
        for r in self.rows:
            if r.label == label:
                return r
        raise KeyError(
            f"table {self.id} has no row {label!r}; rows: {[r.label for r in self.rows]}"
        )


@dataclass(frozen=True)
class PaperNumbers:
    """Every published number a recipe reproduces (one per-recipe file).

    ``quick_stand_ins`` maps a dotted config path to {quick value: full value}: what the
    recipe's ``--quick`` grid runs in place of the seed's setting (digits for MNIST), so a
    quick cell can be put beside the row it stands in for (``row_for_config(..., quick=True)``).
    """

    recipe: str
    path: str
    tables: tuple[PaperTable, ...]
    note: str | None
    quick_stand_ins: Mapping[str, Mapping[Any, Any]]

    def table(self, table_id: str) -> PaperTable:
        """The table/figure ``table_id`` (KeyError listing the ids if there is none)."""
        for t in self.tables:
            if t.id == table_id:
                return t
        raise KeyError(
            f"{self.recipe}: no table {table_id!r}; tables: {[t.id for t in self.tables]}"
        )

    def number(self, table_id: str, row: str, column: str) -> PaperNumber | None:
        """The number at (table, row, column), or None where the seed prints none."""
        for n in self.table(table_id).numbers:
            if n.row == row and n.column == column:
                return n
        return None

    def all_numbers(self) -> list[tuple[str, PaperNumber]]:
        """Every number of every table as (table id, number)."""
        return [(t.id, n) for t in self.tables for n in t.numbers]


class _Ctx:
    """Error context: the file name, for one-line messages."""

    def __init__(self, file: str, seed: str) -> None:
        self.file = file
        self.seed = seed

    def fail(self, path: str, problem: str, fix: str) -> PaperFileError:
        return PaperFileError(f"{self.file}: {path}: {problem}; fix: {fix}")

    def mapping(
        self, node: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...]
    ) -> dict[str, Any]:
        if not isinstance(node, dict):
            raise self.fail(
                path, f"expected a mapping, got {type(node).__name__}", "write key: value pairs"
            )
        unknown = sorted(set(node) - set(required) - set(optional))
        if unknown:
            raise self.fail(
                path, f"unknown key(s) {unknown}", f"use only {sorted(required + optional)}"
            )
        missing = [k for k in required if k not in node]
        if missing:
            raise self.fail(path, f"missing key(s) {missing}", f"add {missing[0]}:")
        return node

    def text(self, node: Any, path: str) -> str:
        if not isinstance(node, str) or not node.strip():
            raise self.fail(path, f"expected a non-empty string, got {node!r}", "quote the text")
        return node

    def opt_text(self, node: Any, path: str) -> str | None:
        return None if node is None else self.text(node, path)

    def opt_float(self, node: Any, path: str) -> float | None:
        if node is None:
            return None
        if isinstance(node, bool) or not isinstance(node, (int, float)):
            raise self.fail(path, f"expected a number, got {node!r}", "write a plain number")
        return float(node)

    def source(self, node: Mapping[str, Any], path: str) -> SourceRef:
        line = node.get("line")
        if isinstance(line, bool) or not isinstance(line, int) or line < 1:
            raise self.fail(
                f"{path}.line",
                f"expected a 1-based line number, got {line!r}",
                "cite the seed line",
            )
        file = self.text(node.get("file", self.seed), f"{path}.file")
        return SourceRef(file=file, line=line, quote=self.text(node.get("quote"), f"{path}.quote"))

    def match(self, node: Any, path: str) -> dict[str, Any] | None:
        if node is None:
            return None
        if not isinstance(node, dict) or not node:
            raise self.fail(
                path,
                "expected a non-empty mapping of dotted config paths",
                "e.g. {activation.name: relu}",
            )
        for key in node:
            if not isinstance(key, str) or not all(key.split(".")):
                raise self.fail(
                    path, f"bad config path {key!r}", "write dotted paths like objective.lam"
                )
        return dict(node)


def _protocol(ctx: _Ctx, node: Any, path: str) -> tuple[ProtocolItem, ...]:
    if not isinstance(node, list) or not node:
        raise ctx.fail(
            path,
            "expected a non-empty list of protocol statements",
            "quote the seed's attack settings",
        )
    items = []
    for i, item in enumerate(node):
        p = f"{path}[{i}]"
        d = ctx.mapping(item, p, ("text",), ("assumption", "line", "quote", "file"))
        assumption = d.get("assumption", False)
        if not isinstance(assumption, bool):
            raise ctx.fail(
                f"{p}.assumption", f"expected true/false, got {assumption!r}", "write true or false"
            )
        has_src = "line" in d or "quote" in d
        if not assumption and not has_src:
            raise ctx.fail(
                p,
                "a stated protocol item needs line: and quote:",
                "cite the seed or set assumption: true",
            )
        src = ctx.source(d, p) if has_src else None
        items.append(
            ProtocolItem(text=ctx.text(d["text"], f"{p}.text"), assumption=assumption, source=src)
        )
    return tuple(items)


def _columns(ctx: _Ctx, node: Any, path: str) -> tuple[Column, ...]:
    cols = []
    for i, item in enumerate(node or []):
        p = f"{path}[{i}]"
        d = ctx.mapping(item, p, ("label", "metric"), ("attack", "eps"))
        cols.append(
            Column(
                label=ctx.text(d["label"], f"{p}.label"),
                metric=ctx.text(d["metric"], f"{p}.metric"),
                attack=ctx.opt_text(d.get("attack"), f"{p}.attack"),
                eps=ctx.opt_float(d.get("eps"), f"{p}.eps"),
            )
        )
    return tuple(cols)


def _rows(ctx: _Ctx, node: Any, path: str) -> tuple[Row, ...]:
    rows = []
    for i, item in enumerate(node or []):
        p = f"{path}[{i}]"
        d = ctx.mapping(item, p, ("label", "method", "dataset", "match"), ("model", "note"))
        rows.append(
            Row(
                label=ctx.text(d["label"], f"{p}.label"),
                method=ctx.text(d["method"], f"{p}.method"),
                dataset=ctx.text(d["dataset"], f"{p}.dataset"),
                model=ctx.opt_text(d.get("model"), f"{p}.model"),
                match=ctx.match(d["match"], f"{p}.match"),
                note=ctx.opt_text(d.get("note"), f"{p}.note"),
            )
        )
    return tuple(rows)


def _no_rows(ctx: _Ctx, node: Any, path: str) -> tuple[NoRow, ...]:
    out = []
    for i, item in enumerate(node or []):
        p = f"{path}[{i}]"
        d = ctx.mapping(item, p, ("match", "reason"), ())
        m = ctx.match(d["match"], f"{p}.match")
        assert m is not None  # match() only returns None for a None node, rejected by mapping()
        out.append(NoRow(match=m, reason=ctx.text(d["reason"], f"{p}.reason")))
    return tuple(out)


def _number(ctx: _Ctx, node: Any, path: str, unit: str) -> PaperNumber:
    d = ctx.mapping(
        node,
        path,
        ("row", "column", "value", "fraction", "line", "quote"),
        ("sd", "rank", "note", "file"),
    )
    value = d["value"]
    if not isinstance(value, str):
        raise ctx.fail(
            f"{path}.value",
            f"expected the value as printed, as a string, got {value!r}",
            'quote it: "98.49"',
        )
    try:
        parsed = float(value)
    except ValueError:
        raise ctx.fail(
            f"{path}.value", f"{value!r} is not a number", "write the digits as printed"
        ) from None
    fraction = ctx.opt_float(d["fraction"], f"{path}.fraction")
    assert fraction is not None
    want = parsed / UNITS[unit]
    if not 0.0 <= want <= 1.0:
        raise ctx.fail(
            f"{path}.value",
            f"{value} {unit} is outside its unit's range",
            f"check the unit ({unit})",
        )
    if not math.isclose(fraction, want, rel_tol=0, abs_tol=1e-9):
        raise ctx.fail(
            f"{path}.fraction", f"{fraction} != {value} {unit} = {want}", f"write fraction: {want}"
        )
    return PaperNumber(
        row=ctx.text(d["row"], f"{path}.row"),
        column=ctx.text(d["column"], f"{path}.column"),
        value=value,
        unit=unit,
        fraction=fraction,
        sd=ctx.opt_text(d.get("sd"), f"{path}.sd"),
        rank=ctx.opt_text(d.get("rank"), f"{path}.rank"),
        source=ctx.source(d, path),
        note=ctx.opt_text(d.get("note"), f"{path}.note"),
    )


_TABLE_KEYS = ("id", "kind", "title", "line", "quote", "protocol")
_TABLE_OPT = (
    "unit",
    "columns",
    "rows",
    "no_row",
    "numbers",
    "numbers_none",
    "ambiguous",
    "note",
    "file",
)


def _table(ctx: _Ctx, node: Any, path: str) -> PaperTable:
    d = ctx.mapping(node, path, _TABLE_KEYS, _TABLE_OPT)
    kind = d["kind"]
    if kind not in KINDS:
        raise ctx.fail(f"{path}.kind", f"unknown kind {kind!r}", f"use one of {list(KINDS)}")
    unit = d.get("unit", "%")
    if unit not in UNITS:
        raise ctx.fail(f"{path}.unit", f"unknown unit {unit!r}", f"use one of {list(UNITS)}")
    columns = _columns(ctx, d.get("columns"), f"{path}.columns")
    rows = _rows(ctx, d.get("rows"), f"{path}.rows")
    numbers = tuple(
        _number(ctx, n, f"{path}.numbers[{i}]", unit) for i, n in enumerate(d.get("numbers") or [])
    )
    none = ctx.opt_text(d.get("numbers_none"), f"{path}.numbers_none")
    if bool(numbers) == bool(none):
        raise ctx.fail(
            path,
            "a table needs numbers: or numbers_none: (exactly one)",
            "transcribe or give the reason",
        )
    _check_refs(ctx, path, columns, rows, numbers)
    return PaperTable(
        id=ctx.text(d["id"], f"{path}.id"),
        kind=kind,
        title=ctx.text(d["title"], f"{path}.title"),
        source=ctx.source(d, path),
        unit=unit,
        protocol=_protocol(ctx, d["protocol"], f"{path}.protocol"),
        columns=columns,
        rows=rows,
        no_rows=_no_rows(ctx, d.get("no_row"), f"{path}.no_row"),
        numbers=numbers,
        numbers_none=none,
        ambiguous=ctx.opt_text(d.get("ambiguous"), f"{path}.ambiguous"),
        note=ctx.opt_text(d.get("note"), f"{path}.note"),
    )


def _check_refs(
    ctx: _Ctx,
    path: str,
    columns: tuple[Column, ...],
    rows: tuple[Row, ...],
    numbers: tuple[PaperNumber, ...],
) -> None:
    """Rows/columns are unique and every number names a declared row and column, once."""
    for what, labels in (("row", [r.label for r in rows]), ("column", [c.label for c in columns])):
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ctx.fail(
                f"{path}.{what}s",
                f"duplicate {what} label(s) {dup}",
                f"make each {what} label unique",
            )
    row_set, col_set, seen = {r.label for r in rows}, {c.label for c in columns}, set()
    for i, n in enumerate(numbers):
        p = f"{path}.numbers[{i}]"
        if n.row not in row_set:
            raise ctx.fail(
                f"{p}.row",
                f"unknown row {n.row!r}",
                f"declare it under rows: or use one of {sorted(row_set)}",
            )
        if n.column not in col_set:
            raise ctx.fail(
                f"{p}.column", f"unknown column {n.column!r}", f"use one of {sorted(col_set)}"
            )
        if (n.row, n.column) in seen:
            raise ctx.fail(
                p, f"second number for ({n.row!r}, {n.column!r})", "keep one number per cell"
            )
        seen.add((n.row, n.column))


def parse_paper_numbers(data: Any, file: str = "<paper>") -> PaperNumbers:
    """Validate the parsed YAML of one paper-numbers file (``file`` names it in errors)."""
    ctx = _Ctx(file, "")
    d = ctx.mapping(data, "$", ("recipe", "seed", "tables"), ("note", "quick_stand_ins"))
    ctx.seed = ctx.text(d["seed"], "$.seed")
    tables = d["tables"]
    if not isinstance(tables, list):
        raise ctx.fail(
            "$.tables", "expected a list of tables/figures", "write tables: [] with no_tables note"
        )
    if not tables and not d.get("note"):
        raise ctx.fail(
            "$.tables", "no tables and no note", "add note: saying why the seed has no numbers here"
        )
    parsed = tuple(_table(ctx, t, f"$.tables[{i}]") for i, t in enumerate(tables))
    ids = [t.id for t in parsed]
    dup = sorted({x for x in ids if ids.count(x) > 1})
    if dup:
        raise ctx.fail(
            "$.tables", f"duplicate table id(s) {dup}", "give each table its seed id once"
        )
    stand = d.get("quick_stand_ins") or {}
    if not isinstance(stand, dict) or not all(isinstance(v, dict) for v in stand.values()):
        raise ctx.fail(
            "$.quick_stand_ins",
            "expected {config.path: {quick value: full value}}",
            "e.g. dataset.name: {digits: mnist}",
        )
    ctx.match(stand or None, "$.quick_stand_ins")
    return PaperNumbers(
        recipe=ctx.text(d["recipe"], "$.recipe"),
        path=file,
        tables=parsed,
        note=ctx.opt_text(d.get("note"), "$.note"),
        quick_stand_ins=stand,
    )


def _paper_dir() -> Path:
    return Path(str(resources.files("robustact") / "recipes" / "paper"))


def list_paper_files() -> list[str]:
    """Recipe names that have a paper-numbers file."""
    return sorted(p.stem for p in _paper_dir().glob("*.yaml"))


def load_paper_numbers(recipe_name: str) -> PaperNumbers:
    """Load and validate ``recipes/paper/<recipe_name>.yaml``.

    Raises:
        FileNotFoundError: no paper file for this recipe (the message lists those that exist).
        PaperFileError: the file is malformed (file, YAML path, fix).
    """
    path = _paper_dir() / f"{recipe_name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"no paper numbers for recipe {recipe_name!r} ({path}); known: {list_paper_files()}"
        )
    with path.open(encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    paper = parse_paper_numbers(data, file=str(path))
    if paper.recipe != recipe_name:
        raise PaperFileError(
            f"{path}: $.recipe: says {paper.recipe!r}; fix: write recipe: {recipe_name}"
        )
    return paper
