"""Certified accuracy of ReLU vs capped digits MLPs, and CROWN's time per point.

Usage:
    PYTHONPATH=src .venv/bin/python benchmarks/certify.py [--points 200] \
        [--out benchmarks/results/certify.json]

1. ``tightness``: four digits MLPs 64-64-32-10 (robustact ``MLP``, ``hidden=(64, 32)``)
   trained by ``robustact.train.fit`` with the same seed, data and schedule (20 epochs,
   Adam lr 3e-3, batch 64): ReLU; S-ReLU with cap 1 on both hidden layers; the
   dissertation's placement (ReLU, then S-ReLU m = 0.01 on the second hidden layer);
   D-ReLU (eq. 5.1, lambda 1e-3, cap lr 1.0). For each, on the first ``points`` test
   digits (the test split of tests/conftest.py): clean accuracy, IBP and CROWN certified
   accuracy (CROWN also with ``slopes="flat"``), and attacked accuracy (a point counts as
   broken if PGD-50 with margin loss and 2 restarts breaks it, plain or with
   straight-through gradients through the caps) at
   Linf eps 0.01-0.1 and L2 eps 0.1-0.5. ``certified <= attacked`` is asserted.
2. ``timing``: CROWN's seconds per point (wall and process CPU, one torch thread) on the
   ReLU digits MLP, on ``shallow_cnn`` (32/64 channels, hidden 128) for 8x8 digits, and on
   ``shallow_cnn`` for 28x28 MNIST (trained 1 epoch on 4000 images of the shared t10k split,
   timed on 3 other test images, batch 1; skipped when the split is absent).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from robustact.activations import SReLU
from robustact.attacks import PGD, Adaptive
from robustact.certify import certified_accuracy
from robustact.models.cnn import ShallowCNN
from robustact.models.mlp import MLP
from robustact.train import TrainConfig, fit, get_objective

ROOT = Path(__file__).resolve().parents[1]
LINF = (0.01, 0.02, 0.05, 0.1)
L2 = (0.1, 0.25, 0.5)


def digits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn digits split as tests/conftest.py does: 1400 train, 397 test."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.tensor(np.random.default_rng(0).permutation(len(y)))
    x, y = x[perm], y[perm]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def train_mlp(variant: str, x: Tensor, y: Tensor) -> nn.Module:
    """One of the four MLP variants, trained with seed 0."""
    torch.manual_seed(0)
    kw: dict[str, Any] = {"hidden": (64, 32), "input_size": 8}
    objective = get_objective("natural")
    if variant == "srelu":
        kw["act_layer"] = functools.partial(SReLU, 1.0)
    elif variant == "srelu_2nd_0.01":
        kw["act_layers"] = [None, functools.partial(SReLU, 0.01)]
    elif variant == "drelu":
        kw["act_layer"] = "drelu"
        objective = get_objective("drelu_penalty", lam=1e-3)
    model = MLP(**kw)
    config = TrainConfig(epochs=20, batch_size=64, lr=3e-3, seed=0, cap_lr=1.0, progress=False)
    fit(model, objective, (x, y), config)
    return model.eval()


def attacked(model: nn.Module, x: Tensor, y: Tensor, eps: float, norm: str) -> Tensor:
    """bool (N,): survives PGD-50 (margin, 2 restarts), plain and straight-through."""
    pgd = PGD(eps=eps, norm="Linf" if norm == "linf" else "L2", steps=50, loss="margin",
              restarts=2, seed=0)  # fmt: skip
    with torch.no_grad():
        alive = model(x).argmax(1) == y
    for attack in (pgd, Adaptive(pgd, bpda=True)):
        x_adv = attack(model, x, y)
        with torch.no_grad():
            alive &= model(x_adv).argmax(1) == y
    return alive


def tightness(points: int) -> dict[str, Any]:
    xtr, ytr, xte, yte = digits()
    x, y = xte[:points], yte[:points]
    out: dict[str, Any] = {}
    for variant in ("relu", "srelu", "srelu_2nd_0.01", "drelu"):
        model = train_mlp(variant, xtr, ytr)
        with torch.no_grad():
            clean = float((model(x).argmax(1) == y).float().mean())
        rows = []
        for norm, radii in (("linf", LINF), ("l2", L2)):
            for eps in radii:
                ibp = certified_accuracy(model, x, y, eps, norm, "ibp")
                crown = certified_accuracy(model, x, y, eps, norm, "crown")
                flat = certified_accuracy(model, x, y, eps, norm, "crown", slopes="flat")
                robust = attacked(model, x, y, eps, norm)
                for res in (ibp, crown, flat):
                    assert not (res.certified & ~robust).any(), f"{variant}: certified but broken"
                rows.append({"norm": norm, "eps": eps, "ibp": ibp.certified_accuracy,
                             "crown": crown.certified_accuracy,
                        "crown_flat_slopes": flat.certified_accuracy,
                             "attacked": float(robust.float().mean())})  # fmt: skip
                print(variant, rows[-1], flush=True)
        out[variant] = {"clean": clean, "rows": rows}
    return out


def per_point(model: nn.Module, x: Tensor, y: Tensor, eps: float, batch: int) -> dict[str, Any]:
    """CROWN seconds per point (Linf eps) over x."""
    w0, c0 = time.perf_counter(), time.process_time()
    res = certified_accuracy(model, x, y, eps, "linf", "crown", batch_size=batch)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"points": len(y), "batch_size": batch, "eps": eps, "wall_s_per_point": wall / len(y),
            "cpu_s_per_point": cpu / len(y), "certified": res.certified_accuracy}  # fmt: skip


def timing(points: int) -> dict[str, Any]:
    xtr, ytr, xte, yte = digits()
    out: dict[str, Any] = {"mlp_digits": per_point(train_mlp("relu", xtr, ytr), xte[:points],
                                                   yte[:points], 0.02, 64)}  # fmt: skip
    torch.manual_seed(0)
    cnn = ShallowCNN(input_size=8)
    fit(cnn, "natural", (xtr, ytr), TrainConfig(epochs=5, batch_size=64, seed=0, progress=False))
    out["shallow_cnn_digits"] = per_point(cnn.eval(), xte[:50], yte[:50], 0.02, 16)
    roots = [p / "shared" / "datasets" for p in (ROOT.parent, ROOT.parent.parent)]
    root = next((r for r in roots if (r / "MNIST" / "raw").is_dir()), None)
    if root is None:
        out["shallow_cnn_mnist"] = {"skipped": f"no MNIST under {[str(r) for r in roots]}"}
        return out
    from robustact.data import load_dataset

    xm, ym = load_dataset("mnist", root=root, split="test").tensors()
    torch.manual_seed(0)
    mnist = ShallowCNN(mean="mnist")
    fit(mnist, "natural", (xm[:4000], ym[:4000]),
        TrainConfig(epochs=1, batch_size=64, seed=0, progress=False))  # fmt: skip
    out["shallow_cnn_mnist"] = per_point(mnist.eval(), xm[9000:9003], ym[9000:9003], 0.01, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "certify.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": 1,
            "load_before": os.getloadavg(),
        },
        "tightness": tightness(args.points),
        "timing": timing(args.points),
    }
    result["machine"]["load_after"] = os.getloadavg()
    result["total_wall_s"] = time.perf_counter() - t0
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
