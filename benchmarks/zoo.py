"""Defence-zoo benchmark: robustact's adaptive protocol vs hand attacks that know each defence.

For every model of ``tests/defence_zoo.py`` (a user's own clamp cap, input noise, input
rounding, k-WTA, saturated logits, robustact's S-ReLU/D-ReLU/BReLU, ReLU, PGD-AT): train
it, attack it by hand (PGD with margin and CE losses on the plain gradient and on the
defence's own surrogate: straight-through cap, identity through rounding, EOT 20 for
noise, expectation for BReLU, unscaled logits), run ``evaluate(protocol="adaptive")`` and
``masking_report``. Target: adaptive <= best hand + 1 pp; masking defences flagged,
ReLU and PGD-AT ``no evidence``.

Run by hand: ``PYTHONPATH=src .venv/bin/python benchmarks/zoo.py [--mnist] [--full]``.
Writes ``benchmarks/results/zoo.json`` (machine, load, command, one row per model).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
OUT = ROOT / "benchmarks" / "results" / "zoo.json"


def _digits() -> tuple[torch.Tensor, ...]:
    from conftest import _digits_tensors

    return _digits_tensors()


def _mnist(n_test: int) -> tuple[torch.Tensor, ...] | None:
    shared = ROOT.parent / "shared" / "datasets"
    if not (shared / "MNIST" / "raw").is_dir():
        return None
    from robustact.data import load_dataset

    xtr, ytr = load_dataset("mnist-t10k", root=shared, split="train").tensors()
    xte, yte = load_dataset("mnist-t10k", root=shared, split="test").tensors()
    return xtr, ytr, xte[:n_test], yte[:n_test]


def _run(dataset: str, data: tuple[torch.Tensor, ...], args: argparse.Namespace) -> list[dict]:
    import defence_zoo as Z

    d = int(data[0][0].numel())
    rows = []
    for m in Z.zoo():
        if args.only and m.name not in args.only.split(","):
            continue
        member = m
        if d != 64:  # same defences, an MLP sized for the input
            build = m.build

            def sized(build=build) -> torch.nn.Sequential:  # type: ignore[no-untyped-def]
                net = build()
                layers = list(net)
                for i, layer in enumerate(layers):
                    if isinstance(layer, torch.nn.Linear) and layer.in_features == 64:
                        layers[i] = torch.nn.Linear(d, 64)
                        break
                return torch.nn.Sequential(*layers)

            member = Z.Member(**{**m.__dict__, "build": sized})
        t0 = time.perf_counter()
        row = Z.run_member(
            member,
            (data[0], data[1], data[2], data[3]),
            eps=args.eps,
            epochs=args.epochs if d == 64 else max(1, args.epochs // 4),
            steps=args.steps,
            restarts=args.restarts,
            fast=not args.full,
        )
        row.update(dataset=dataset, n=int(data[2].shape[0]), seconds=time.perf_counter() - t0)
        # the runner's counting rule (one pass per attack) on both sides; for random models
        # also the gap in expected correctness (50 passes per point)
        # deterministic models: one pass per decision on both sides; random ones: both
        # sides judged by the vote rule (the label wins the plurality of 50 passes), which
        # is what evaluate reports for them
        hand = float(row["hand_vote" if m.stochastic else "hand_single"])  # type: ignore[arg-type]
        ours = float(row["adaptive"])  # type: ignore[arg-type]
        row["gap_to_hand_pp"] = 100 * (ours - hand)
        row["within_1pp"] = ours <= hand + 0.01
        if m.stochastic:
            exp_gap = float(row["adaptive_expected"]) - float(row["hand_expected"])  # type: ignore[arg-type]
            row["expected_gap_pp"] = 100 * exp_gap
        want = ("masked", "suspect") if m.masking else ("no evidence",)
        row["verdict_ok"] = row["verdict"] in want
        print(
            f"{dataset:10s} {m.name:17s} clean {row['clean']:.3f} hand {hand:.3f} "
            f"(expected {row['hand_expected']:.3f}) adaptive {ours:.3f} "
            f"(each attack on all points: vote {row['adaptive_vote']:.3f}, "
            f"expected {row['adaptive_expected']:.3f}) "
            f"{row['verdict']:11s} {row['seconds']:.0f}s",
            flush=True,
        )
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--full", action="store_true", help="full (not fast) protocols")
    p.add_argument("--mnist", type=int, default=0, help="also mnist-t10k with this many points")
    p.add_argument("--only", default="", help="comma-separated zoo names")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    load = os.getloadavg()
    rows = _run("digits", _digits(), args)
    if args.mnist:
        mn = _mnist(args.mnist)
        if mn is None:
            print("mnist-t10k not found under ../shared/datasets: skipped")
        else:
            rows += _run("mnist-t10k", mn, args)
    result = {
        "command": "PYTHONPATH=src python benchmarks/zoo.py " + " ".join(sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "loadavg_start": load,
            "loadavg_end": os.getloadavg(),
        },
        "settings": vars(args),
        "seconds": time.perf_counter() - t0,
        "all_within_1pp": all(r["within_1pp"] for r in rows),
        "all_verdicts_ok": all(r["verdict_ok"] for r in rows),
        "rows": rows,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {OUT} in {result['seconds']:.0f}s")


if __name__ == "__main__":
    main()
