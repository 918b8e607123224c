"""Attack-engine benchmark: loop overhead, and speed/accuracy against torchattacks and AutoAttack.

(a) PGD-k time / (k x bare forward+backward time) on an MLP and a CNN, with every point
    kept active (labels = the model's own predictions, tiny eps), so the ratio measures the
    loop's overhead alone; target <= 1.05. Also reported with a realistic eps, where fooled
    points leave the active set (the ratio then drops below 1).
(b) Time and robust accuracy on the same trained models and points:
    ours PGD vs torchattacks PGD; ours APGD-CE -> APGD-T (each on survivors) vs
    pyautoattack with the same two attacks, and vs pyautoattack's standard evaluation
    (APGD-CE, APGD-T, FAB-T, Square); target: equal accuracy (+-0.5 pp) in <= 0.8x the time.

Run by hand: ``.venv/bin/python benchmarks/attacks.py [--quick] [--device cpu]``.
Writes ``benchmarks/results/attacks.json`` (machine, command, numbers).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustact.attacks import APGD, PGD

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "attacks.json"


# ----------------------------------------------------------------------------- setup
def load_mnist() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """mnist-t10k (first 8000 train / last 2000 test) via robustact.data."""
    from robustact.data import load_dataset

    xtr, ytr = load_dataset("mnist-t10k", split="train").tensors()
    xte, yte = load_dataset("mnist-t10k", split="test").tensors()
    return xtr, ytr, xte, yte


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 392),
        nn.ReLU(),
        nn.Linear(392, 196),
        nn.ReLU(),
        nn.Linear(196, 10),
    )


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


def train(model: nn.Module, x: Tensor, y: Tensor, epochs: int, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 128):
            idx = perm[i : i + 128]
            xb, yb = x[idx].to(device), y[idx].to(device)
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, Any]:
    """(median seconds over ``repeats``, last result)."""
    times, out = [], None
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def robust_acc(model: nn.Module, x_adv: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return 100 * float((model(x_adv).argmax(1) == y).float().mean())


# ----------------------------------------------------------------------------- (a)
def bare_fwd_bwd(model: nn.Module, x: Tensor, y: Tensor, k: int) -> None:
    """k forward+backward passes to the input: the irreducible cost of a k-step attack."""
    for _ in range(k):
        xg = x.detach().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(xg), y, reduction="sum")
        torch.autograd.grad(loss, xg)


def interleaved(
    fns: dict[str, Callable[[], Any]], device: torch.device, reps: int
) -> dict[str, dict[str, float]]:
    """Run the functions in turn ``reps`` times; min wall and min CPU seconds of each.

    Interleaving and taking minima keep the comparison fair on a shared, loaded machine;
    CPU time (``time.process_time``) is what the process itself spent.
    """
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            sync(device)
            t, c = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    return {k: {"wall": min(wall[k]), "cpu": min(cpu[k])} for k in fns}


def overhead(
    name: str, model: nn.Module, x: Tensor, k: int, eps: float, device: torch.device, reps: int
) -> dict[str, Any]:
    with torch.no_grad():
        y = model(x).argmax(1)  # every point starts correctly classified
    for p in model.parameters():  # as inside an attack
        p.requires_grad_(False)
    attack = PGD(eps=eps, steps=k, step_size=eps / 4, seed=0)
    results = []  # the run() results of the timed calls; the last one gives the fooled rate
    fns = {
        "bare": lambda: bare_fwd_bwd(model, x, y, k),
        "pgd": lambda: results.append(attack.run(model, x, y)),
    }
    interleaved(fns, device, 1)  # warm-up
    t = interleaved(fns, device, reps)
    for p in model.parameters():
        p.requires_grad_(True)
    fooled = 100 * results[-1].success_rate if results else 0.0
    row = {
        "model": name,
        "points": int(x.shape[0]),
        "steps": k,
        "eps": eps,
        "fooled_pct": round(fooled, 2),
        "bare_fwd_bwd_s": round(t["bare"]["wall"], 5),
        "pgd_s": round(t["pgd"]["wall"], 5),
        "ratio_wall": round(t["pgd"]["wall"] / t["bare"]["wall"], 4),
        "bare_fwd_bwd_cpu_s": round(t["bare"]["cpu"], 5),
        "pgd_cpu_s": round(t["pgd"]["cpu"], 5),
        "ratio_cpu": round(t["pgd"]["cpu"] / t["bare"]["cpu"], 4),
    }
    print(
        f"(a) {name:4s} k={k:3d} eps={eps:<6g} fooled {fooled:5.1f}%  "
        f"wall: bare {row['bare_fwd_bwd_s']:.4f}s pgd {row['pgd_s']:.4f}s "
        f"ratio {row['ratio_wall']:.3f} | cpu ratio {row['ratio_cpu']:.3f}",
        flush=True,
    )
    return row


# ----------------------------------------------------------------------------- (b)
def ours_apgd_sequence(model: nn.Module, x: Tensor, y: Tensor, eps: float, seed: int) -> Tensor:
    """AutoAttack's protocol with our attacks: APGD-CE, then APGD-T on the survivors."""
    x_adv = APGD(eps=eps, loss="ce", steps=100, seed=seed)(model, x, y)
    with torch.no_grad():
        alive = model(x_adv).argmax(1) == y
    idx = alive.nonzero().squeeze(1)
    if idx.numel():
        t = APGD(eps=eps, targeted=True, n_target_classes=9, steps=100, seed=seed)
        x_adv[idx] = t(model, x[idx], y[idx])
    return x_adv


