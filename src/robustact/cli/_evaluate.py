"""``robustact evaluate`` (protocols side by side, optional masking verdict) and
``robustact diagnose`` (masking report and the papers' diagnostics, with plots)."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from robustact.cli._args import (
    N_POINTS,
    add_batch_size,
    add_quick,
    eps_value,
    is_stdout,
    protocol_name,
    write_json_or_stdout,
)
from robustact.cli._certify import evaluate_interval, print_interval
from robustact.cli._common import (
    CLIError,
    add_data_options,
    check_eps,
    console,
    eval_data,
    model_label,
    resolve_device,
    write_json,
)
from robustact.cli._model import add_model_options, model_from_args

__all__ = ["add_parsers", "cmd_diagnose", "cmd_evaluate", "side_by_side"]


def _threat_options(p: argparse.ArgumentParser, multi: bool) -> None:
    if multi:
        p.add_argument(
            "--eps", type=eps_value, nargs="+", required=True, help="budget(s), e.g. 0.05 0.1"
        )
    else:
        p.add_argument("--eps", type=eps_value, required=True, help="perturbation budget, e.g. 0.1")
    p.add_argument("--norm", default="Linf", help="Linf (default) or L2")
    add_quick(p, "fewer steps/queries (labelled as quick)")
    p.add_argument("--seed", type=int, default=0, help="seed of every attack (default 0)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a model under the paper and adaptive protocols, side by side",
        description="Evaluate a model under one or more protocols (default: the paper "
        "protocol, i.e. the source papers' attacks, and the adaptive one) at each --eps, "
        "print them side by side with each "
        "protocol's per-attack table, and optionally the gradient-masking verdict.",
    )
    add_model_options(p)
    p.add_argument(
        "--protocol",
        nargs="+",
        type=protocol_name,
        default=["seed", "adaptive"],
        help="protocols (robustact list protocols; 'paper' is the source papers' protocol, "
        "stored as 'seed'; default: paper adaptive)",
    )
    _threat_options(p, multi=True)
    add_data_options(p, n_default=N_POINTS)
    add_batch_size(p)
    p.add_argument("--masking", action="store_true", help="add the gradient-masking report")
    p.add_argument("--masking-n", type=int, default=200, help="points for the masking report (200)")
    p.add_argument("--brief", action="store_true", help="only the side-by-side summary")
    p.add_argument("--json", help="write every result here (.json; - for stdout)")
    p.add_argument(
        "--certify",
        default="auto",
        choices=("auto", "crown", "ibp", "none"),
        help="certified lower bound beside the attacked accuracy (auto: CROWN without "
        "convolutions, IBP with them; only for feed-forward models robustact can bound)",
    )
    p.add_argument(
        "--robustbench",
        metavar="FILE",
        help="also write a RobustBench-style model entry (.json) from the autoattack run "
        "(needs --protocol autoattack or autoattack-rand, without --quick)",
    )
    p.set_defaults(func=cmd_evaluate)

    d = sub.add_parser(
        "diagnose",
        help="masking report and diagnostics of a model (PNG plots + JSON)",
        description="Gradient-masking report (verdict and every check with its value, threshold "
        "and citation) and the papers' diagnostics: layer-wise growth of an adversarial "
        "perturbation, zero-gradient distance, negative-unit ratio, cap summary and the "
        "sensitivity map. Writes diagnose.json and PNG plots to --out.",
    )
    add_model_options(d)
    _threat_options(d, multi=False)
    add_data_options(d, n_default=N_POINTS)
    add_batch_size(d)
    d.add_argument("--out", required=True, help="folder for diagnose.json and the PNG plots")
    d.add_argument("--zg-steps", type=int, help="zero-gradient PGD steps (100; --quick 20)")
    d.add_argument("--zg-step-size", type=float, default=0.01, help="its step size (0.01)")
    d.set_defaults(func=cmd_diagnose)


# --------------------------------------------------------------------------- evaluate


def _pct(v: float | None) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{100 * v:.2f}"


def side_by_side(results: list[Any], masking: dict[float, Any]) -> Any:
    """A rich table with one column per (protocol, eps) evaluation: clean and robust
    accuracy, the drop (clean - robust), weakest attack, time; the masking verdict per eps
    when given."""
    from rich.table import Table

    from robustact.evaluate._notebook import display_protocol

    t = Table(title="robust accuracy (%) by protocol: paper protocol vs adaptive protocol")
    t.add_column("", justify="left")
    for r in results:
        name = display_protocol(r.protocol) + (" (quick)" if r.fast else "")
        t.add_column(f"{name}\n{r.norm} eps={r.eps:g}",
                     justify="right")  # fmt: skip
    rows: list[tuple[str, list[str]]] = [
        ("clean accuracy", [_pct(r.clean_accuracy) for r in results]),
        ("robust accuracy (worst case)", [_pct(r.robust_accuracy) for r in results]),
        ("95% CI", [f"[{_pct(r.robust_ci[0])}, {_pct(r.robust_ci[1])}]" for r in results]),
        ("drop: clean - robust (pp)", [_pct(r.robustness_gap) for r in results]),
        ("strongest attack", [_strongest(r) for r in results]),
        ("seconds", [f"{r.seconds:.1f}" for r in results]),
    ]
    if masking:
        rows.append(("masking verdict", [_verdict(masking.get(r.eps)) for r in results]))
    for label, vals in rows:
        t.add_row(label, *vals)
    return t


def _strongest(r: Any) -> str:
    """Individual protocols: the attack with the lowest accuracy; cascades: the attack that
    broke the most points (largest drop of the cumulative accuracy)."""
    scored = [a for a in r.attacks if not a.describe.get("own_threat")]
    if not r.cascade:
        scored = [a for a in scored if a.accuracy is not None]
        if not scored:
            return "—"
        best = min(scored, key=lambda a: a.accuracy)
        return f"{best.label} ({_pct(best.accuracy)})"
    drops, prev = [], r.clean_accuracy
    for a in scored:
        if a.cumulative_accuracy is not None:
            drops.append((prev - a.cumulative_accuracy, a.label))
            prev = a.cumulative_accuracy
    if not drops or max(drops)[0] <= 0:
        return "—"
    drop, label = max(drops)
    return f"{label} (-{_pct(drop)} pp)"


def _verdict(rep: Any) -> str:
    if rep is None:
        return "—"
    return rep.verdict.upper() + (f" ({', '.join(rep.flagged)})" if rep.flagged else "")


def _json_rows(suite: Any, meta: Any, data_desc: str) -> list[dict[str, Any]]:
    """The suite's typed rows as JSON records, with the model, data and seed they share."""
    common = {"model": model_label(meta), "data": data_desc, "seed": suite.seed}
    return [{**common, **r.to_dict()} for r in suite.rows]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from robustact.attacks.threat import canonical_norm
    from robustact.evaluate import get_protocol
    from robustact.evaluate.suite import evaluate_suite

    device = resolve_device(args.device)
    norm = canonical_norm(args.norm)
    eps_list = [check_eps(e) for e in dict.fromkeys(args.eps)]
    for name in args.protocol:
        get_protocol(name, eps=eps_list[0], norm=norm, fast=args.fast)  # unknown names fail now
    _check_robustbench(args)
    if args.batch_size < 1 or args.masking_n < 1:
        raise CLIError("--batch-size and --masking-n must be >= 1")
    model, meta, ckpt = model_from_args(args, device)
    x, y, data_desc = eval_data(args, meta, device)
    con = console(stderr=is_stdout(getattr(args, "json", None)))
    con.print(f"evaluating {model_label(meta)} ({ckpt}) on {data_desc}")
    suite = evaluate_suite(
        model, x, y, protocols=list(dict.fromkeys(args.protocol)), eps=eps_list, norm=norm,
        fast=args.fast, seed=args.seed, batch_size=args.batch_size, masking=args.masking,
        masking_n=args.masking_n,
    )  # fmt: skip
    masking = suite.masking
    con.print(side_by_side(suite.evaluations, masking))
    if not args.brief:
        for r in suite.evaluations:
            con.print(r.to_table())
        for rep in masking.values():
            con.print(rep.to_table())
    for eps, rep in masking.items():
        con.print(f"masking verdict at eps={eps:g}: {rep.verdict.upper()} ({rep.reason})")
    interval = evaluate_interval(model, x, y, suite.evaluations, args.certify)
    print_interval(con, interval)
    if args.robustbench:
        _write_robustbench(args, suite, meta, data_desc)
    if args.json:
        d = suite.to_dict()
        write_json_or_stdout(args.json, {
            "checkpoint": str(ckpt), "data": data_desc, "evaluations": d["evaluations"],
            "masking": d["masking"], "rows": _json_rows(suite, meta, data_desc),
            "certified": interval,
        })  # fmt: skip
    return 0


