"""One validation toolkit: small checks that raise one-line errors naming the value and the fix.

Every public function, CLI command and reader checks its arguments at the boundary with
these, so the same mistake reads the same everywhere:

* numbers: :func:`is_int`, :func:`is_number`, :func:`in_range`, :func:`describe_range`,
  :func:`check_int`, :func:`check_float`, :func:`check_probability`; choices:
  :func:`check_choice`;
* the pixel contract (images float in [0, 1], finite, float32-compatible; integer labels in
  range; matching batch sizes): :func:`check_images`, :func:`check_labels`,
  :func:`check_batch`, shared by attacks and training;
* output paths, checked before any work starts: :func:`writable_dir`, :func:`writable_file`.

Value errors raise :class:`ValueError`, wrong types :class:`TypeError`; both carry one line.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeGuard

import torch
from torch import Tensor

__all__ = [
    "check_batch",
    "check_choice",
    "check_float",
    "check_images",
    "check_int",
    "check_labels",
    "check_probability",
    "describe_range",
    "in_range",
    "is_int",
    "is_number",
    "writable_dir",
    "writable_file",
]

#: Float dtypes an image may have: float32, or ones float32 holds exactly.
FLOAT32_EXACT = (torch.float32, torch.float16, torch.bfloat16)


def is_int(value: object) -> TypeGuard[int]:
    """True for Python/NumPy integers, False for bool (``True`` is not a count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[float]:
    """True for real numbers (ints and floats, NumPy's included), False for bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def describe_range(
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    min_open: bool = False,
    max_open: bool = False,
) -> str:
    """``" >= 0"``, ``" in (0, 1]"``, ``" <= 5"`` or ``""`` (for error messages)."""
    if minimum is not None and maximum is not None:
        return f" in {'(' if min_open else '['}{minimum:g}, {maximum:g}{')' if max_open else ']'}"
    if minimum is not None:
        return f" {'>' if min_open else '>='} {minimum:g}"
    if maximum is not None:
        return f" {'<' if max_open else '<='} {maximum:g}"
    return ""


def in_range(
    v: float,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    min_open: bool = False,
    max_open: bool = False,
) -> bool:
    """True when ``v`` lies in the range :func:`describe_range` describes."""
    if minimum is not None and (v <= minimum if min_open else v < minimum):
        return False
    return not (maximum is not None and (v >= maximum if max_open else v > maximum))


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int when it is an integer (not a bool) in [minimum, maximum].

    Raises:
        ValueError: not an integer, or out of range (the message gives the range).
    """
    if not is_int(value) or not in_range(int(value), minimum, maximum):
        raise ValueError(
            f"{name} must be an integer{describe_range(minimum, maximum)}, got {value!r}"
        )
    return int(value)


def check_float(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    min_open: bool = False,
    max_open: bool = False,
    hint: str = "",
) -> float:
    """``value`` as a float when it is a finite real number (not a bool) in range.

    Raises:
        ValueError: not a number, NaN/inf, or out of range.
    """
    ok = is_number(value) and math.isfinite(float(value))
    if not ok or not in_range(float(value), minimum, maximum, min_open=min_open, max_open=max_open):
        rng = describe_range(minimum, maximum, min_open=min_open, max_open=max_open)
        tail = f"; {hint}" if hint else ""
        raise ValueError(f"{name} must be a finite number{rng}, got {value!r}{tail}")
    return float(value)


def check_probability(name: str, value: Any) -> float:
    """A finite number in [0, 1]."""
    return check_float(name, value, 0.0, 1.0)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` when it is one of ``choices``, else an error with the close match and list."""
    allowed = list(choices)
    if isinstance(value, str) and value in allowed:
        return value
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}{hint}")


# --------------------------------------------------------------------------- the pixel contract


def check_images(
    x: Any, name: str = "x", *, batched: bool = True, what: str = "", any_float: bool = False
) -> Tensor:
    """Checks images follow the pixel contract: a float tensor (float32, or a dtype float32
    holds exactly; any float dtype with ``any_float``, for data that is cast afterwards),
    finite, in [0, 1]; shape (N, ...) when ``batched``. ``what`` ("training data") prefixes
    every message.

    Raises:
        TypeError: not a tensor, an integer tensor, or float64 (name the conversion).
        ValueError: NaN/inf, values outside [0, 1] (0..255 data: divide by 255), no batch dim.
    """
    p = f"{what}: " if what else ""
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{p}{name} must be a torch tensor of images in [0, 1], got {type(x).__name__}"
        )
    if not x.is_floating_point():
        hint = "; divide uint8 pixels by 255" if x.dtype == torch.uint8 else ""
        raise TypeError(f"{p}{name} must be a float tensor in [0, 1], got dtype {x.dtype}{hint}")
    if not any_float and x.dtype not in FLOAT32_EXACT:
        raise TypeError(
            f"{p}{name} is {str(x.dtype).removeprefix('torch.')}; models and attacks work in "
            f"float32: pass {name}.float()"
        )
    if batched and x.dim() < 2:
        raise ValueError(f"{p}{name} must be batched (N, ...), got shape {tuple(x.shape)}")
    if x.numel():
        lo, hi = (float(v) for v in torch.aminmax(x.detach()))  # one pass; NaN fails both
        if not (lo >= 0.0 and hi <= 1.0):
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"{p}{name} contains NaN or inf; images must be finite, in [0, 1]")
            fix = (
                "divide by 255 (these look like 0..255 pixel values)"
                if lo >= 0.0 and hi <= 255.0
                else "feed un-normalised images and put normalisation inside the model"
            )
            raise ValueError(
                f"{p}{name} must lie in [0, 1] (pixel contract), got values in "
                f"[{lo:.4g}, {hi:.4g}]; {fix}"
            )
    return x


def check_labels(
    y: Any, n: int | None = None, num_classes: int | None = None, name: str = "y", *,
    what: str = "",
) -> Tensor:  # fmt: skip
    """Checks labels are an int64 (N,) tensor of class indices in [0, num_classes).

    Raises:
        TypeError: not a tensor or not int64 (float labels: name the conversion).
        ValueError: wrong shape, N differs from ``n``, a label out of range.
    """
    p = f"{what}: " if what else ""
    if not isinstance(y, Tensor):
        raise TypeError(f"{p}{name} must be a torch tensor of int64 labels, got {type(y).__name__}")
    if y.dtype != torch.int64:
        fix = (
            f"labels must be whole class numbers ({name}.long() if they are)"
            if y.is_floating_point()
            else f"use {name}.long()"
        )
        raise TypeError(f"{p}{name} must hold int64 class labels, got {y.dtype}; {fix}")
    if y.dim() != 1 or (n is not None and y.shape[0] != n):
        want = f"(N,) with N = {n} like x" if n is not None else "(N,)"
        raise ValueError(f"{p}{name} must be {want}, got shape {tuple(y.shape)}")
    if y.numel():
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or (num_classes is not None and hi >= num_classes):
            bound = f"in [0, {num_classes}) (the model's classes)" if num_classes else ">= 0"
            raise ValueError(
                f"{p}{name}: labels must be {bound}, got [{lo}, {hi}]; check the dataset or "
                "the model's num_classes"
            )
    return y


def check_batch(
    x: Any, y: Any, num_classes: int | None = None, *, what: str = "", any_float: bool = False
) -> tuple[Tensor, Tensor]:
    """:func:`check_images` and :func:`check_labels` on one batch, same size and device;
    shared by attacks, evaluation and training (``what="training data"``, ``any_float``:
    training casts other float precisions to the model's)."""
    check_images(x, what=what, any_float=any_float)
    check_labels(y, int(x.shape[0]), num_classes, what=what)
    if y.device != x.device:
        p = f"{what}: " if what else ""
        raise ValueError(f"{p}x is on {x.device} but y on {y.device}; move both to one device")
    return x, y


# --------------------------------------------------------------------------- output paths


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_write(folder: Path, option: str, target: Path) -> None:
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ValueError(
            f"{option} {target}: cannot write in {folder} ({e.strerror or e}); "
            "pick a writable location"
        ) from None


def writable_dir(path: str | os.PathLike[str], option: str = "output folder") -> Path:
    """``path`` when it is (or can be created as) a folder this process can write in.

    Nothing is created: the nearest existing folder is probed with a temporary file.

    Raises:
        ValueError: the path (or a parent) is a file, or the location is not writable.
    """
    p = Path(path).expanduser()
    near = _nearest_existing(p)
    if not near.is_dir():
        what = "is a file" if near == p else f"is under the file {near}"
        raise ValueError(f"{option} {p} {what}; give a folder")
    _probe_write(near, option, p)
    return p


def writable_file(path: str | os.PathLike[str], option: str = "output file") -> Path:
    """``path`` when a file can be written there (its folder exists or can be created).

    Raises:
        ValueError: the path is a folder, its parent is a file, or it is not writable.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValueError(f"{option} {p} is a folder; give a file name, e.g. {p / 'out.json'}")
    if p.exists() and not os.access(p, os.W_OK):
        raise ValueError(f"{option} {p} is not writable; pick another file")
    near = _nearest_existing(p.parent)
    if not near.is_dir():
        raise ValueError(f"{option} {p} is under the file {near}; give a path in a folder")
    _probe_write(near, option, p)
    return p
