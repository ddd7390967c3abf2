"""Catalogue check: how many timm / torchvision architectures get a topology whose forward is the model's.

    python benchmarks/catalogue.py --out catalogue.jsonl                 # everything (long)
    python benchmarks/catalogue.py --out sample.jsonl --sample 60 --seed 0
    python benchmarks/catalogue.py --summary catalogue.jsonl             # the figure, from a finished run

An *architecture* is a set of entrypoints built from the same module classes: every timm
entrypoint (``timm.list_models()``) and torchvision classification model is built on the meta
device (no memory, no weights), grouped by its model class and the set of its module classes,
and the smallest member of each group (parameters, then input pixels) is checked. Members over
``--max-params`` (default 100 M, ~400 MB of fp32 weights) are never built. A check builds the
model with random weights (seed 0, eval mode), counts its residual additions in one real
forward (an addition of two same-shaped tensors computed from the input), reads its topology
with ``build_topology`` as the CLI does, and compares ``topology.forward(x)`` with
``model(x)`` on a random batch of two at the model's own input size; it also runs one unit
deleted. Architectures without residual additions are left out of the figure. Each result is
one JSON line, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import random
import re
import signal
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from resnet_probe.adapters import build_topology
from resnet_probe.errors import ProbeError
from resnet_probe.executor import Executor, Plan

_ADD_NAMES = {"add", "add_", "__add__", "__radd__", "__iadd__"}
# AdapterError messages -> the cause they report, first match wins.
CAUSES: tuple[tuple[str, str], ...] = (
    (r"cannot trace .*forward itself", "torch.fx cannot trace the model's own forward"),
    (r"a size read from", "a size (H, W, ...) is carried past a residual addition"),
    (r"closes no unit", "a residual addition closes no unit (nested residual / skip across units)"),
    (r"is read across a unit boundary", "a size is read across a unit boundary"),
    (r"needed outside its part", "a value is needed outside its part"),
    (r"cannot tell the shortcut", "shortcut and branch look alike (same op count)"),
    (r"no addition closes a unit", "no addition closes a unit"),
    (r"returns a", "forward returns more than one tensor"),
    (r"tensor inputs|more than one input", "forward takes more than one input"),
    (r"writes into a tensor by indexing", "in-place indexed writes"),
)


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise TimeoutError after ``seconds`` (main thread only)."""

    def stop(signum: int, frame: Any) -> None:
        raise TimeoutError(f"over {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class _Additions(TorchFunctionMode):
    """Counts additions of two same-shaped tensors that both depend on the input."""

    def __init__(self, x: Tensor) -> None:
        super().__init__()
        self.seen: dict[int, Tensor] = {id(x): x}  # kept alive so that ids stay unique
        self.count = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        flat = [a for a in tree_flatten((args, kwargs or {}))[0] if isinstance(a, Tensor) and id(a) in self.seen]
        if flat:
            name = getattr(func, "__name__", "")
            if name in _ADD_NAMES and len(flat) == 2 and flat[0] is not flat[1] and flat[0].shape == flat[1].shape:
                self.count += 1
            for o in tree_flatten(out)[0]:
                if isinstance(o, Tensor):
                    self.seen[id(o)] = o
        return out


def residual_additions(model: nn.Module, x: Tensor) -> int:
    """Additions of two same-shaped computed tensors in one forward of ``model`` on ``x``."""
    mode = _Additions(x)
    with torch.no_grad(), mode:
        model(x)
    return mode.count


def _builder(library: str, name: str) -> Any:
    if library == "timm":
        import timm

        return lambda: timm.create_model(name, pretrained=False)
    from torchvision import models

    return lambda: models.get_model(name, weights=None)


def _input_size(library: str, model: nn.Module) -> tuple[int, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = cfg.get("input_size") if library == "timm" else None
    return tuple(size) if size else (3, 224, 224)


def _structure(library: str, name: str) -> nn.Module:
    """The model on the meta device (no memory); on the CPU where its init needs data (torchvision's)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                return _builder(library, name)()
        except NotImplementedError:
            return _builder(library, name)()


def architectures(libraries: list[str], max_params: float) -> list[dict[str, Any]]:
    """One representative entrypoint per (model class, set of module classes), smallest first."""
    names: list[tuple[str, str]] = []
    if "timm" in libraries:
        import timm

        names += [("timm", n) for n in timm.list_models()]
    if "torchvision" in libraries:
        from torchvision import models

        names += [("torchvision", n) for n in models.list_models(module=models)]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for library, name in names:
        try:
            model = _structure(library, name)
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            key: tuple[Any, ...] = (library, "unbuildable", name)
            groups[key] = [{"library": library, "name": name, "params": 0, "pixels": 0, "members": 1,
                            "meta_error": f"{type(exc).__name__}: {str(exc)[:120]}"}]
            continue
        classes = frozenset(f"{type(m).__module__}.{type(m).__qualname__}" for m in model.modules())
        key = (library, f"{type(model).__module__}.{type(model).__qualname__}", classes)
        size = _input_size(library, model)
        groups.setdefault(key, []).append({
            "library": library, "name": name, "params": sum(p.numel() for p in model.parameters()),
            "pixels": int(size[-1] * size[-2]), "architecture": key[1],
        })
        del model
    out = []
    for members in groups.values():
        small = [m for m in members if m["params"] <= max_params]
        best = dict(min(small or members, key=lambda m: (m["params"], m["pixels"])))
        best["members"] = len(members)
        if not small:
            best["too_large"] = True  # every member is over --max-params: counted, never built
        out.append(best)
    return sorted(out, key=lambda m: (m["library"], m["name"]))


def check(arch: dict[str, Any], timeout: int) -> dict[str, Any]:
    """Build, count additions, read the topology, compare forwards, run one deletion."""
    row = dict(arch)
    if "meta_error" in arch:
        row.update(status="unbuildable", cause=arch["meta_error"])
        return row
    if arch.get("too_large"):
        row.update(status="too-large", cause=f"over {arch['params'] / 1e6:.0f} M parameters")
        return row
    start = time.perf_counter()
    try:
        with time_limit(timeout), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(0)
            model = _builder(arch["library"], arch["name"])().eval()
            x = torch.randn(2, *_input_size(arch["library"], model), generator=torch.Generator().manual_seed(1))
            with torch.no_grad():
                expected = model(x)
            row["additions"] = residual_additions(model, x[:1])
            if not row["additions"]:
                row.update(status="no-residual")
                return row
            t0 = time.perf_counter()
            try:
                topology = build_topology(model)
            except ProbeError as exc:
                row.update(status="refused", message=str(exc), cause=cause(str(exc)))
                return row
            row["build_s"] = round(time.perf_counter() - t0, 3)
            row["family"] = topology.family
            row["units"] = topology.n_units
            with torch.no_grad():
                got = topology.forward(x)
            same_shape = isinstance(got, Tensor) and isinstance(expected, Tensor) and got.shape == expected.shape
            diff = float((got - expected).abs().max()) if same_shape else float("inf")
            row["max_abs_diff"] = diff
            if not same_shape or not torch.equal(got, expected):
                row.update(status="mismatch", cause="forward differs" if same_shape else "output shape differs")
                return row
            deletable = [u.index for u in topology.units if u.deletable]
            if deletable:
                Executor(topology).forward(x, Plan.delete(deletable[len(deletable) // 2]))
            row.update(status="exact")
    except Exception as exc:  # noqa: BLE001 - every failure is a result here
        row.update(status="error", cause=f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}")
    finally:
        row["seconds"] = round(time.perf_counter() - start, 2)
        gc.collect()
    return row


def cause(message: str) -> str:
    """The cause an AdapterError message reports."""
    for pattern, label in CAUSES:
        if re.search(pattern, message):
            return label
    return message[:100]


def summary(rows: list[dict[str, Any]]) -> str:
    """The coverage figure and the failures grouped by cause."""
    lines = []
    for library in ("timm", "torchvision", "all"):
        mine = [r for r in rows if library in ("all", r["library"])]
        if not mine:
            continue
        residual = [r for r in mine if r.get("additions")]
        exact = [r for r in residual if r["status"] == "exact"]
        share = 100 * len(exact) / max(1, len(residual))
        lines.append(
            f"{library}: {len(exact)} of {len(residual)} architectures with residual additions get an exact "
            f"topology ({share:.1f} %); left out: {sum(r['status'] == 'no-residual' for r in mine)} without "
            f"residual additions, {sum(r['status'] == 'too-large' for r in mine)} too large, "
            f"{sum(not r.get('additions') and r['status'] not in ('no-residual', 'too-large') for r in mine)} "
            "that could not be built or run"
        )
    counted = [r for r in rows if r["status"] == "exact"]
    agree = sum(r["units"] == r["additions"] for r in counted)
    lines.append(f"units == residual additions seen in the forward: {agree} of {len(counted)} exact topologies")
    failures = Counter(r.get("cause", r["status"]) for r in rows if r.get("additions") and r["status"] != "exact")
    for label, n in failures.most_common():
        examples = [r["name"] for r in rows if r.get("additions") and r.get("cause", r["status"]) == label][:4]
        lines.append(f"  {n:4d}  {label}  (e.g. {', '.join(examples)})")
    unbuilt = Counter(
        r.get("cause", "") for r in rows if not r.get("additions") and r["status"] not in ("no-residual", "too-large")
    )
    for label, n in unbuilt.most_common():
        lines.append(f"  not built: {n:4d}  {label[:100]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Check every architecture (or a seeded sample), append JSON lines, print the figure."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("catalogue.jsonl"), help="JSON lines, one per architecture")
    parser.add_argument("--library", choices=("timm", "torchvision", "both"), default="both")
    parser.add_argument("--sample", type=int, default=0, help="check a seeded random sample of this many (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="comma-separated entrypoint names to check (no grouping)")
    parser.add_argument("--max-params", type=float, default=100e6)
    parser.add_argument("--timeout", type=int, default=180, help="seconds per architecture")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--summary", type=Path, help="print the figure of a finished run and exit")
    args = parser.parse_args(argv)
    if args.summary:
        print(summary([json.loads(line) for line in args.summary.read_text().splitlines() if line.strip()]))
        return 0
    torch.set_num_threads(args.threads)
    libraries = ["timm", "torchvision"] if args.library == "both" else [args.library]
    if args.only:
        todo = [{"library": libraries[0], "name": n, "params": 0, "pixels": 0, "members": 1}
                for n in args.only.split(",")]
    else:
        listing = args.out.with_suffix(".architectures.json")  # grouping takes minutes: done once per output
        if listing.exists():
            todo = json.loads(listing.read_text())
        else:
            todo = architectures(libraries, args.max_params)
            listing.write_text(json.dumps(todo))
        print(f"{len(todo)} architectures", flush=True)
        if args.sample:
            todo = sorted(random.Random(args.seed).sample(todo, min(args.sample, len(todo))),
                          key=lambda m: (m["library"], m["name"]))
    done = {}
    if args.out.exists():
        done = {(r["library"], r["name"]): r for r in map(json.loads, args.out.read_text().splitlines()) if r}
    with args.out.open("a") as sink:
        for i, arch in enumerate(todo):
            if (arch["library"], arch["name"]) in done:
                continue
            row = check(arch, args.timeout)
            done[(arch["library"], arch["name"])] = row
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            print(f"[{i + 1}/{len(todo)}] {arch['library']}:{arch['name']} {row['status']} "
                  f"{row.get('units', '')} {row.get('cause', '')[:90]}", flush=True)
    rows = [done[(a["library"], a["name"])] for a in todo if (a["library"], a["name"]) in done]
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
