"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from . import deadlines


def pytest_sessionstart(session: pytest.Session) -> None:
    """Calibrate the subprocess hang guards once per session, before any test loads the machine."""
    deadlines.slowdown()


def pytest_report_header(config: pytest.Config) -> str:
    """By how much the hang guards are scaled (shown without -q)."""
    return deadlines.describe()


@pytest.fixture(scope="session")
def fixtures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real artefacts the package ships (846 CIFAR-10 test images, two akamaster checkpoints), in one folder.

    Links to the installed files, so every clone runs the tests that check real numbers.
    """
    from resnet_probe.data.known import SAMPLE_FILE
    from resnet_probe.models.weights import PUBLISHED

    folder = tmp_path_factory.mktemp("shipped")
    for path in [SAMPLE_FILE, *(w.path for w in PUBLISHED.values() if w.path is not None)]:
        (folder / path.name).symlink_to(path)
    return folder


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """One intra-op thread: tiny test tensors run 10-100x slower when threads contend for 2 cores."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _private_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh $RESNET_PROBE_HOME: the tests never read nor fill the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("home")
        patch.setenv("RESNET_PROBE_HOME", str(home))
        yield home
