"""Quick-recipe benchmark: every recipe's ``--quick`` run through the CLI, timed and judged.

Usage:
    PYTHONPATH=src .venv/bin/python benchmarks/quick_recipes.py [--only table4_2 ...]
        [--out benchmarks/results/quick_recipes.json]

For each recipe (``robustact list recipes``) it runs ``robustact run NAME --quick`` in a
fresh process with a fresh store and checkpoint folder (so no cell reuses another run's
trained model), records the wall time, each cell's clean accuracy and whether the quick
run shows the recipe's effect (``tests/quick_effects.py``: the direction of the paper's
result and robustact's correction; ``null`` where a recipe states none).

Targets (issue 12): each recipe <= 5 min and all <= 30 min on 2 idle cores. The JSON
records the machine, the load (``uptime`` before and after) and the command, because on a
shared machine wall times are inflated by the other processes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "quick_recipes.json"
RECIPES = ROOT / "src" / "robustact" / "recipes"
EACH_TARGET_S = 300.0
ALL_TARGET_S = 1800.0

sys.path.insert(0, str(ROOT / "tests"))
from quick_effects import check  # noqa: E402


def _uptime() -> str:
    try:
        out = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
        return out.stdout.strip()
    except OSError:
        return "unavailable"


def run_recipe(name: str, workdir: Path, timeout: float) -> dict[str, Any]:
    """Run one recipe's quick mode through the CLI; its time, clean accuracies, effect."""
    from robustact.experiments.store import ResultStore

    store, out_dir = workdir / f"{name}.db", workdir / f"{name}_ckpt"
    cmd = [sys.executable, "-m", "robustact", "run", name, "--quick", "--store", str(store),
           "--output-dir", str(out_dir), "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                              check=False)  # fmt: skip
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-600:]
    except subprocess.TimeoutExpired:
        rc, tail = -1, f"timed out after {timeout:.0f} s"
    wall = time.perf_counter() - t0
    row: dict[str, Any] = {"recipe": name, "wall_s": round(wall, 1), "rc": rc,
                           "within_5_min": wall <= EACH_TARGET_S}  # fmt: skip
    if rc != 0 or not store.exists():
        row.update(effect_shows=False, effect="run failed", output_tail=tail)
        return row
    with ResultStore(store) as s:
        records = s.records()
    eff = check(name, records)
    clean = {k[6:-1]: round(v, 4) for k, v in eff.numbers.items() if k.startswith("clean[")}
    nums = {k: round(v, 4) for k, v in eff.numbers.items() if not k.startswith("clean[")}
    row.update(
        cells=len({r["cell_id"] for r in records}),
        clean=clean,
        effect_shows=eff.shows,
        effect=eff.summary,
        effect_numbers=nums,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="recipe names (default: all)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--timeout", type=float, default=1800.0, help="per recipe, seconds")
    args = ap.parse_args(argv)
    # the flagship first, the BReLU ResNets (the slowest) last
    stems = (p.stem for p in RECIPES.glob("*.yaml"))
    order = sorted(stems, key=lambda n: (n != "table4_2", n.startswith("brelu"), n))
    names = args.only or order
    load_before = _uptime()
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="quick_recipes_") as tmp:
        for name in names:
            row = run_recipe(name, Path(tmp), args.timeout)
            rows.append(row)
            print(json.dumps(row), flush=True)
            _write(args.out, rows, load_before, time.perf_counter() - t0, done=False)
    total = time.perf_counter() - t0
    _write(args.out, rows, load_before, total, done=True)
    print(f"wrote {args.out}: {len(rows)} recipes in {total:.0f} s")
    return 0


def _write(
    out: Path, rows: list[dict[str, Any]], load_before: str, total: float, *, done: bool
) -> None:
    """The JSON so far (written after every recipe, so a cut run keeps what it measured)."""
    result = {
        "benchmark": "quick_recipes",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "per_recipe_command": "python -m robustact run NAME --quick --store S --output-dir D "
        "--no-progress (OMP_NUM_THREADS=1, one torch thread)",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "load_before": load_before,
        "load_after": _uptime(),
        "note": "targets are for 2 idle cores; on a shared machine (see load) wall times are "
        "inflated by the other processes",
        "targets": {"each_s": EACH_TARGET_S, "all_s": ALL_TARGET_S},
        "total_wall_s": round(total, 1),
        "all_within_30_min": done and total <= ALL_TARGET_S,
        "complete": done,
        "recipes": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
