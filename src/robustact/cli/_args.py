"""Argument conventions shared by every command: eps as a number or a fraction (``8/255``),
``-`` as an output file meaning standard output, one name per concept (``--quick``, with
``--fast`` a hidden deprecated alias; ``--out`` always a folder; ``--n`` and
``--batch-size`` with the same defaults), and ``paper`` as the user-facing name of the
``seed`` protocol (the source papers' protocol)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from fractions import Fraction
from typing import Any

__all__ = [
    "BATCH_SIZE",
    "N_POINTS",
    "add_batch_size",
    "add_quick",
    "eps_value",
    "is_stdout",
    "protocol_name",
    "write_json_or_stdout",
]

#: ``--n`` default of every command that evaluates (attack, evaluate, diagnose).
N_POINTS = 500
#: ``--batch-size`` default of every command that attacks (points per attack call).
BATCH_SIZE = 500

#: User-facing protocol names -> the internal ids (``seed`` stays in stores and cell ids).
PROTOCOL_ALIASES = {"paper": "seed", "paper-brelu": "seed-brelu"}


def protocol_name(text: str) -> str:
    """``--protocol`` values: ``paper`` (the source papers' protocol) is the internal
    ``seed`` protocol; every other name is passed on as given."""
    return PROTOCOL_ALIASES.get(text.strip(), text.strip())


def add_quick(p: argparse.ArgumentParser, help_text: str) -> None:
    """``--quick`` (dest ``fast``) plus ``--fast``, its hidden deprecated alias."""
    p.add_argument("--quick", dest="fast", action="store_true", help=help_text)
    p.add_argument("--fast", dest="fast", action="store_true", help=argparse.SUPPRESS)


def add_batch_size(p: argparse.ArgumentParser) -> None:
    """``--batch-size`` of the commands that attack (points per attack call)."""
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help=f"points per attack call (default {BATCH_SIZE})")  # fmt: skip


def eps_value(text: str) -> float:
    """``"0.1"`` -> 0.1, ``"8/255"`` -> 0.03137..., for ``type=`` in argparse.

    Raises:
        argparse.ArgumentTypeError: not a finite number >= 0 or a fraction of two numbers.
    """
    raw = str(text).strip()
    try:
        if "/" in raw:
            num, _, den = raw.partition("/")
            value = float(Fraction(num.strip())) / float(Fraction(den.strip()))
        else:
            value = float(raw)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number or a fraction such as 8/255"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: eps must be a finite number >= 0")
    return value


def is_stdout(path: str | None) -> bool:
    """True when an output option names standard output (``-``)."""
    return path == "-"


def write_json_or_stdout(path: str, data: Any) -> str:
    """Write ``data`` as JSON to ``path`` (atomically) or to stdout for ``-``, without
    float32 noise; returns where."""
    from robustact.evaluate._notebook import round_floats

    data = round_floats(data)  # no float32 noise (0.9200000166893005 -> 0.92)
    if is_stdout(path):
        sys.stdout.write(json.dumps(data, indent=1, allow_nan=False) + "\n")
        sys.stdout.flush()
        return "<stdout>"
    from robustact.cli._common import write_json

    return str(write_json(path, data))
