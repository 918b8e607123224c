"""The main job (``robustact demo`` / ``make demo``) on the embedded digits dataset.

Trains six small MLPs on scikit-learn's digits — ReLU, S-ReLU (m = 0.1 and 0.01 on the
second hidden layer), D-ReLU (learnable caps, eq. 5.1 penalty), BReLU and a PGD-trained
ReLU — evaluates each under the paper protocol (the source papers' attacks) and the
adaptive protocol, runs the
masking report, prints both numbers side by side with the verdicts and writes a
self-contained HTML report. It is an ordinary experiment spec (:data:`DEMO_SPEC`, also
written next to the results as ``demo.yaml``) run by :func:`robustact.experiments.run_spec`,
so ``robustact run <out>/demo.yaml`` reproduces it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from robustact._extras import MissingExtraError, import_or_explain
from robustact.evaluate.protocol import get_protocol
from robustact.experiments import ResultStore, parse_spec, run_spec
from robustact.report.labels import with_method_labels
from robustact.report.summary import SummaryRow, protocol_summary, verdict_level

#: Everything the demo runs: a grid of 6 cells on digits (see the module docstring).
DEMO_SPEC: dict[str, Any] = {
    "name": "demo",
    "description": "robustact demo: robust activations on digits, paper vs adaptive protocol",
    "grid": {
        "datasets": ["digits"],
        "models": [{"name": "mlp_general", "hidden": [128, 64]}],
        "activations": [
            "relu",
            {"name": "srelu", "max_value": 0.1, "where": "act2"},
            {"name": "srelu", "max_value": 0.01, "where": "act2"},
            {"name": "drelu", "where": "act2"},
            "brelu",
        ],
        "objectives": [
            "natural",
            {"name": "drelu_penalty", "lam": 0.01},
            {"name": "pgd_at", "eps": 0.1, "steps": 5},
        ],
        "seeds": [0],
        # one objective per activation, plus PGD adversarial training for ReLU
        "exclude": [
            {"activation": "relu", "objective": "drelu_penalty"},
            {"activation": "srelu", "objective": "drelu_penalty"},
            {"activation": "brelu", "objective": "drelu_penalty"},
            {"activation": "drelu", "objective": "natural"},
            {"activation": "srelu", "objective": "pgd_at"},
            {"activation": "drelu", "objective": "pgd_at"},
            {"activation": "brelu", "objective": "pgd_at"},
        ],
    },
    # caps start at 100 as in the dissertation; their own lr of 1.0 lets them reach the
    # activations' range within the run (at the weights' lr they would hardly move)
    "training": {"epochs": 15, "batch_size": 64, "lr": 0.003, "cap_lr": 1.0},
    "evaluation": {
        "protocols": ["seed", "adaptive"],
        "eps": [0.1],
        "norm": "linf",  # all 359 digits test points
        "fast": True,  # the full protocols give the same verdicts in 554 s instead of 20 s
        "masking": True,
    },
}


@dataclass(frozen=True)
class DemoResult:
    """What the demo produced: the summary rows and the files written."""

    rows: list[SummaryRow]
    out_dir: Path
    store: Path
    report: dict[str, Path]
    seconds: float


def _spec(seed: int, epochs: int | None, n: int | None) -> dict[str, Any]:
    spec = copy.deepcopy(DEMO_SPEC)
    spec["grid"]["seeds"] = [seed]
    if epochs is not None:
        spec["training"]["epochs"] = epochs
    if n is not None:
        spec["evaluation"]["n"] = n
    return spec


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


_STYLE = {"bad": "bold red", "warn": "yellow", "good": "green", "unknown": "dim"}


def _print_protocols(console: Console, eps: float, fast: bool) -> None:
    for name, title in (("seed", "paper"), ("adaptive", "adaptive")):
        proto = get_protocol(name, eps=eps, norm="Linf", fast=fast)
        console.print(f"[bold]{title} protocol[/bold]")
        for line in proto.lines():
            console.print(f"  {line}", highlight=False)


#: Short display names of the demo's methods (the report keeps the full labels).
_NAMES = {
    "relu + natural": "ReLU",
    "relu + pgd_at(eps=0.1, steps=5)": "ReLU + PGD-AT",
    "srelu(max_value=0.1, where=act2) + natural": "S-ReLU m=0.1",
    "srelu(max_value=0.01, where=act2) + natural": "S-ReLU m=0.01",
    "drelu(where=act2) + drelu_penalty(lam=0.01)": "D-ReLU (lambda=0.01)",
    "brelu + natural": "BReLU",
}


def _plain_pgd(records: list[dict[str, Any]]) -> dict[str, float]:
    """The paper protocol's PGD-10 accuracy per method: the number the papers headline."""
    return {
        str(r["method"]): float(r["value"])
        for r in records
        if r.get("protocol") == "seed"
        and r.get("attack") == "PGD-10"
        and r.get("metric") == "accuracy"
    }