def _check_robustbench(args: argparse.Namespace) -> None:
    if args.robustbench and not {"autoattack", "autoattack-rand"} & set(args.protocol):
        raise CLIError("--robustbench needs --protocol autoattack (or autoattack-rand)")
    if args.robustbench and args.fast:
        raise CLIError("--robustbench needs the full AutoAttack budget: leave out --quick")


def _write_robustbench(args: argparse.Namespace, suite: Any, meta: Any, data_desc: str) -> None:
    """One RobustBench entry per autoattack eps, from the suite's autoattack results."""
    from robustact.evaluate.robustbench import robustbench_entry

    entries = [
        robustbench_entry(r, name=model_label(meta), dataset=data_desc.split(" ", 1)[0])
        for r in suite.evaluations
        if r.protocol in ("autoattack", "autoattack-rand")
    ]
    write_json_or_stdout(args.robustbench, entries[0] if len(entries) == 1 else entries)


# --------------------------------------------------------------------------- diagnose


def _save(fig: Any, path: Path) -> str:
    from robustact.report.plots import figure_to_png_bytes
    from robustact.train.checkpoint import atomic_write

    atomic_write(path, figure_to_png_bytes(fig))
    return path.name


def _plots(diag: dict[str, Any], x: Any, eps: float, norm: str, out: Path) -> dict[str, str]:
    """PNG plots of the diagnose run's diagnostics (layer growth, zero-gradient
    distances, the sensitivity map of one point beside its image, as Fig 4.12)."""
    from robustact.report.plots import (
        plot_layer_growth,
        plot_sensitivity_map,
        plot_zero_gradient_distance,
    )

    key = "linf" if norm == "Linf" else "l2"
    growth = {label: diag["layer_growth"][f"{label}@{eps:g}"]
              for label in ("layer_growth", "layer_growth_adaptive")}  # fmt: skip
    names = [d["name"] for d in growth["layer_growth_adaptive"]]
    curves = {("PGD" if k == "layer_growth" else "adaptive PGD"): {key: [d[key] for d in v]}
              for k, v in growth.items()}  # fmt: skip
    plots = {"layer_growth": _save(plot_layer_growth(curves, kind="line", layer_names=names),
                                   out / "layer_growth.png")}  # fmt: skip
    if diag["zero_gradient"]["distances"]:
        fig = plot_zero_gradient_distance({"model": diag["zero_gradient"]["distances"]},
                                          kind="hist")  # fmt: skip
        plots["zero_gradient"] = _save(fig, out / "zero_gradient.png")
    sm = diag["sensitivity_map"]["sensitivity_map+bpda"]
    fig = plot_sensitivity_map(sm["example_map"], sm["example_score"],
                               image=x[sm["example_index"]])  # fmt: skip
    plots["sensitivity_map"] = _save(fig, out / "sensitivity_map.png")
    return plots