def comparison(
    name: str,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    device: torch.device,
    full_standard: bool,
) -> dict[str, Any]:
    import torchattacks
    from pyautoattack import AutoAttack

    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    res: dict[str, Any] = {"model": name, "points": int(x.shape[0]), "eps": eps, "norm": "Linf"}
    res["clean_acc"] = round(robust_acc(model, x, y), 2)

    steps, alpha = 10, eps / 4
    ours = PGD(eps=eps, steps=steps, step_size=alpha, seed=0)
    t_ours, xa = timed(lambda: ours(model, x, y), device, 3)
    ta = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    torch.manual_seed(0)
    t_ta, xb = timed(lambda: ta(x, y), device, 3)
    res["pgd10"] = {
        "ours_s": round(t_ours, 4),
        "torchattacks_s": round(t_ta, 4),
        "time_ratio": round(t_ours / t_ta, 3),
        "ours_acc": round(robust_acc(model, xa, y), 2),
        "torchattacks_acc": round(robust_acc(model, xb, y), 2),
    }
    print(f"(b) {name} PGD-10: {res['pgd10']}", flush=True)

    def aa(version: str, attacks: list[str] | None) -> Tensor:
        kw: dict[str, Any] = {"attacks": attacks} if attacks else {}
        adv = AutoAttack(model, eps=eps, norm="Linf", seed=0, version=version, device=device, **kw)
        adv.verbose = False
        if version == "custom":  # the standard version's settings for these two attacks
            adv.apgd.n_restarts = 1
            adv.apgd_targeted.n_target_classes = 9
        out = adv.run_standard_evaluation(x, y, batch_size=x.shape[0])
        return out[0] if isinstance(out, tuple) else out  # (x_adv, ...) in this release

    t_ours, xa = timed(lambda: ours_apgd_sequence(model, x, y, eps, 0), device, 1)
    t_ref, xb = timed(lambda: aa("custom", ["apgd-ce", "apgd-t"]), device, 1)
    res["apgd_ce_t"] = {
        "ours_s": round(t_ours, 3),
        "autoattack_s": round(t_ref, 3),
        "time_ratio": round(t_ours / t_ref, 3),
        "ours_acc": round(robust_acc(model, xa, y), 2),
        "autoattack_acc": round(robust_acc(model, xb, y), 2),
    }
    print(f"(b) {name} APGD-CE+APGD-T: {res['apgd_ce_t']}", flush=True)
    if full_standard:
        t_std, xs = timed(lambda: aa("standard", None), device, 1)
        res["autoattack_standard"] = {
            "autoattack_s": round(t_std, 3),
            "autoattack_acc": round(robust_acc(model, xs, y), 2),
            "ours_apgd_ce_t_s": round(t_ours, 3),
            "ours_apgd_ce_t_acc": res["apgd_ce_t"]["ours_acc"],
            "time_ratio": round(t_ours / t_std, 3),
        }
        print(f"(b) {name} vs AutoAttack standard: {res['autoattack_standard']}", flush=True)
    return res


# ----------------------------------------------------------------------------- main
def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if hasattr(os, "getloadavg"):
        info["load_avg_at_start"] = [round(v, 2) for v in os.getloadavg()]
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="fewer points and steps (smoke run)")
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--no-standard", action="store_true", help="skip AutoAttack standard")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    n = 200 if args.quick else args.points
    xtr, ytr, xte, yte = load_mnist()
    x, y = xte[:n].to(device), yte[:n].to(device)
    t0 = time.perf_counter()
    models = {
        "mlp": train(mlp(), xtr, ytr, 2 if args.quick else 10, device),
        "cnn": train(cnn(), xtr, ytr, 1 if args.quick else 3, device),
    }
    train_s = time.perf_counter() - t0
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(device),
        "train_s": round(train_s, 2),
        "overhead": [],
        "comparison": [],
    }
    # (a): the CNN costs ~10x the MLP per pass, so it gets fewer points and repetitions
    plan = {
        "mlp": (x, 3 if args.quick else 11),
        "cnn": (x[: max(n // 4, 50)], 3 if args.quick else 5),
    }
    for name, model in models.items():
        xa, reps = plan[name]
        for k in (10, 50) if not args.quick else (10,):
            result["overhead"].append(overhead(name, model, xa, k, 1e-3, device, reps))
        result["overhead"].append(overhead(name, model, xa, 10, 0.1, device, reps))
    for name, model in models.items():
        result["comparison"].append(
            comparison(name, model, x, y, 0.1, device, full_standard=not args.no_standard)
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
