"""Training-loop benchmarks: loop overhead, adversarial-epoch cost, D-ReLU cap learning rate.

Usage:
    .venv/bin/python benchmarks/training.py [--repeats 9] [--out benchmarks/results/training.json]

1. ``natural``: per-epoch CPU time of a 2-epoch ``robustact.train.fit`` call (Natural
   objective, progress off and on; setup included) against a bare PyTorch loop (same model,
   data, optimiser, batch order; it also keeps a running loss and accuracy, as any real loop
   does). Target: fit / bare <= 1.05.
2. ``pgd``: one PGD-k adversarial epoch (``pgd_at``) against (k + 1) x the natural epoch.
   Target: ratio <= 1.05.
3. ``cap_lr``: how far D-ReLU caps (initialised at 100, dissertation eq. 5.1 with lambda = 1)
   move under Adam at several cap learning rates on digits, to choose DEFAULT_CAP_LR.

Timings use one torch thread and the process CPU time (``time.process_time``), which other
processes on a shared machine disturb far less than wall time (also recorded). Contenders are
interleaved after one warm-up call each; the median and minimum of ``repeats`` runs are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustact.activations import DReLU
from robustact.train import Natural, TrainConfig, fit, get_objective, pgd_at
from robustact.train._batches import epoch_seed

ROOT = Path(__file__).resolve().parents[1]


def load_data() -> tuple[str, torch.Tensor, torch.Tensor]:
    """MNIST test split (10k, 28x28) from ../shared/datasets if present, else digits."""
    try:
        from robustact.data import load_dataset

        ds = load_dataset("mnist", root=ROOT.parent / "shared" / "datasets", split="test")
        x, y = ds.tensors()
        return "mnist-t10k", x, y
    except (ImportError, OSError, ValueError):
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
        return "digits", x, torch.tensor(d.target, dtype=torch.int64)


def make_model(in_features: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_features, 392), nn.ReLU(), nn.Linear(392, 196), nn.ReLU(),
        nn.Linear(196, 10),
    )  # fmt: skip


def bare_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int, seed: int) -> float:
    """The loop a user writes by hand; returns seconds."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.process_time()
    model.train()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    loss_sum = torch.zeros(())
    correct = torch.zeros(())
    for i in range(0, len(y), bs):
        idx = order[i : i + bs]
        xb, yb = x[idx], y[idx]
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(yb)
        correct += (logits.detach().argmax(1) == yb).sum()
    _ = float(loss_sum) / len(y), float(correct) / len(y)
    return time.process_time() - t0


def fit_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int, obj: Any,
              progress: bool = False, epochs: int = 1) -> float:  # fmt: skip
    """CPU seconds per epoch of a whole ``fit`` call (setup and bookkeeping included)."""
    t0 = time.process_time()
    fit(model, obj, (x, y), TrainConfig(epochs=epochs, batch_size=bs, progress=progress))
    return (time.process_time() - t0) / epochs


def bare_epochs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int, epochs: int) -> float:
    """CPU seconds per epoch of the bare loop over ``epochs`` epochs."""
    return sum(bare_epoch(model, x, y, bs, epoch_seed(0, e)) for e in range(epochs)) / epochs


def timed(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, dict[str, float]]:
    runs: dict[str, list[float]] = {k: [] for k in fns}
    walls: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f()  # warm-up: first-call allocations, lazy imports
    for _ in range(repeats):
        for k, f in fns.items():  # interleaved, so slow phases of the machine hit all alike
            w0 = time.perf_counter()
            runs[k].append(f())
            walls[k].append(time.perf_counter() - w0)
    return {
        k: {"median_s": statistics.median(v), "min_s": min(v), "runs_cpu_s": v,
            "wall_median_s": statistics.median(walls[k])}
        for k, v in runs.items()
    }  # fmt: skip


def bench_natural(x: torch.Tensor, y: torch.Tensor, repeats: int) -> dict[str, Any]:
    bs, d = 128, x[0].numel()
    fns = {  # each: CPU seconds per epoch of a 2-epoch run
        "bare": lambda: bare_epochs(make_model(d), x, y, bs, 2),
        "fit": lambda: fit_epoch(make_model(d), x, y, bs, Natural(), epochs=2),
        "fit_progress": lambda: fit_epoch(make_model(d), x, y, bs, Natural(), True, 2),
    }
    t = timed(fns, repeats)
    for k in ("fit", "fit_progress"):
        t[k]["ratio_vs_bare_median"] = t[k]["median_s"] / t["bare"]["median_s"]
        t[k]["ratio_vs_bare_min"] = t[k]["min_s"] / t["bare"]["min_s"]
    t["target"] = "fit / bare <= 1.05"  # type: ignore[assignment]
    return {"batch_size": bs, "samples": len(y), **t}


