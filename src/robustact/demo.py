"""The main job (``robustact demo`` / ``make demo``) on the embedded digits dataset."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from robustact.activations import SReLU
from robustact.data import ImageDataset, load_dataset, make_loader


def _mlp(act_second: Callable[[], nn.Module]) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 128),
        nn.ReLU(),
        nn.Linear(128, 64),
        act_second(),
        nn.Linear(64, 10),
    )


def _train(
    model: nn.Module, ds: ImageDataset, epochs: int, seed: int, dev: torch.device
) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for epoch in range(epochs):
        for xb, yb in make_loader(ds, batch_size=64, shuffle=True, seed=seed + epoch, device=dev):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model.eval()


def run_demo(seed: int = 0, device: str = "cpu", progress: bool = True) -> list[dict[str, Any]]:
    """Train a ReLU and two S-ReLU MLPs on digits and print their clean test accuracy.

    Returns:
        One dict per model: ``{"model", "clean_acc", "seconds"}``.
    """
    console = Console()
    dev = torch.device(device)
    train = load_dataset("digits", split="train")
    xte, yte = load_dataset("digits", split="test").tensors()
    xte, yte = xte.to(dev), yte.to(dev)
    variants: dict[str, Callable[[], nn.Module]] = {
        "ReLU": nn.ReLU,
        "S-ReLU m=0.1": functools.partial(SReLU, max_value=0.1),
        "S-ReLU m=0.01": functools.partial(SReLU, max_value=0.01),
    }
    rows: list[dict[str, Any]] = []
    for name, act in variants.items():
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        status = console.status(f"training {name} MLP on digits") if progress else nullcontext()
        with status:
            model = _train(_mlp(act).to(dev), train, epochs=20, seed=seed, dev=dev)
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        rows.append({"model": name, "clean_acc": acc, "seconds": time.perf_counter() - t0})
    table = Table(title=f"digits, MLP 64-128-64-10, seed {seed}: clean test accuracy")
    table.add_column("activation (2nd hidden layer)")
    table.add_column("clean acc", justify="right")
    table.add_column("train s", justify="right")
    for r in rows:
        table.add_row(
            str(r["model"]), f"{100 * float(r['clean_acc']):.1f} %", f"{r['seconds']:.1f}"
        )
    console.print(table)
    return rows
