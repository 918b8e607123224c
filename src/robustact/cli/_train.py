"""``robustact train``: train one model and save a checkpoint the other commands load.

The command line is turned into a one-cell experiment spec and validated by the spec
parser (so every bad name, argument or training field is reported before any work, with
the same checks as ``robustact run``); the cell is then prepared and trained exactly as
the experiment runner does; its checkpoint records the model config with its surgery, so
``robustact.train.load_checkpoint`` rebuilds the same model, activation placement included.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any

from robustact.cli._common import (
    CLIError,
    console,
    model_label,
    parse_kv,
    resolve_device,
    yaml_value,
)

__all__ = ["add_parser", "cmd_train", "train_cell_config"]

#: ``--quick``: at most this many epochs and training/validation points.
QUICK_EPOCHS = 2
QUICK_TRAIN_POINTS = 2000
QUICK_VAL_POINTS = 500

PRESETS = ("dissertation", "brelu_paper")

# spec-parser paths -> the options that set them (so errors name what the user typed)
_OPTION_OF = (
    (r"grid\.datasets\[0\](\.name)?", "--dataset"),
    (r"grid\.datasets\[0\]\.", "--dataset-arg "),
    (r"grid\.models\[0\](\.name)?", "--model"),
    (r"grid\.models\[0\]\.", "--model-arg "),
    (r"grid\.activations\[0\]\.where", "--where"),
    (r"grid\.activations\[0\]\.insert", "--insert"),
    (r"grid\.activations\[0\]\.width", "--width"),
    (r"grid\.activations\[0\](\.name)?", "--activation"),
    (r"grid\.activations\[0\]\.", "--act-arg "),
    (r"grid\.objectives\[0\](\.name)?", "--objective"),
    (r"grid\.objectives\[0\]\.", "--objective-arg "),
    (r"grid\.seeds\[0\]", "--seed"),
    (r"training\.val_fraction", "--val-fraction"),
    (r"training\.", "--"),
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train one model and save a checkpoint (safetensors + JSON)",
        description="Train a model with an activation (optionally placed by surgery) under an "
        "objective, and save model.safetensors + model.json in --out. KEY=VALUE values are "
        "YAML (numbers, true/false, [lists]).",
    )
    p.add_argument("--dataset", default="digits", help="dataset (default digits)")
    p.add_argument("--dataset-arg", action="append", metavar="KEY=VALUE", help="reader option")
    p.add_argument("--data-root", help="folder holding the datasets")
    p.add_argument("--model", default="mlp_general", help="model (default mlp_general)")
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="e.g. hidden=[32,16]")
    p.add_argument("--activation", default="relu", help="activation (default relu)")
    p.add_argument("--act-arg", action="append", metavar="KEY=VALUE", help="e.g. max_value=0.01")
    place = p.add_mutually_exclusive_group()
    place.add_argument(
        "--where",
        help="replace only these activations: a module-name glob (act2), an index, a list "
        "[0,1], 're:REGEX' or '{type: relu}' (default: every activation)",
    )
    place.add_argument(
        "--insert",
        choices=["before_output", "after_input"],
        help="insert a capped layer (Linear + activation) here instead",
    )
    p.add_argument("--width", type=int, help="width of the --insert layer")
    p.add_argument("--objective", default="natural", help="training objective (default natural)")
    p.add_argument(
        "--objective-arg", action="append", metavar="KEY=VALUE", help="e.g. eps=0.3 steps=7"
    )
    t = p.add_argument_group("training (defaults: TrainConfig, or the --preset)")
    t.add_argument("--preset", choices=PRESETS, help="start from a published training setup")
    t.add_argument("--epochs", type=int, help="epochs (default 10)")
    t.add_argument("--batch-size", type=int, help="batch size (default 128)")
    t.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
    t.add_argument("--optimizer", help="adam, adamw or sgd (default adam)")
    t.add_argument("--schedule", help="none, plateau, onecycle, cosine, piecewise")
    t.add_argument(
        "--train-arg",
        action="append",
        metavar="KEY=VALUE",
        help="any other TrainConfig field, e.g. weight_decay=5e-4 early_stopping=10",
    )
    t.add_argument("--val-fraction", type=float, default=0.2, help="validation share (0.2)")
    t.add_argument("--seed", type=int, default=0, help="seed of init, split and order (0)")
    p.add_argument("--out", required=True, help="checkpoint folder (model.safetensors + .json)")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: at most {QUICK_EPOCHS} epochs, {QUICK_TRAIN_POINTS} training and "
        f"{QUICK_VAL_POINTS} validation points",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def _training_block(args: argparse.Namespace) -> dict[str, Any]:
    from robustact.train import TrainConfig

    base: dict[str, Any] = {}
    if args.preset is not None:
        preset = getattr(TrainConfig, args.preset)()
        defaults = TrainConfig().to_dict()
        base = {k: v for k, v in preset.to_dict().items() if v != defaults[k]}
    base.update(parse_kv(args.train_arg, "--train-arg"))
    for key in ("epochs", "batch_size", "lr", "optimizer", "schedule"):
        if getattr(args, key) is not None:
            base[key] = getattr(args, key)
    for key in ("seed", "device", "progress"):
        if key in base:
            raise CLIError(f"--train-arg {key}=...: use --{key} instead")
    if args.quick:
        base["epochs"] = min(int(base.get("epochs", 10)), QUICK_EPOCHS)
    base["val_fraction"] = args.val_fraction
    return base


def train_cell_config(args: argparse.Namespace) -> dict[str, Any]:
    """The one-cell experiment config of a ``train`` command line (validated).

    Raises:
        CLIError: every problem found, joined on one line.
    """
    from robustact.experiments import SpecError, parse_spec

    act: dict[str, Any] = {"name": args.activation, **parse_kv(args.act_arg, "--act-arg")}
    if args.where is not None:
        act["where"] = yaml_value(args.where)
    if args.insert is not None:
        act["insert"] = args.insert
        if args.width is not None:
            act["width"] = args.width
    elif args.width is not None:
        raise CLIError("--width goes with --insert (the width of the inserted layer)")
    objective_args = parse_kv(args.objective_arg, "--objective-arg")
    spec = {
        "name": "train",
        "grid": {
            "datasets": [{"name": args.dataset, **parse_kv(args.dataset_arg, "--dataset-arg")}],
            "models": [{"name": args.model, **parse_kv(args.model_arg, "--model-arg")}],
            "activations": [act],
            "objectives": [{"name": args.objective, **objective_args}],
            "seeds": [args.seed],
        },
        "training": _training_block(args),
        "evaluation": {"eps": [0.0]},  # required by the spec; train does not evaluate
    }  # fmt: skip
    try:
        cells = parse_spec(spec, source="train").cells()
    except SpecError as e:
        raise CLIError("; ".join(_option_error(line) for line in e.errors)) from e
    config = dict(cells[0].config)
    del config["evaluation"]
    return config


def _option_error(line: str) -> str:
    msg = line.removeprefix("train: ")
    path, sep, rest = msg.partition(": ")
    if not sep:
        return msg
    for pattern, option in _OPTION_OF:
        m = re.match(pattern, path)
        if m is None:
            continue
        tail = path[m.end() :]
        if option.endswith(" ") or option == "--":
            return f"{option}{tail.replace('_', '-') if option == '--' else tail}: {rest}"
        if tail:
            continue
        return f"{option}: {rest}"
    return msg


def cmd_train(args: argparse.Namespace) -> int:
    from robustact.experiments.cell import prepare_cell, save_cell_checkpoint
    from robustact.train import fit
    from robustact.train.checkpoint import latest_training_state

    device = resolve_device(args.device)
    config = train_cell_config(args)
    out = Path(args.out)
    weights, state_dir = out / "model.safetensors", out / "train"
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file; give a folder for the checkpoint")
    if not args.resume and (weights.exists() or latest_training_state(state_dir)):
        raise CLIError(
            f"--out {out} already holds a run; add --resume to continue it or pick a new --out"
        )
    t0 = time.perf_counter()
    prep = prepare_cell(config, data_root=args.data_root, device=device,
                        progress=not args.no_progress)  # fmt: skip
    train, val = prep.train, prep.val
    if args.quick:
        train = train.subset(range(min(len(train), QUICK_TRAIN_POINTS)))
        val = val.subset(range(min(len(val), QUICK_VAL_POINTS)))
    history = fit(prep.model, prep.objective, train, prep.train_config, val_data=val,
                  checkpoint_dir=state_dir, resume=args.resume)  # fmt: skip
    seconds = time.perf_counter() - t0
    x, y = prep.test.tensors()
    model = prep.model.eval()
    import torch

    with torch.no_grad():
        correct = sum(
            int((model(x[i : i + 500].to(device)).argmax(1).cpu() == y[i : i + 500]).sum())
            for i in range(0, len(y), 500)
        )
    test_acc = correct / max(1, len(y))
    extra = {
        "quick": bool(args.quick), "n_train": len(train), "n_val": len(val),
        "test_accuracy": test_acc, "seconds": seconds, "device": device,
    }  # fmt: skip
    path = save_cell_checkpoint(weights, prep, history, extra=extra)
    last = history.last if len(history) else {}
    n_ep = len(history)
    con = console()
    con.print(
        f"trained {model_label({'extra': {'cell': config}})} on {config['dataset']['name']}: "
        f"{n_ep} epoch{'s' * (n_ep != 1)}, {seconds:.1f} s on {device}"
        + (" [quick]" if args.quick else "")
    )
    keys = ("loss", "val_loss", "val_acc")
    parts = [f"{k} {last[k]:.4f}" for k in keys if isinstance(last.get(k), float)]
    parts.append(f"test accuracy {100 * test_acc:.2f} %")
    con.print("final: " + ", ".join(parts))
    con.print(f"checkpoint: {path}")
    return 0
