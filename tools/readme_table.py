"""Rewrite the demo table in README.md from the demo's own result file.

The demo writes ``<out>/demo-result.json`` (per model: clean, plain PGD-10, paper-protocol and
adaptive accuracy, gap, verdict; see ``robustact.demo``). This script copies that file to
``tools/demo_result.json`` (the committed copy the tests read) and renders it between the
``<!-- demo-table:start -->`` and ``<!-- demo-table:end -->`` markers of README.md.

    python tools/readme_table.py --run            # run the demo (seed 0), then update
    python tools/readme_table.py --from robustact-out/demo/demo-result.json
    python tools/readme_table.py --check          # exit 1 when README and the copy disagree

``tests/test_readme_table.py`` fails when README.md does not show the committed copy, or when
the copy was made from another demo spec; a heavy test reruns the demo and compares.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
STORED = ROOT / "tools" / "demo_result.json"
START, END = "<!-- demo-table:start -->", "<!-- demo-table:end -->"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def render_table(result: dict[str, Any]) -> str:
    """The Markdown table of a demo result (percentages, one decimal; gap in pp)."""
    lines = [
        "| model | clean | plain PGD-10 | paper protocol | adaptive | gap (pp) | verdict |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for m in result["models"]:
        cells = [m["model"], *(_pct(m[k]) for k in ("clean", "pgd10", "paper", "adaptive", "gap"))]
        lines.append("| " + " | ".join([*cells, m["verdict"] or "not checked"]) + " |")
    return "\n".join(lines)


def replace_table(text: str, table: str) -> str:
    """``text`` with the block between the markers replaced by ``table``.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    i, j = text.find(START), text.find(END)
    if i < 0 or j < i:
        raise ValueError(f"README.md needs the markers {START} and {END} around the demo table")
    return text[: i + len(START)] + "\n" + table + "\n" + text[j:]


def readme_block(text: str) -> str:
    """The table currently between the markers."""
    i, j = text.find(START), text.find(END)
    if i < 0 or j < i:
        raise ValueError(f"README.md needs the markers {START} and {END} around the demo table")
    return text[i + len(START) : j].strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--run", action="store_true", help="run the demo (seed 0) first")
    src.add_argument("--from", dest="source", help="a demo-result.json written by the demo")
    p.add_argument("--check", action="store_true", help="only check; exit 1 on a difference")
    args = p.parse_args(argv)
    if args.run:
        from robustact.demo import RESULT_FILE, run_demo

        args.source = str(run_demo(seed=0, progress=False).out_dir / RESULT_FILE)
    if args.source and not args.check:
        shutil.copyfile(args.source, STORED)
    result = json.loads(Path(args.source or STORED).read_text(encoding="utf-8"))
    text = README.read_text(encoding="utf-8")
    table = render_table(result)
    if args.check:
        same = readme_block(text) == table
        print("README demo table is up to date" if same else "README demo table differs")
        return 0 if same else 1
    README.write_text(replace_table(text, table), encoding="utf-8")
    print(f"README.md: demo table from {args.source or STORED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
