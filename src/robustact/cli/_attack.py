"""``robustact attack``: run one attack on a checkpoint, print the accuracies and save the
adversarial examples."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from robustact.cli._args import N_POINTS, add_batch_size, eps_value, is_stdout, write_json_or_stdout
from robustact.cli._common import (
    CLIError,
    add_data_options,
    check_eps,
    console,
    eval_data,
    parse_kv,
    resolve_device,
)
from robustact.cli._model import add_model_options, model_from_args

__all__ = ["ADV_FILE", "add_parser", "cmd_attack", "run_attack"]

#: The file ``--out DIR`` receives (``--out`` is a folder in every command).
ADV_FILE = "adversarial.safetensors"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "attack",
        help="attack a model; print clean/adversarial accuracy, save the examples",
        description="Run one attack on a model (a robustact checkpoint or your own, see "
        "--model) and write the adversarial examples to --out DIR as adversarial.safetensors "
        "(tensors x_adv, y, pred_clean, pred_adv; the settings in its metadata).",
    )
    add_model_options(p)
    p.add_argument("--attack", default="pgd", help="attack name (robustact list attacks)")
    p.add_argument("--eps", type=eps_value, required=True, help="perturbation budget, e.g. 0.1")
    p.add_argument("--norm", default="Linf", help="Linf (default) or L2")
    p.add_argument(
        "--attack-arg", action="append", metavar="KEY=VALUE", help="e.g. steps=20 loss=margin"
    )
    p.add_argument("--bpda", action="store_true", help="straight-through gradient through caps")
    p.add_argument("--eot", type=int, default=1, help="EOT passes per gradient (default 1)")
    add_data_options(p, n_default=N_POINTS)
    add_batch_size(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the attack's randomness (0)")
    p.add_argument("--out", metavar="DIR", help=f"folder for the adversarial examples ({ADV_FILE})")
    p.add_argument("--json", help="write the accuracies and settings here (.json; - for stdout)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.set_defaults(func=cmd_attack)


def build_attack(args: argparse.Namespace) -> tuple[Any, float, str]:
    """The protocol entry of the command line (so ``--bpda``, ``--eot`` and the threat
    model are applied as in evaluations) with its eps and norm."""
    from robustact.attacks.threat import canonical_norm
    from robustact.evaluate import ProtocolEntry

    kwargs = parse_kv(args.attack_arg, "--attack-arg")
    for key in ("eps", "norm", "eot"):
        if key in kwargs:
            raise CLIError(f"--attack-arg {key}=...: use --{key} instead")
    if args.eot < 1:
        raise CLIError(f"--eot must be >= 1, got {args.eot}")
    entry = ProtocolEntry(args.attack, args.attack, kwargs, bpda=args.bpda, eot=args.eot)
    return entry, check_eps(args.eps), canonical_norm(args.norm)


def run_attack(
    model: Any, entry: Any, x: Any, y: Any, *, eps: float, norm: str, batch_size: int, seed: int
) -> tuple[Any, Any, Any, Any]:
    """``(x_adv (N, ...), pred_clean (N,), pred_adv (N,), attack)``: the entry run batch by
    batch through the protocol runner in a seeded, forked RNG (the caller's random state is
    untouched)."""
    import torch

    from robustact.evaluate.runner import run_entry

    if batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {batch_size}")
    devices = [x.device] if x.device.type == "cuda" else []
    advs, pc, pa, attack = [], [], [], None
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for i in range(0, len(y), batch_size):
            bx, by = x[i : i + batch_size], y[i : i + batch_size]
            adv, attack = run_entry(model, bx, by, entry, eps, norm)
            with torch.no_grad():
                pc.append(model(bx).argmax(1))
                pa.append(model(adv).argmax(1))
            advs.append(adv.detach())
    return torch.cat(advs), torch.cat(pc), torch.cat(pa), attack


def cmd_attack(args: argparse.Namespace) -> int:
    from safetensors.torch import save as st_save

    from robustact.surgery import is_stochastic
    from robustact.train.checkpoint import atomic_write

    device = resolve_device(args.device)
    model, meta, ckpt = model_from_args(args, device)
    entry, eps, norm = build_attack(args)
    entry.build(model, eps, norm)  # bad attack arguments fail before the data is loaded
    x, y, data_desc = eval_data(args, meta, device)
    out = None if args.out is None else Path(args.out) / ADV_FILE
    t0 = time.perf_counter()
    x_adv, pred_c, pred_a, attack = run_attack(
        model, entry, x, y, eps=eps, norm=norm, batch_size=args.batch_size, seed=args.seed
    )
    seconds = time.perf_counter() - t0
    yc = y.to(pred_c.device)
    clean_ok, adv_ok = pred_c == yc, pred_a == yc
    n = len(y)
    clean = float(clean_ok.float().mean())
    robust = float((clean_ok & adv_ok).float().mean())
    n_ok = int(clean_ok.sum())
    success = float((clean_ok & ~adv_ok).sum()) / n_ok if n_ok else None
    delta = (x_adv - x).flatten(1)
    settings = {
        "checkpoint": str(ckpt), "data": data_desc, "attack": attack.describe(),
        "eps": args.eps, "norm": norm, "bpda": args.bpda, "eot": args.eot, "seed": args.seed,
    }  # fmt: skip
    result = {
        "clean_accuracy": clean, "adversarial_accuracy": robust, "success_rate": success,
        "mean_linf": float(delta.abs().amax(1).mean()), "mean_l2": float(delta.norm(dim=1).mean()),
        "n": n, "seconds": seconds, "stochastic_model": is_stochastic(model, x[:64]),
    }  # fmt: skip
    con = console(stderr=is_stdout(getattr(args, "json", None)))
    con.print(f"{args.attack} {norm} eps={args.eps:g}" + (" +BPDA" if args.bpda else "")
              + (f" EOT={args.eot}" if args.eot > 1 else "") + f" on {data_desc}")  # fmt: skip
    con.print(f"clean accuracy       {100 * clean:6.2f} %")
    con.print(f"adversarial accuracy {100 * robust:6.2f} %  (correct on x and on x_adv)")
    if success is not None:
        con.print(f"success rate         {100 * success:6.2f} %  (of the clean-correct points)")
    con.print(f"mean Linf {result['mean_linf']:.4f}, mean L2 {result['mean_l2']:.4f}, "
              f"{seconds:.1f} s")  # fmt: skip
    if result["stochastic_model"]:
        con.print("note: stochastic model; accuracies are one forward pass each")
    if out is not None:
        tensors = {
            "x_adv": x_adv.float().cpu().contiguous(),
            "y": y.cpu().contiguous(),
            "pred_clean": pred_c.cpu().contiguous(),
            "pred_adv": pred_a.cpu().contiguous(),
        }
        metadata = {"format": "robustact-adversarial", "settings": json.dumps(settings),
                    "result": json.dumps(result)}  # fmt: skip
        atomic_write(out, st_save(tensors, metadata=metadata))
        con.print(f"adversarial examples: {out}")
    if args.json:
        write_json_or_stdout(args.json, {**settings, **result})
    return 0