def bench_pgd(x: torch.Tensor, y: torch.Tensor, repeats: int, ks: list[int]) -> dict[str, Any]:
    bs, d = 128, x[0].numel()
    n = len(y) // 4  # a quarter of the data keeps PGD-7 epochs short
    xs, ys = x[:n], y[:n]
    fns: dict[str, Callable[[], float]] = {
        "natural": lambda: fit_epoch(make_model(d), xs, ys, bs, Natural())
    }
    for k in ks:
        fns[f"pgd{k}"] = lambda k=k: fit_epoch(make_model(d), xs, ys, bs, pgd_at(0.1, steps=k))  # type: ignore[misc]
    t = timed(fns, repeats)
    out: dict[str, Any] = {"batch_size": bs, "samples": n, **t}
    for k in ks:
        r = t[f"pgd{k}"]
        r["ratio_vs_k+1_natural_median"] = r["median_s"] / ((k + 1) * t["natural"]["median_s"])
        r["ratio_vs_k+1_natural_min"] = r["min_s"] / ((k + 1) * t["natural"]["min_s"])
    out["target"] = "pgd_k / ((k + 1) * natural) <= 1.05"
    return out


def bench_cap_lr(epochs: int, cap_lrs: list[float]) -> dict[str, Any]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target, dtype=torch.int64)
    xt, yt, xv, yv = x[:1400], y[:1400], x[1400:], y[1400:]
    out: dict[str, Any] = {
        "setup": "digits 1400 train / 397 val, MLP 64-64-ReLU-32-DReLU(init 100)-10, Adam weights "
        f"lr 1e-3, batch 64 ({-(-1400 // 64)} steps/epoch), objective drelu_penalty(lam=1), "
        f"{epochs} epochs",
        "runs": {},
    }
    for cap_lr in cap_lrs:
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), DReLU(32, 100.0),
            nn.Linear(32, 10),
        )  # fmt: skip
        cfg = TrainConfig(epochs=epochs, batch_size=64, lr=1e-3, cap_lr=cap_lr, progress=False)
        h = fit(model, get_objective("drelu_penalty", lam=1.0), (xt, yt), cfg, val_data=(xv, yv))
        means = [r["caps"]["4"]["mean"] for r in h.records]
        tail = means[-5:]
        out["runs"][str(cap_lr)] = {
            "cap_mean_per_epoch": [round(m, 4) for m in means],
            "moved_in_run": 100.0 - means[-1],
            "moved_per_step_first_epoch": (100.0 - means[0]) / -(-1400 // 64),
            "first_epoch_cap_mean_below_10": next(
                (i for i, m in enumerate(means) if m < 10.0), None
            ),
            "last5_epoch_spread": max(tail) - min(tail),
            "final_cap_min_max": [h.last["caps"]["4"]["min"], h.last["caps"]["4"]["max"]],
            "final_val_acc": h.last["val_acc"],
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--cap-epochs", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "training.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    name, x, y = load_data()
    result = {
        "command": "python benchmarks/training.py " + " ".join(sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "device": "cpu",
            "note": "2 CPU cores shared with other processes; times are process CPU "
            "seconds with 1 torch thread (wall medians recorded too)",
        },
        "data": {"name": name, "shape": list(x.shape)},
        "natural": bench_natural(x, y, args.repeats),
        "pgd": bench_pgd(x, y, args.repeats, [3, 7]),
        "cap_lr": bench_cap_lr(args.cap_epochs, [1e-3, 1e-2, 0.1, 1.0]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    nat, pgd = result["natural"], result["pgd"]
    print(f"natural fit/bare: median {nat['fit']['ratio_vs_bare_median']:.3f}, "
          f"min {nat['fit']['ratio_vs_bare_min']:.3f}; with progress "
          f"{nat['fit_progress']['ratio_vs_bare_median']:.3f}")  # fmt: skip
    for k in (3, 7):
        r = pgd[f"pgd{k}"]
        print(f"pgd{k} / ((k+1) natural): median {r['ratio_vs_k+1_natural_median']:.3f}, "
              f"min {r['ratio_vs_k+1_natural_min']:.3f}")  # fmt: skip
    for lr, r in result["cap_lr"]["runs"].items():
        moved, spread = r["moved_in_run"], r["last5_epoch_spread"]
        print(f"cap_lr {lr}: caps moved {moved:.2f}, spread(last 5) {spread:.3f}, "
              f"val acc {r['final_val_acc']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
