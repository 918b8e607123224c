"""Helpers shared by the sub-commands: errors, ``key=value`` options, the device, checkpoints,
evaluation data and atomic output files."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "CLIError",
    "OneLineParser",
    "add_data_options",
    "check_output_paths",
    "console",
    "eval_data",
    "load_model",
    "model_label",
    "parse_kv",
    "resolve_checkpoint",
    "resolve_device",
    "write_json",
]

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit code 2), naming
    the sub-command and pointing at its ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_kv(items: Sequence[str] | None, option: str) -> dict[str, Any]:
    """``["hidden=[32,16]", "bias=true"]`` -> ``{"hidden": [32, 16], "bias": True}``.

    Values are read with ``yaml.safe_load``, so numbers, booleans, lists and mappings work;
    a value YAML cannot read stays a string.

    Raises:
        CLIError: an item without ``=``, a key that is not an identifier, a repeated key.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise CLIError(f"{option} {item!r}: expected KEY=VALUE, e.g. {option} hidden=[32,16]")
        if key in out:
            raise CLIError(f"{option}: key {key!r} is given twice")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key] = raw
    return out


def yaml_value(raw: str) -> Any:
    """A single option value read as YAML (``"1"`` -> 1, ``"[0,1]"`` -> [0, 1]); strings stay."""
    import yaml

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


#: Device types that compute (``meta`` and the like hold no data: refused up front).
COMPUTE_DEVICES = ("cpu", "cuda", "mps", "xpu")