def _summary_table(rows: list[SummaryRow], pgd: dict[str, float], eps: float) -> Table:
    table = Table(title=f"digits, MLP 64-128-64-10, L-inf eps = {eps}: accuracy (%)")
    for col in ("model", "clean", "PGD-10", "paper", "adaptive", "gap (pp)", "verdict"):
        table.add_column(col, justify="left" if col in ("model", "verdict") else "right")
    for r in rows:
        level = verdict_level(r.verdict)
        table.add_row(
            _NAMES.get(r.method, r.method),
            _fmt(r.clean),
            _fmt(pgd.get(r.method)),
            _fmt(r.robust_seed),
            _fmt(r.robust_adaptive),
            _fmt(r.gap),
            f"[{_STYLE[level]}]{r.verdict or 'not checked'}[/]",
        )
    table.caption = (
        "PGD-10: plain PGD as the papers ran it; paper: worst case over the paper protocol's "
        "attacks (FGSM, PGD, APGD-CE/DLR, Square); adaptive: worst case over BPDA/EOT "
        "gradient attacks, margin/DLR losses, APGD-T and Square; gap = paper - adaptive."
    )
    return table


def _reasons(
    rows: list[SummaryRow], masking: dict[str, Any], records: list[dict[str, Any]]
) -> list[str]:
    """One line per flagged model: its verdict's reason from the masking report."""
    by_method: dict[str, Any] = {}
    for rec in records:
        m = masking.get(str(rec.get("cell_id")))
        if m is not None:
            by_method[str(rec["method"])] = m
    lines = []
    for r in rows:
        m = by_method.get(r.method)
        if m and verdict_level(r.verdict) in ("bad", "warn"):
            lines.append(f"{_NAMES.get(r.method, r.method)}: {r.verdict} - {m.get('reason', '')}")
    return lines


def _replace_dir(new: Path, final: Path) -> None:
    """Move ``new`` to ``final``; an older ``final`` is removed only after the move."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    if old.exists():
        shutil.rmtree(old)


def _read_store(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The demo store's records (with method labels) and cell id -> masking summary."""
    with ResultStore(path) as store:
        records = with_method_labels(store.records(include_extra=True))
        masking = {c.cell_id: c.extra["masking"] for c in store.cells()
                   if isinstance(c.extra.get("masking"), dict)}  # fmt: skip
    return records, masking


def _build_report(work: Path) -> tuple[dict[str, Path], str]:
    """The report files (``report`` extra), or none and the one line saying how to get them."""
    try:
        build = import_or_explain("robustact.report.build", "report", "writing the report files")
    except MissingExtraError as e:
        return {}, str(e)
    files = build.build_report(work / "results.sqlite", work / "report", title="robustact demo")
    return dict(files), ""


#: The demo's headline numbers, written beside its results (``tools/readme_table.py``
#: renders the README table from it, and a test checks the README agrees).
RESULT_FILE = "demo-result.json"


