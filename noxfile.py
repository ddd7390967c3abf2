"""Developer sessions: `nox -l` is the menu. Slow, GPU, network and bench sessions are off by default.

Sessions reuse the interpreter's site-packages (``--system-site-packages``) so the several-GB
torch build is installed once, by the README's install command, not once per session.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

VENV = ["--system-site-packages"]


def _install(session: nox.Session) -> None:
    session.install("-e", ".[dev]")


@nox.session(venv_params=VENV)
def tests(session: nox.Session) -> None:
    """Run the test suite (no GPU, no network, no slow tests); `-- --durations=20` shows where the time goes."""
    _install(session)
    session.run("python", "-m", "pytest", "-q", *session.posargs, env={"OMP_NUM_THREADS": "1"})


@nox.session(venv_params=VENV, default=False)
def slow(session: nox.Session) -> None:
    """Only the slow end-to-end tests that `tests` leaves out (benchmarks, torchrun, ...); CI runs them too."""
    _install(session)
    session.run("python", "-m", "pytest", "-q", "-m", "slow and not network and not gpu", *session.posargs,
                env={"OMP_NUM_THREADS": "1"})


@nox.session(venv_params=VENV, default=False)
def gpu(session: nox.Session) -> None:
    """Run the GPU tests (needs CUDA)."""
    _install(session)
    session.run("python", "-m", "pytest", "-q", "-m", "gpu", *session.posargs)


@nox.session(venv_params=VENV, default=False)
def network(session: nox.Session) -> None:
    """Run the tests that download weights or data."""
    _install(session)
    session.run("python", "-m", "pytest", "-q", "-m", "network", *session.posargs)


@nox.session(venv_params=VENV, default=False)
def bench(session: nox.Session) -> None:
    """Every benchmark at a small CPU size: naive time, ours, ratio, bound, peak memory, GFLOP/s (one thread);
    then the whole-process lesion sweep of the shipped ResNet-20 against the plain PyTorch loop (all threads)."""
    _install(session)
    env = {"OMP_NUM_THREADS": "1"}
    cpu = ["--device", "cpu", "--threads", "1", *session.posargs]
    small = ["--model", "resnet20", "--batch", "64"]
    session.run("python", "benchmarks/lesion_sweep.py", *small, "--batches", "2", "--also-stack", "4", *cpu, env=env)
    session.run("python", "benchmarks/random_k.py", *small, "--k", "1:5", "--samples", "4", "--also-stack", "4", *cpu,
                env=env)
    session.run("python", "benchmarks/reorder.py", *small, "--swaps", "1:5", "--samples", "4", "--also-stack", "4",
                *cpu, env=env)
    session.run("python", "benchmarks/path_gradients.py", "--model", "resnet20", "--batch-size", "64", *cpu, env=env)
    session.run("python", "benchmarks/response_std.py", "--model", "resnet20", "--limit", "256", *cpu, env=env)
    session.run(
        "python", "benchmarks/veit_suite.py", "--model", "resnet20", "--images", "256", "--batch-size", "128",
        "--grad-batch-size", "128", "--random-k", "1:5", "--random-k-samples", "4", "--swaps", "1:5",
        "--swap-samples", "4", "--grad-samples", "20", *cpu, env=env,
    )
    session.run("python", "benchmarks/batch_sizes.py", "--model", "resnet20", "--images", "1024", *cpu, env=env)
    session.run("python", "benchmarks/train_step.py", "--model", "resnet56", *cpu, env=env)
    session.run("python", "benchmarks/cli_vs_loop.py", "--model", "resnet20")
    session.run("python", "benchmarks/cli_overhead.py", "--rounds", "2")


@nox.session(venv_params=VENV, default=False)
def catalogue(session: nox.Session) -> None:
    """Every timm / torchvision architecture with residual additions: how many get an exact topology (long)."""
    _install(session)
    out = Path(session.create_tmp()) / "catalogue.jsonl"
    session.run("python", "benchmarks/catalogue.py", "--out", str(out), *session.posargs, env={"OMP_NUM_THREADS": "1"})


@nox.session(venv_params=VENV)
def lint(session: nox.Session) -> None:
    """ruff over the package, CLI, reports, tests and benchmarks."""
    session.install("ruff")
    session.run("python", "-m", "ruff", "check", "resnet_probe", "cli", "reports", "tests", "benchmarks", "noxfile.py")


@nox.session(venv_params=VENV, default=False)
def typecheck(session: nox.Session) -> None:
    """mypy over the library, and the API's result types (tests/api/test_typed.py: assert_type)."""
    _install(session)
    session.run("python", "-m", "mypy", "resnet_probe", "cli", "reports", "tests/api/test_typed.py")


@nox.session(venv_params=VENV, default=False)
def browser(session: nox.Session) -> None:
    """A sample lesion report and the demo's index in headless Chromium: screenshots, console errors, sizes, links."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        session.error("needs Chromium: apt-get install -y chromium (Debian's package)")
    _install(session)
    out = Path(session.create_tmp()) / "browser"
    session.run(
        "python", "tests/browser/check_report.py", "--out", str(out), "--chromium", chromium, "--index",
        *session.posargs,
    )