def cmd_diagnose(args: argparse.Namespace) -> int:
    from robustact.attacks.threat import canonical_norm
    from robustact.evaluate.suite import evaluate_suite
    from robustact.surgery import cap_summary, find_caps

    device = resolve_device(args.device)
    norm = canonical_norm(args.norm)
    eps = check_eps(args.eps)
    steps = args.zg_steps if args.zg_steps is not None else (20 if args.fast else 100)
    if steps < 1 or not args.zg_step_size > 0:
        raise CLIError("--zg-steps must be >= 1 and --zg-step-size > 0")
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file; give a folder")
    model, meta, ckpt = model_from_args(args, device)
    x, y, data_desc = eval_data(args, meta, device)
    con = console(stderr=is_stdout(getattr(args, "json", None)))
    con.print(f"diagnosing {model_label(meta)} ({ckpt}) on {data_desc} ({norm} eps={eps:g})")
    n = len(y)
    diagnostics = [
        {"name": "layer_growth", "n": n, "steps": 20 if args.fast else 100},
        {"name": "zero_gradient", "n": n, "steps": steps, "step_size": args.zg_step_size,
         "norm": norm.lower()},
        {"name": "sensitivity_map", "n": n}, {"name": "negative_unit_ratio", "n": n},
    ]  # fmt: skip
    suite = evaluate_suite(model, x, y, protocols=(), eps=[eps], norm=norm, fast=args.fast,
                           seed=args.seed, batch_size=args.batch_size, masking=True, masking_n=n,
                           diagnostics=diagnostics)  # fmt: skip
    rep = suite.masking[eps]
    con.print(rep.to_table())
    con.print(f"masking verdict: {rep.verdict.upper()} ({rep.reason})")
    diag = suite.diagnostics
    caps = cap_summary(model, x) if find_caps(model) else []
    plots = _plots(diag, x, eps, norm, out)
    _print_diagnostics(con, diag, eps, caps)
    report = {
        "checkpoint": str(ckpt), "data": data_desc, "eps": eps, "norm": norm, "fast": args.fast,
        "masking": rep.to_dict(), "diagnostics": diag, "caps": [asdict(c) for c in caps],
        "rows": _json_rows(suite, meta, data_desc), "plots": plots,
    }  # fmt: skip
    path = write_json(out / "diagnose.json", report)
    con.print(f"wrote {path} and {len(plots)} plots to {out}")
    return 0


