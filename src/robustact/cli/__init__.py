"""The ``robustact`` command line.

Sub-commands: ``demo``, ``train``, ``attack``, ``evaluate``, ``diagnose``, ``certify``,
``run``, ``report``, ``list`` and ``completion``; each has ``--help``. Every user error ends
in one line on stderr
and exit code 2 (``--debug`` shows the traceback): bad options, specs and data, unusable
store files, a diverging training, and output paths that cannot be written (checked before
the command starts its work); an unexpected failure is one line with exit code 1.
The CLI is the only place that picks a device (``--device``, default "cpu";
"auto" = CUDA when available). Heavy modules are imported inside the commands, so
``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Sequence

from robustact import __version__
from robustact.cli import _attack, _certify, _completion, _evaluate, _run, _train
from robustact.cli._common import CLIError, OneLineParser, check_output_paths, resolve_device

__all__ = ["CLIError", "build_parser", "main"]

#: Exception types that mean "the input was wrong" (exit code 2, one line).
USER_ERRORS: tuple[type[BaseException], ...] = (
    CLIError,
    ValueError,
    TypeError,
    KeyError,
    LookupError,
    OSError,
    ImportError,
    RuntimeError,  # robustact.experiments.store.StoreError is one
    FloatingPointError,  # training diverged (non-finite loss): lower the learning rate
    sqlite3.Error,  # a store locked or damaged by something else
)


def _demo(args: argparse.Namespace) -> int:
    from robustact.demo import run_demo

    extra = {k: v for k, v in (("out_dir", args.out), ("workers", args.workers)) if v is not None}
    run_demo(
        seed=args.seed, device=resolve_device(args.device), progress=not args.no_progress, **extra
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``robustact`` command (sub-commands with ``--help``)."""
    p = OneLineParser(
        prog="robustact",
        description="Robust activations (S-ReLU, D-ReLU, BReLU): train them and evaluate "
        "their robustness honestly (paper and adaptive protocols, masking report).",
    )
    p.add_argument("--version", action="version", version=f"robustact {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    # sub-parsers are OneLineParsers too: their usage errors are one line as well
    sub = p.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=OneLineParser
    )

    demo = sub.add_parser("demo", help="train and evaluate small models on the embedded digits")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument("--out", help="output folder (default robustact-out/demo)")
    demo.add_argument("--workers", type=int, help="worker processes (default: 2 on 2+ cores)")
    demo.set_defaults(func=_demo)

    _train.add_parser(sub)
    _attack.add_parser(sub)
    _evaluate.add_parsers(sub)
    _certify.add_parser(sub)
    _run.add_parsers(sub)
    _completion.add_parser(sub)
    return p


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    if isinstance(e, KeyError) and e.args and isinstance(e.args[0], str):
        text = e.args[0].strip()  # KeyError's str() adds quotes
    return text.splitlines()[0] if text else type(e).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_output_paths(args)  # before any work, not after it
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        print("robustact: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `robustact list models | head`: the reader left, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush is silent
        return 0
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"robustact {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug, not a bad input: still one line unless --debug
        if args.debug:
            raise
        print(
            f"robustact {args.command}: internal error: {type(e).__name__}: {_one_line(e)} "
            "(rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