def resolve_device(name: str) -> str:
    """The device string to use: ``"auto"`` is ``"cuda"`` when available, else ``"cpu"``.

    Raises:
        CLIError: not a torch device, a device that does not compute (``meta``), or one
            that is not available here (CUDA without a GPU).
    """
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise CLIError(
            f"--device {name!r} is not a torch device; use cpu, cuda, cuda:1 or auto"
        ) from None
    if dev.type not in COMPUTE_DEVICES:
        raise CLIError(
            f"--device {name}: {dev.type!r} devices do not compute; use cpu, cuda, cuda:N or auto"
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CLIError(
                f"--device {name}: there are {torch.cuda.device_count()} CUDA devices "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise CLIError(f"--device {name}: MPS is not available here; use --device cpu")
    if dev.type == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise CLIError(f"--device {name}: XPU is not available here; use --device cpu")
    return name


#: (command, option dest) -> "file" or "dir": output paths checked before any work.
OUTPUT_PATHS: dict[tuple[str, str], str] = {
    ("demo", "out"): "dir",
    ("train", "out"): "dir",
    ("attack", "out"): "dir",
    ("attack", "json"): "file",
    ("evaluate", "json"): "file",
    ("evaluate", "robustbench"): "file",
    ("diagnose", "out"): "dir",
    ("run", "output_dir"): "dir",
    ("report", "out"): "dir",
}


def check_output_paths(args: argparse.Namespace) -> None:
    """Checks every output path of the command can be written, before its work starts.

    Raises:
        ValueError: a path that is (under) a file where a folder is wanted, a folder where
            a file is wanted, or not writable (one line naming the option).
    """
    from robustact._validate import writable_dir, writable_file

    for (command, dest), kind in OUTPUT_PATHS.items():
        value = getattr(args, dest, None) if args.command == command else None
        if value is None or value == "-" or (command == "run" and getattr(args, "dry_run", False)):
            continue
        option = "--out/--output-dir" if dest == "output_dir" else "--" + dest.replace("_", "-")
        (writable_dir if kind == "dir" else writable_file)(value, option)


def console(stderr: bool = False) -> Any:
    """A rich console on the current stdout (wide when it is not a terminal); on stderr
    when stdout carries machine output (``--json -``)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    wide = None if stream.isatty() else 160
    return Console(file=stream, width=wide, highlight=False, soft_wrap=True)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented strict JSON, atomically (temp file + os.replace); floats
    without float32 noise (no float32 noise)."""
    from robustact.evaluate._notebook import round_floats
    from robustact.experiments.records import atomic_write_text

    try:
        text = json.dumps(round_floats(data), indent=1, allow_nan=False)
    except ValueError as e:
        raise CLIError(f"cannot write {path}: {e}") from e
    return atomic_write_text(path, text + "\n")


def add_data_options(p: argparse.ArgumentParser, n_default: int | None) -> None:
    """``--dataset/--dataset-arg/--data-root/--split/--n`` (dataset default: the checkpoint's)."""
    g = p.add_argument_group("data (default: the dataset the checkpoint was trained on)")
    g.add_argument("--dataset", help="dataset name (robustact list datasets)")
    g.add_argument(
        "--dataset-arg", action="append", metavar="KEY=VALUE", help="dataset reader option"
    )
    g.add_argument("--data-root", help="folder holding the datasets")
    g.add_argument("--split", default="test", help="split to use (default test)")
    g.add_argument(
        "--n",
        type=int,
        default=n_default,
        help=f"first N points of the split (default {n_default or 'all'})",
    )


# --------------------------------------------------------------------------- checkpoints


def resolve_checkpoint(path: str) -> Path:
    """The ``.safetensors`` file of a checkpoint given as that file, its ``.json`` sidecar, or
    the folder ``robustact train --out`` wrote (holding ``model.safetensors``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.safetensors"
    elif p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    if not p.is_file():
        raise CLIError(
            f"no checkpoint at {path}: expected a robustact train --out folder or a "
            ".safetensors file with its .json sidecar"
        )
    if not p.with_suffix(".json").is_file():
        raise CLIError(f"{p} has no .json sidecar beside it: not a robustact checkpoint")
    return p


def load_model(path: str, device: str) -> tuple[Any, dict[str, Any], Path]:
    """Load a checkpoint's model (eval mode, on ``device``), its sidecar and its path.

    ``robustact.train.load_checkpoint`` rebuilds every checkpoint (surgery and transforms
    included) from the model config its sidecar records.
    """
    from robustact.train import CheckpointError, load_checkpoint, read_sidecar

    p = resolve_checkpoint(path)
    try:
        meta = read_sidecar(p)
        if meta.get("kind") not in (None, "model"):
            raise CLIError(
                f"{p} is a {meta.get('kind')!r} checkpoint (training state), not a model; "
                "pass the model.safetensors that robustact train writes"
            )
        model, meta = load_checkpoint(p)
    except CheckpointError as e:
        raise CLIError(str(e)) from e
    return model.to(device).eval(), meta, p


def model_label(meta: dict[str, Any]) -> str:
    """Short text naming a checkpoint's model, e.g. ``mlp_general / srelu(max_value=0.01)@act2
    / natural`` (the model class for checkpoints without a cell config)."""
    cell = (meta.get("extra") or {}).get("cell")
    if not isinstance(cell, dict):
        name = str((meta.get("model") or {}).get("class", "model"))
        if meta.get("user_model"):  # "path/to/nets.py:MyNet" -> "MyNet (nets.py)"
            where, _, attr = name.rpartition(":")
            return f"{attr} ({Path(where).name})" if attr else name
        return name.rsplit(".", 1)[-1]
    parts = []
    for key in ("model", "activation", "objective"):
        cfg = dict(cell.get(key) or {})
        name = str(cfg.pop("name", "?"))
        where, insert = cfg.pop("where", None), cfg.pop("insert", None)
        text = name + (f"({', '.join(f'{k}={v}' for k, v in cfg.items())})" if cfg else "")
        text += f"@{where}" if where is not None else ""
        text += f"+{insert}" if insert is not None else ""
        parts.append(text)
    return " / ".join(parts)


def eval_data(args: argparse.Namespace, meta: dict[str, Any], device: str) -> tuple[Any, Any, str]:
    """``(x (N, C, H, W), y (N,), description)`` on ``device`` for a checkpoint's model:
    ``--dataset`` or the checkpoint's training dataset, ``--split``, first ``--n`` points."""
    from robustact.data import load_dataset

    cell = (meta.get("extra") or {}).get("cell") or {}
    opts = parse_kv(args.dataset_arg, "--dataset-arg")
    if args.dataset is not None:
        name = args.dataset
    elif "dataset" in cell:
        ds_cfg = dict(cell["dataset"])
        name = str(ds_cfg.pop("name"))
        opts = {**ds_cfg, **opts}
    else:
        raise CLIError("this checkpoint does not record its dataset; pass --dataset NAME")
    if args.n is not None and args.n < 1:
        raise CLIError(f"--n must be >= 1, got {args.n}")
    ds = load_dataset(name, root=args.data_root, split=args.split, **opts)
    x, y = ds.tensors()
    if args.n is not None:
        x, y = x[: args.n], y[: args.n]
    shape = (meta.get("extra") or {}).get("input_shape")
    if shape is not None and list(x.shape[1:]) != [int(v) for v in shape]:
        raise CLIError(
            f"dataset {name} has images {tuple(x.shape[1:])} but the model was trained on "
            f"{tuple(shape)}; pass the training dataset (and its --dataset-arg options)"
        )
    desc = f"{name}{''.join(f' {k}={v}' for k, v in opts.items())} {args.split} n={len(y)}"
    return x.to(device), y.to(device), desc


def check_eps(eps: float, option: str = "--eps") -> float:
    """A finite eps >= 0."""
    from robustact._validate import check_float

    try:
        return check_float(option, eps, 0.0)
    except ValueError as e:
        raise CLIError(str(e)) from None


def fail(message: str) -> NoReturn:
    """Raise :class:`CLIError` (for expressions)."""
    raise CLIError(message)