def _table(title: str, cols: list[str], rows: list[list[str]], left: int = 1) -> Any:
    from rich.table import Table

    t = Table(title=title)
    for i, col in enumerate(cols):
        t.add_column(col, justify="left" if i < left else "right")
    for r in rows:
        t.add_row(*r)
    return t


def _print_diagnostics(con: Any, diag: dict[str, Any], eps: float, caps: list[Any]) -> None:
    layers = diag["layer_growth"][f"layer_growth_adaptive@{eps:g}"]
    con.print(_table("perturbation growth through the layers (clean vs adaptive PGD)",
                     ["layer", "units", "mean Linf", "mean L2"],
                     [[d["name"], str(d["units"]), f"{d['linf']:.4g}", f"{d['l2']:.4g}"]
                      for d in layers]))  # fmt: skip
    negative = diag["negative_unit_ratio"]
    if negative:
        con.print(_table("negative-unit ratio before / after each activation",
                         ["activation", "type", "pre", "post"],
                         [[r["name"], r["kind"], f"{r['pre']:.3f}", f"{r['post']:.3f}"]
                          for r in negative], left=2))  # fmt: skip
    if caps:
        con.print(_table("caps (S-ReLU / D-ReLU)",
                         ["layer", "kind", "units", "cap min", "cap mean", "cap max", "saturated"],
                         [[c.name, c.kind, str(c.units), f"{c.cap_min:.4g}", f"{c.cap_mean:.4g}",
                           f"{c.cap_max:.4g}", f"{100 * c.saturated:.1f} %"] for c in caps],
                         left=2))  # fmt: skip
    zg = diag["zero_gradient"]
    dist = "none found" if zg["mean_distance"] is None else f"{zg['mean_distance']:.4g}"
    con.print(f"zero-gradient distance (L2, mean where found): {dist}; found for "
              f"{100 * zg['found_fraction']:.1f} % of the points")  # fmt: skip
    score = diag["sensitivity_map"]["sensitivity_map+bpda"]["score_mean"]
    con.print(f"sensitivity map score (mean over points): {score:.4g}")
