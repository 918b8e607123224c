"""``robustact certify``: certified lower bounds on robust accuracy (IBP, CROWN), and the
certified side of ``robustact evaluate``'s interval ``certified <= true robust <= attacked``.

The model comes as in ``evaluate`` (a robustact checkpoint, or ``--model``/``--weights``);
it must be a feed-forward chain of the layers in ``robustact.certify.SUPPORTED``, else the
command stops with that list (exit 2).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from robustact.cli._args import eps_value, is_stdout, write_json_or_stdout
from robustact.cli._common import (
    CLIError,
    add_data_options,
    check_eps,
    console,
    eval_data,
    model_label,
    resolve_device,
)
from robustact.cli._model import add_model_options, model_from_args

__all__ = ["add_parser", "cmd_certify", "evaluate_interval"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "certify",
        help="certified robust accuracy of a feed-forward model (IBP or CROWN)",
        description="Certified lower bounds on robust accuracy: a certified point keeps its "
        "label everywhere in the eps-ball (intersected with [0, 1]), so certified accuracy "
        "<= true robust accuracy <= any attack's accuracy. Feed-forward models of Linear, "
        "Conv2d, BatchNorm (eval), Flatten, Normalize, ReLU, S-ReLU, D-ReLU and pooling.",
    )
    add_model_options(p)
    p.add_argument(
        "--eps", type=eps_value, nargs="+", required=True, help="budget(s), e.g. 0.01 0.02"
    )
    p.add_argument("--norm", default="Linf", help="Linf (default) or L2")
    p.add_argument(
        "--method", default="crown", help="crown (default; tighter) or ibp (interval bounds)"
    )
    add_data_options(p, n_default=200)
    p.add_argument("--batch-size", type=int, default=64, help="points per bound pass (64)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--json", help="write the results here (.json; - for stdout)")
    p.set_defaults(func=cmd_certify)


def _method(text: str) -> str:
    from robustact.certify import METHODS

    m = str(text).lower()
    if m not in METHODS:
        raise CLIError(f"--method must be one of {', '.join(METHODS)}, got {text!r}")
    return m


def cmd_certify(args: argparse.Namespace) -> int:
    from robustact.attacks.threat import canonical_norm
    from robustact.certify import certified_accuracy

    method = _method(args.method)
    norm = canonical_norm(args.norm)
    eps_list = [check_eps(e) for e in dict.fromkeys(args.eps)]
    if args.batch_size < 1:
        raise CLIError("--batch-size must be >= 1")
    device = resolve_device(args.device)
    model, meta, ckpt = model_from_args(args, device)
    x, y, data_desc = eval_data(args, meta, device)
    con = console(stderr=is_stdout(getattr(args, "json", None)))
    con.print(f"certifying {model_label(meta)} ({ckpt}) on {data_desc} with {method.upper()}")
    results = [
        certified_accuracy(model, x, y, eps, norm, method, batch_size=args.batch_size)
        for eps in eps_list
    ]
    from rich.table import Table

    t = Table(title=f"certified accuracy (%), {method.upper()}, {norm}")
    for col in ("eps", "clean", "certified", "ms / point"):
        t.add_column(col, justify="right")
    for r in results:
        ms = 1000 * r.seconds / max(r.n, 1)
        t.add_row(f"{r.eps:g}", f"{100 * r.clean_accuracy:.1f}",
                  f"{100 * r.certified_accuracy:.1f}", f"{ms:.2f}")  # fmt: skip
    con.print(t)
    if args.json:
        write_json_or_stdout(args.json, {
            "checkpoint": str(ckpt), "model": model_label(meta), "data": data_desc,
            "results": [r.to_dict() for r in results],
        })  # fmt: skip
    return 0


def _auto_method(model: Any, x: Any) -> str:
    """CROWN for dense chains (under a millisecond a point on the digits MLP), IBP where a
    convolution makes CROWN cost seconds a point (``robustact certify`` runs CROWN there)."""
    from robustact.certify.chain import build_chain
    from robustact.certify.ops import Conv

    return "ibp" if any(isinstance(op, Conv) for op in build_chain(model, x[:1])) else "crown"


def evaluate_interval(
    model: Any, x: Any, y: Any, evaluations: list[Any], method: str = "auto"
) -> dict[str, Any]:
    """The interval ``certified <= true robust accuracy <= attacked`` per evaluated eps.

    Args:
        model: the evaluated model; x (N, ...), y (N,): the evaluated points.
        evaluations: the suite's results (``EvalResult``: eps, norm, robust_accuracy).
        method: ``crown``, ``ibp``, ``auto`` (CROWN without convolutions, else IBP) or
            ``none``.

    Returns:
        ``{"method", "intervals": [{eps, norm, certified, attacked, attacked_by}]}``, or
        ``{"method", "unavailable": reason}`` when the model is not a certifiable chain.
    """
    from robustact.certify import certified_accuracy

    if method == "none" or not evaluations:
        return {"method": "none", "intervals": []}
    try:
        m = _auto_method(model, x) if method == "auto" else _method(method)
    except ValueError as e:  # not a feed-forward chain of supported layers
        return {"method": method, "unavailable": str(e).splitlines()[0]}
    worst: dict[tuple[float, str], tuple[float, str]] = {}
    for r in evaluations:
        key = (float(r.eps), str(r.norm))
        acc = float(r.robust_accuracy)
        if math.isfinite(acc) and (key not in worst or acc < worst[key][0]):
            worst[key] = (acc, r.protocol)
    out = []
    for (eps, norm), (acc, proto) in worst.items():
        cert = certified_accuracy(model, x, y, eps, norm, m)
        out.append({"eps": eps, "norm": norm, "certified": cert.certified_accuracy,
                    "attacked": acc, "attacked_by": proto, "n": cert.n,
                    "seconds": cert.seconds})  # fmt: skip
    return {"method": m, "intervals": out}


def print_interval(con: Any, interval: dict[str, Any]) -> None:
    """One line per eps: ``certified X % <= true robust accuracy <= Y % (attacked by P)``."""
    if "unavailable" in interval:
        con.print(f"certified bound: not available ({interval['unavailable']})")
        return
    for iv in interval["intervals"]:
        con.print(
            f"{iv['norm']} eps={iv['eps']:g}: certified ({interval['method'].upper()}) "
            f"{100 * iv['certified']:.1f} % <= true robust accuracy <= "
            f"{100 * iv['attacked']:.1f} % attacked ({iv['attacked_by']})"
        )
