"""Subprocess deadlines for the tests: hang guards only, scaled to how fast this machine is.

A test that starts a process waits for an *event* (a journaled item, a marker file, the process'
exit), never for a time budget. The deadline it passes to ``communicate``/``run``/:func:`wait_for`
only ends a hang: :data:`HANG_FACTOR` times what the step takes on a fast machine, times
:func:`slowdown`, which times a fixed CPU workload once per process (once per test session: the
conftest reports it in pytest's header) against that fast machine's time. So a machine several
times slower only waits longer; nothing fails because it is slow.

``RESNET_PROBE_TEST_SLOWDOWN=5`` forces the factor (a loaded CI runner, a debugger, valgrind).
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from typing import Callable

HANG_FACTOR = 10.0
"""A deadline is this many times the expected (fast machine) time of what it guards."""
SLOWDOWN_ENV = "RESNET_PROBE_TEST_SLOWDOWN"
REFERENCE_S = 0.025
"""The best of :func:`_workload`'s rounds on a quiet fast x86 core (an AVX-512 EPYC, one torch thread)."""
_ROUNDS = 5
_POLL_S = 0.01


def _workload() -> float:
    """Seconds one round of a fixed CPU load takes: interpreter work and a small convolution, one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = torch.randn(16, 16, 32, 32, generator=torch.Generator().manual_seed(0))
        w = torch.randn(16, 16, 3, 3, generator=torch.Generator().manual_seed(1))
        start = time.perf_counter()
        total = 0
        for i in range(200_000):
            total += i * i % 7
        for _ in range(8):
            torch.nn.functional.conv2d(x, w, padding=1)
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)


@functools.cache
def slowdown() -> float:
    """How many times slower than the reference machine this one is (at least 1), measured once."""
    forced = os.environ.get(SLOWDOWN_ENV)
    if forced:
        return max(1.0, float(forced))
    best = min(_workload() for _ in range(_ROUNDS))  # the machine's speed, not a moment's load
    return max(1.0, best / REFERENCE_S)


def deadline(expected_s: float) -> float:
    """The hang guard for a step that takes ``expected_s`` seconds on a fast machine."""
    return HANG_FACTOR * expected_s * slowdown()


def wait_for(
    condition: Callable[[], bool], proc: subprocess.Popen[str], expected_s: float, what: str
) -> None:
    """Return as soon as ``condition()`` holds; fail if ``proc`` ends first or the hang guard runs out.

    The poll only checks for the event; the deadline (:func:`deadline` of ``expected_s``) is the guard.
    """
    limit = deadline(expected_s)
    end = time.monotonic() + limit
    while not condition():
        if proc.poll() is not None:
            _, stderr = proc.communicate()
            raise AssertionError(f"the process ended (code {proc.returncode}) before {what}: {stderr[-2000:]}")
        if time.monotonic() > end:
            raise AssertionError(f"still waiting for {what} after {limit:.3g} s (hang guard: {describe()})")
        time.sleep(_POLL_S)


def describe() -> str:
    """One line for pytest's header and for hang messages."""
    source = f"{SLOWDOWN_ENV}" if os.environ.get(SLOWDOWN_ENV) else "calibrated"
    return f"deadlines are {HANG_FACTOR:g}x the expected time x slowdown {slowdown():.2f} ({source})"
