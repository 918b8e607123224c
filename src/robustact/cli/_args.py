"""Argument conventions shared by every command: eps as a number or a fraction (``8/255``),
and ``-`` as an output file meaning standard output."""

from __future__ import annotations

import argparse
import json
import math
import sys
from fractions import Fraction
from typing import Any

__all__ = ["eps_value", "is_stdout", "write_json_or_stdout"]


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
    """Write ``data`` as JSON to ``path`` (atomically) or to stdout for ``-``; returns where."""
    if is_stdout(path):
        sys.stdout.write(json.dumps(data, indent=1, allow_nan=False) + "\n")
        sys.stdout.flush()
        return "<stdout>"
    from robustact.cli._common import write_json

    return str(write_json(path, data))