def demo_spec_sha() -> str:
    """16 hex digits naming :data:`DEMO_SPEC` (a stored demo result from another spec is stale)."""
    text = json.dumps(DEMO_SPEC, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_result(
    out: Path, rows: list[SummaryRow], records: list[dict[str, Any]], eps: float, seed: int
) -> Path:
    """``demo-result.json``: per model its short name and clean / PGD-10 / paper-protocol /
    adaptive accuracy (fractions, 4 decimals), gap and verdict, as the terminal table shows."""
    from robustact.experiments.records import atomic_write_text

    pgd = _plain_pgd(records)

    def r4(v: float | None) -> float | None:
        return None if v is None else round(float(v), 4)

    models = [
        {"model": _NAMES.get(r.method, r.method), "method": r.method, "clean": r4(r.clean),
         "pgd10": r4(pgd.get(r.method)), "paper": r4(r.robust_seed),
         "adaptive": r4(r.robust_adaptive), "gap": r4(r.gap), "verdict": r.verdict}
        for r in rows
    ]  # fmt: skip
    data = {"spec_sha": demo_spec_sha(), "seed": seed, "eps": eps, "models": models}
    return atomic_write_text(out / RESULT_FILE, json.dumps(data, indent=1) + "\n")


def run_demo(
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    out_dir: str | os.PathLike[str] = "robustact-out/demo",
    workers: int | None = None,
    epochs: int | None = None,
    n: int | None = None,
) -> DemoResult:
    """Run the main job and print its table; write results, checkpoints and the report.

    Args:
        seed: seed of every cell (data order, initialisation, attacks).
        device: torch device for training and evaluation.
        progress: show progress (cells done, current cell).
        out_dir: where ``results.sqlite``, checkpoints, ``demo.yaml`` and ``report/`` go;
            a previous demo there is replaced only once the new one is complete.
        workers: worker processes (default: 2 when the machine has 2 or more cores).
        epochs, n: override training epochs and evaluated test points (for tests).
    """
    console = Console()
    t0 = time.perf_counter()
    spec_dict = _spec(seed, epochs, n)
    spec = parse_spec(spec_dict, source="demo")
    eps = float(spec_dict["evaluation"]["eps"][0])
    final = Path(out_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    (work / "demo.yaml").write_text(yaml.safe_dump(spec_dict, sort_keys=False))
    n_workers = workers if workers is not None else min(2, os.cpu_count() or 1)

    console.rule("[bold]robustact demo")
    console.print(
        f"{len(spec.cells())} models on the embedded digits dataset, "
        f"{spec_dict['training']['epochs']} epochs each, evaluated on "
        f"{spec_dict['evaluation'].get('n', 'all')} test points under two protocols "
        f"({n_workers} worker process{'es' if n_workers > 1 else ''}, device {device}):"
    )
    _print_protocols(console, eps, bool(spec_dict["evaluation"]["fast"]))
    try:
        summary = run_spec(spec, work / "results.sqlite", workers=n_workers, progress=progress,
                           output_dir=work / "checkpoints", device=device)  # fmt: skip
        for line in summary.lines():
            console.print(line, highlight=False)
        if summary.failed:
            raise RuntimeError(f"{len(summary.failed)} demo cell(s) failed; see the lines above")
        records, masking = _read_store(work / "results.sqlite")
        rows = protocol_summary(records, method_key="method", group_keys=(), masking=masking)
        report, skipped = _build_report(work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _replace_dir(work, final)
    report = {k: final / p.relative_to(work) for k, p in report.items()}
    _write_result(final, rows, records, eps, seed)
    console.print(_summary_table(rows, _plain_pgd(records), eps))
    for line in _reasons(rows, masking, records):
        console.print(line, highlight=False)
    masked = [_NAMES.get(r.method, r.method) for r in rows if verdict_level(r.verdict) == "bad"]
    if masked:
        console.print(
            f"[bold red]Masked: {', '.join(masked)}.[/] Their paper-protocol numbers overstate "
            "robustness; the adaptive column is the one to trust."
        )
    seconds = time.perf_counter() - t0
    if skipped:
        console.print(f"report files skipped: {skipped}  ({seconds:.0f} s)", markup=False)
    else:
        console.print(f"HTML report: {report['html']}  ({seconds:.0f} s)")
    return DemoResult(
        rows=rows, out_dir=final, store=final / "results.sqlite", report=report, seconds=seconds
    )
