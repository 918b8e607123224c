"""The ``robustact`` command line.

Every user error ends in one line on stderr and exit code 2 (``--debug`` shows the
traceback); the CLI is the only place that picks a device.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from robustact import __version__


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _list(args: argparse.Namespace) -> int:
    kinds: dict[str, tuple[str, str]] = {
        "activations": ("robustact.activations", "list_activations"),
        "models": ("robustact.models", "list_models"),
        "datasets": ("robustact.data", "list_datasets"),
        "attacks": ("robustact.attacks", "list_attacks"),
    }
    module, fn = kinds[args.what]
    lister: Callable[[], list[str]] = getattr(importlib.import_module(module), fn)
    for name in lister():
        print(name)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from robustact.demo import run_demo

    run_demo(seed=args.seed, device=args.device, progress=not args.no_progress)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``robustact`` command (sub-commands with ``--help``)."""
    p = argparse.ArgumentParser(
        prog="robustact",
        description="Robust activations (S-ReLU, D-ReLU, BReLU): train them and evaluate "
        "their robustness honestly (seed and adaptive protocols, masking report).",
    )
    p.add_argument("--version", action="version", version=f"robustact {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser("demo", help="train and evaluate small models on the embedded digits")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)

    lst = sub.add_parser("list", help="list registered components")
    lst.add_argument("what", choices=["activations", "models", "datasets", "attacks"])
    lst.set_defaults(func=_list)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        print("robustact: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, TypeError, FileNotFoundError, KeyError, RuntimeError) as e:
        if args.debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"robustact: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
