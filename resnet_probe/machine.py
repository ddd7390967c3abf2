"""The processor a run lands on: its name and the instruction-set flags that decide reduced-precision speed.

On x86 CPUs, bf16 convolutions are native with AVX512-BF16 or AMX and emulated without: measured
on an AVX2-only AMD EPYC, the ResNet-44 lesion sweep took 203 s in bf16 against 37 s in fp32
(issue #29). fp16 is native with AVX512-FP16 or AMX-FP16.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

#: the flags (as /proc/cpuinfo spells them) that decide reduced precision on the CPU
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16", "amx_fp16")
NATIVE = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


@functools.cache
def cpu() -> dict[str, Any]:
    """``{"name", "cpus", "flags"}``: the CPU's model name, its logical CPUs and which of :data:`FLAGS` it has."""
    name = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"name": name, "cpus": os.cpu_count(), "flags": [f for f in FLAGS if f in flags]}


def native(precision: str, info: dict[str, Any] | None = None) -> bool:
    """Whether this CPU computes ``precision`` (bf16, fp16) natively; fp32 always is."""
    wanted = NATIVE.get(precision)
    if wanted is None:
        return True
    flags = set((info or cpu())["flags"])
    return any(f in flags for f in wanted)


def precision_warning(precision: str, info: dict[str, Any] | None = None) -> str | None:
    """One line before a CPU run in a precision this CPU only emulates; None where it is native."""
    info = info or cpu()
    if native(precision, info):
        return None
    flags = " or ".join(f.upper().replace("_", "-") for f in NATIVE[precision])
    return (
        f"--precision {precision} on this CPU ({info['name']}) has no {flags}: {precision} is emulated, "
        f"typically several times slower than fp32 (an AVX2-only EPYC: 203 s against 37 s for the ResNet-44 "
        f"sweep); measure before you choose it"
    )
