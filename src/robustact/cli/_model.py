"""Where a command's model comes from: a robustact checkpoint, or the user's own model.

Every command that takes a model accepts either a checkpoint (``CKPT``: the folder
``robustact train --out`` wrote, or a ``.safetensors`` file with its ``.json`` sidecar), or
``--model MODULE:NAME`` / ``--model FILE.py:NAME`` with ``--weights FILE`` (a state_dict
``.pt``/``.safetensors``) and ``--model-arg KEY=VALUE``, or ``--weights`` alone for a
TorchScript file. See :mod:`robustact.loading`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from robustact.cli._common import CLIError, load_model, parse_kv

__all__ = ["add_model_options", "model_from_args"]


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The optional ``CKPT`` positional plus ``--model``, ``--weights`` and ``--model-arg``."""
    p.add_argument(
        "checkpoint",
        metavar="CKPT",
        nargs="?",
        help="robustact checkpoint (train --out folder or .safetensors); or use --model",
    )
    g = p.add_argument_group("your own model (instead of CKPT)")
    g.add_argument(
        "--model",
        dest="user_model",
        metavar="MODULE:NAME",
        help="class or factory of your model: mypkg.nets:MyNet or path/to/nets.py:MyNet",
    )
    g.add_argument(
        "--weights",
        metavar="FILE",
        help="its weights: state_dict .pt/.pth (weights_only), .safetensors, or TorchScript",
    )
    g.add_argument(
        "--model-arg",
        action="append",
        metavar="KEY=VALUE",
        help="keyword argument for the factory (repeatable)",
    )


def model_from_args(args: argparse.Namespace, device: str) -> tuple[Any, dict[str, Any], Path]:
    """``(model in eval mode on device, sidecar-like meta, path)`` from the parsed options.

    A user's model has no sidecar: ``meta`` then records only its class (``model.class``)
    and the data must come from ``--dataset``.

    Raises:
        CLIError: neither or both of CKPT and --model/--weights, or a loading problem.
    """
    from robustact.loading import ModelLoadError
    from robustact.loading import load_model as load_user_model

    user = getattr(args, "user_model", None)
    weights = getattr(args, "weights", None)
    margs = getattr(args, "model_arg", None)
    if args.checkpoint is not None:
        if user is not None or weights is not None or margs:
            raise CLIError("give either a checkpoint (CKPT) or --model/--weights, not both")
        return load_model(args.checkpoint, device)
    if user is None and weights is None:
        raise CLIError(
            "no model: pass a checkpoint (CKPT), or --model MODULE:NAME --weights FILE for "
            "your own model (see --help)"
        )
    try:
        model = load_user_model(
            user, weights, model_args=parse_kv(margs, "--model-arg"), device=device
        )
    except ModelLoadError as e:
        raise CLIError(str(e)) from None
    name = user if user is not None else f"torchscript:{Path(str(weights)).name}"
    meta: dict[str, Any] = {"model": {"class": name}, "extra": {}, "user_model": True}
    return model, meta, Path(str(weights) if weights is not None else str(user))
