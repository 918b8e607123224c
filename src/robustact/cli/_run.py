"""``robustact run`` (an experiment spec or a recipe), ``robustact report`` (report files
from a results store) and ``robustact list`` (registered components and recipes)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustact.cli._args import protocol_name
from robustact.cli._common import CLIError, console, resolve_device

__all__ = ["add_parsers", "find_recipes", "resolve_spec"]

#: ``robustact list KIND`` -> (module, function returning the names).
LISTERS: dict[str, tuple[str, str]] = {
    "models": ("robustact.models", "list_models"),
    "datasets": ("robustact.data", "list_datasets"),
    "attacks": ("robustact.experiments.builders", "attack_names"),  # loads cw/square/...
    "activations": ("robustact.activations", "list_activations"),
    "objectives": ("robustact.train", "list_objectives"),
    "protocols": ("robustact.evaluate", "list_protocols"),
}


#: Report formats (``robustact.report.build.FORMATS``; repeated so ``--help`` stays fast).
FORMATS = ("md", "tex", "csv", "html")


def add_parsers(sub: Any) -> None:
    r = sub.add_parser(
        "run",
        help="run an experiment spec (YAML file or recipe name) into a results store",
        description="Validate the spec (every problem is listed, exit code 2), then run the "
        "cells the store does not hold yet; each finished cell is committed at once, so a "
        "killed run resumes. SPEC is a YAML file or a recipe name (robustact list recipes). "
        "Exit code 1 when a cell failed (its error is in the summary and the store).",
    )
    r.add_argument("spec", metavar="SPEC", help="spec YAML file or recipe name")
    r.add_argument("--store", default="results.db", help="SQLite results file (results.db)")
    r.add_argument("--workers", type=int, default=1, help="cells at once (default 1)")
    r.add_argument("--backend", choices=["local", "ray"], default="local", help="local or ray")
    r.add_argument("--quick", action="store_true", help="apply the spec's quick: overrides")
    r.add_argument("--out", "--output-dir", dest="output_dir", metavar="DIR",
                   help="checkpoint folder (default: spec's, or beside the store)")  # fmt: skip
    r.add_argument("--data-root", help="dataset folder (default: spec's, or the readers')")
    r.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    r.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per cell (default 1), the same with any --workers, so the "
        "numbers do not depend on it",
    )
    r.add_argument("--dry-run", action="store_true", help="validate and list the cells only")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser(
        "report",
        help="build the report (Markdown, LaTeX, CSV, HTML) from a results store",
        description="Rank tables per protocol with statistics, the paper-vs-adaptive "
        "summary with masking verdicts, and plots, from a results store written by robustact "
        "run (needs the report extra: pip install 'robustact[report]').",
    )
    rep.add_argument("db", metavar="DB", help="results store (SQLite) written by robustact run")
    rep.add_argument("--out", default="report", help="output folder (default report)")
    rep.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS),
                     help="files to write (default: all)")  # fmt: skip
    rep.add_argument(
        "--method-key",
        action="append",
        help="record key(s) naming the methods, e.g. cfg.activation.name (default: the "
        "model/activation/objective settings that vary across cells)",
    )
    rep.add_argument("--metric", default="accuracy", help="metric to tabulate (accuracy)")
    rep.add_argument("--protocol", nargs="+", type=protocol_name,
                     help="protocols to tabulate (default: all)")  # fmt: skip
    rep.add_argument("--title", default="robustact report", help="report title")
    rep.set_defaults(func=cmd_report)

    lst = sub.add_parser("list", help="list registered components or the recipes")
    lst.add_argument("what", choices=[*LISTERS, "recipes"])
    lst.set_defaults(func=cmd_list)


# --------------------------------------------------------------------------- recipes


def recipe_dirs() -> list[Path]:
    """Folders searched for recipes: ``recipes/`` beside the package in a source checkout,
    then ``robustact/recipes`` shipped as package data (if any)."""
    import robustact

    pkg = Path(robustact.__file__).resolve().parent
    dirs = [pkg.parents[1] / "recipes", pkg / "recipes"]
    return [d for d in dirs if d.is_dir()]


def find_recipes() -> dict[str, Path]:
    """Recipe name -> YAML file (the first folder of :func:`recipe_dirs` wins a name)."""
    found: dict[str, Path] = {}
    for d in recipe_dirs():
        for f in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
            found.setdefault(f.stem, f)
    return dict(sorted(found.items()))


def recipe_description(path: Path) -> str:
    """The first comment line of a recipe (else its ``description:``; else empty)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return ""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#") and s.lstrip("#").strip():
            return s.lstrip("#").strip()
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return ""
    desc = data.get("description") if isinstance(data, dict) else None
    return " ".join(str(desc).split()) if desc else ""


