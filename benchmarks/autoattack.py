"""Real AutoAttack benchmark: robustact's FAB-T and ``autoattack`` against the official code.

On the same models (a natural and a PGD-5 adversarially trained MLP 784-128-10 on the
mnist-t10k split, the oracle tests' recipe) and the same points, side by side in one run:

(a) FAB-T (9 targets, 100 steps, one run each, Linf eps 0.1) alone on every point:
    robustact's ``FAB(targeted=True)`` vs pyautoattack's ``FABAttack_PT``; time ratio
    (target <= 0.8) and robust accuracy (must be equal: both are deterministic).
(b) The full standard AutoAttack: ``evaluate(protocol="autoattack")`` vs
    ``AutoAttack(version='standard').run_standard_evaluation``; robust accuracy
    (target: within 0.5 pp) and time ratio.

Ours and the official run alternate, one after the other, on one torch thread, so the
machine's load hits both alike; the load average is recorded at start and end.

Run by hand: ``ROBUSTACT_DATA=<dir holding MNIST/> python benchmarks/autoattack.py
[--points N]``. Writes ``benchmarks/results/autoattack.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustact.attacks import FAB, PGD
from robustact.data import load_dataset
from robustact.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "autoattack.json"
EPS = 0.1


def train(xtr: Tensor, ytr: Tensor, adversarial: bool) -> nn.Module:
    """MLP 784-128-10, 4 epochs of Adam (PGD-5 at eps 0.1 when adversarial)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    pgd = PGD(eps=EPS, steps=5, step_size=EPS / 2, random_start=True, seed=0)
    for _ in range(4):
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr), 64):
            xb, yb = xtr[perm[i : i + 64]], ytr[perm[i : i + 64]]
            if adversarial:
                xb = pgd(net, xb, yb)
                net.train()
            opt.zero_grad()
            nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def robust(model: nn.Module, x_adv: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return 100 * float((model(x_adv).argmax(1) == y).float().mean())


def fab_t(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Any]:
    from pyautoattack.fab_pt import FABAttack_PT

    t0 = time.perf_counter()
    ours = FAB(eps=EPS, targeted=True, n_target_classes=9, steps=100)(model, x, y)
    t_ours = time.perf_counter() - t0
    ref = FABAttack_PT(model, eps=EPS, targeted=True, n_target_classes=9, n_restarts=1)
    t0 = time.perf_counter()
    x_ref = ref.perturb(x, y)
    t_ref = time.perf_counter() - t0
    return {
        "ours_acc": robust(model, ours, y),
        "official_acc": robust(model, x_ref, y),
        "ours_s": round(t_ours, 2),
        "official_s": round(t_ref, 2),
        "time_ratio": round(t_ours / t_ref, 3),
    }


def autoattack(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Any]:
    from pyautoattack import AutoAttack

    t0 = time.perf_counter()
    res = evaluate(model, x, y, protocol="autoattack", eps=EPS, seed=0, batch_size=len(y))
    t_ours = time.perf_counter() - t0
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    aa = AutoAttack(model, eps=EPS, norm="Linf", version="standard", seed=0)
    t0 = time.perf_counter()
    x_ref, _ = aa.run_standard_evaluation(x, y, batch_size=len(y))
    t_ref = time.perf_counter() - t0
    return {
        "clean_acc": round(100 * res.clean_accuracy, 2),
        "ours_acc": round(100 * res.robust_accuracy, 2),
        "official_acc": robust(model, x_ref, y),
        "ours_per_attack_s": {a.label: round(a.seconds, 2) for a in res.attacks},
        "ours_s": round(t_ours, 2),
        "official_s": round(t_ref, 2),
        "time_ratio": round(t_ours / t_ref, 3),
    }


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
        "load_avg_at_start": [round(v, 2) for v in os.getloadavg()],
    }


def run_models(
    measure: Callable[[nn.Module, Tensor, Tensor], dict[str, Any]], out: Path, doc: str,
    argv: list[str] | None = None, command_prefix: tuple[str, ...] = (),
) -> dict[str, Any]:  # fmt: skip
    """The shared benchmark run: train the natural and the PGD-5 MLP on mnist-t10k, call
    ``measure(model, x, y)`` on the first ``--points`` test points of each, and write the
    JSON (command, machine and load at start and end, the per-model entries) to ``--out``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--out", type=Path, default=out)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    xtr, ytr = load_dataset("mnist-t10k", split="train").tensors()
    xte, yte = load_dataset("mnist-t10k", split="test").tensors()
    x, y = xte[: args.points], yte[: args.points]
    result: dict[str, Any] = {
        "command": " ".join([*command_prefix, Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "points": args.points,
        "eps": EPS,
        "norm": "Linf",
        "models": {},
    }
    for name, adversarial in (("natural", False), ("pgd_at", True)):
        model = train(xtr, ytr, adversarial)
        result["models"][name] = entry = measure(model, x, y)
        print(name, json.dumps(entry), flush=True)
    result["machine"]["load_avg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    def measure(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Any]:
        return {"fab_t": fab_t(model, x, y), "autoattack": autoattack(model, x, y)}

    return run_models(measure, OUT, __doc__ or "", argv)


if __name__ == "__main__":
    main()
