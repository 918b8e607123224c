"""Shared test fixtures: offline, CPU-only, deterministic."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Two cores on CI: keep torch from oversubscribing them across processes.
torch.set_num_threads(min(2, os.cpu_count() or 1))

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