def resolve_spec(spec: str) -> Path:
    """A spec path, or the recipe called ``spec``."""
    p = Path(spec)
    if p.is_file():
        return p
    recipes = find_recipes()
    name = p.name.removesuffix(".yaml").removesuffix(".yml")
    if p.parent == Path(".") and name in recipes:
        return recipes[name]
    known = ", ".join(recipes) or "none found"
    raise CLIError(f"no spec file {spec} and no recipe of that name (recipes: {known})")


# --------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    import sys

    from robustact.experiments import SpecError, load_spec, run_spec, spec_summary

    path = resolve_spec(args.spec)
    try:
        spec = load_spec(path)
    except SpecError as e:
        for line in e.errors:
            print(f"robustact run: error: {line}", file=sys.stderr)
        return 2
    if args.workers < 1:
        raise CLIError(f"--workers must be >= 1, got {args.workers}")
    if args.threads < 1:
        raise CLIError(f"--threads must be >= 1, got {args.threads}")
    device = resolve_device(args.device)
    con = console()
    s = spec_summary(spec, quick=args.quick)
    eps = ", ".join(f"{e:g}" for e in s["eps"])
    con.print(
        f"{s['name']} ({path}): {s['cells']} cells = {s['datasets']} datasets x "
        f"{s['models']} models x {s['activations']} activations x {s['objectives']} "
        f"objectives x {s['seeds']} seeds; protocols {', '.join(s['protocols'])} at eps {eps}"
        + (" [quick]" if args.quick else "")
    )
    if args.dry_run:
        # one plain write: rich renders each print (~1 ms a line: minutes for a big grid),
        # and a label is not markup
        cells = spec.cells(quick=args.quick)
        con.file.write("".join(f"  {c.cell_id}  {c.label}\n" for c in cells))
        return 0
    summary = run_spec(
        spec, args.store, workers=args.workers, backend=args.backend, quick=args.quick,
        progress=not args.no_progress, output_dir=args.output_dir, data_root=args.data_root,
        device=device, threads=args.threads,
    )  # fmt: skip
    for line in summary.lines():
        con.print(line, soft_wrap=True)
    con.print(f"results: {args.store}")
    return 1 if summary.failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    from robustact._extras import import_or_explain
    from robustact.experiments import ResultStore

    build_report = import_or_explain(
        "robustact.report.build", "report", "robustact report"
    ).build_report

    db = Path(args.db)
    if not db.exists():
        raise CLIError(f"no results store at {db}; run robustact run SPEC --store {db} first")
    # read-only: the report never creates, migrates or writes into its input
    store = ResultStore(db, read_only=True)
    with store:
        records = store.records(include_extra=True)
        if not records:
            raise CLIError(f"{db} holds no finished cells; run the experiment first")
        _check_present(records, "metric", [args.metric], "--metric")
        _check_present(records, "protocol", args.protocol or [], "--protocol")
        # default: build_report labels each method by the config keys that vary between
        # cells (report.build.with_method_labels), e.g. "srelu(max_value=0.1) + natural"
        mkey: tuple[str, ...] | None = tuple(args.method_key) if args.method_key else None
        written = build_report(store, args.out, formats=args.formats, method_key=mkey,
                               metric=args.metric, protocols=args.protocol,
                               title=args.title)  # fmt: skip
    con = console()
    named_by = " / ".join(mkey) if mkey else "the config keys that vary between cells"
    con.print(f"methods named by: {named_by}")
    for kind, path in written.items():
        con.print(f"{kind:>14}: {path}", soft_wrap=True)
    return 0


def _check_present(records: list[dict[str, Any]], key: str, wanted: list[str], option: str) -> None:
    """Refuses a --metric/--protocol the store does not hold (else the report is empty)."""
    present = sorted({str(r.get(key)) for r in records})
    missing = [w for w in wanted if w not in present]
    if missing:
        raise CLIError(
            f"{option} {' '.join(missing)}: not in the store; it holds {', '.join(present)}"
        )


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "recipes":
        recipes = find_recipes()
        if not recipes:
            print("no recipes found (looked in: recipes/ beside the package)")
        width = max((len(n) for n in recipes), default=0)
        for name, path in recipes.items():
            print(f"{name:<{width}}  {recipe_description(path)}".rstrip())
        return 0
    module, fn = LISTERS[args.what]
    lister: Callable[[], list[str]] = getattr(importlib.import_module(module), fn)
    for name in lister():
        print(name)
    return 0
