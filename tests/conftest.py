"""Shared test fixtures: offline, CPU-only, deterministic."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch

# The test models are tiny: one intra-op thread is as fast, and on a loaded 2-core machine
# spinning OpenMP threads made them up to 60x slower. ROBUSTACT_TEST_THREADS overrides.
torch.set_num_threads(int(os.environ.get("ROBUSTACT_TEST_THREADS", "1")))

#: The shared offline datasets (../shared/datasets beside the repository), if present.
SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture
def shared_datasets() -> Path:
    """Root of the shared offline datasets; skips the test when they are absent."""
    if not (SHARED_DATASETS / "MNIST" / "raw").is_dir():
        pytest.skip(f"shared MNIST split not found under {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _digits_tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn digits as (x_train, y_train, x_test, y_test), x in [0, 1], (N, 1, 8, 8)."""
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.tensor(np.random.default_rng(0).permutation(len(y)))
    x, y = x[perm], y[perm]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def train_quick(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 30, lr: float = 1e-2
) -> torch.nn.Module:
    """Full-batch-ish Adam training for test fixtures (seconds on CPU)."""
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 128):
            idx = perm[i : i + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test) of scikit-learn digits, 8x8, in [0, 1]."""
    return _digits_tensors()


@pytest.fixture(scope="session")
def _digits_mlp_trained(
    digits: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    )
    x, y, _, _ = digits
    return train_quick(model, x, y)


@pytest.fixture
def digits_mlp(_digits_mlp_trained: torch.nn.Module) -> torch.nn.Module:
    """A naturally trained MLP 64-64-10 on digits (about 97 % clean test accuracy), in eval
    mode; each test gets its own copy, so no test sees another's changes."""
    return copy.deepcopy(_digits_mlp_trained).eval()
