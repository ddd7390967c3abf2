"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The real artefacts in ../shared/fixtures; tests that need them skip where it is absent."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
    if not path.is_dir():
        pytest.skip(f"real fixtures not found at {path}")
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """One intra-op thread: tiny test tensors run 10-100x slower when threads contend for 2 cores."""
    import torch

    torch.set_num_threads(1)
