"""What a wall time was measured on: the CPU's model, vector instructions and clock, and its matmul rate.

Machines of one size (2 cores, 24 GiB) come with different CPUs, and every wall time scales with the CPU:
float32 ``torch.matmul`` at two threads measured 172 GFLOP/s on one (``results/bench/train.json``) and 67 on
another (an AVX2 part at 2.0 GHz), and a default AF-VAE training step ran ~2.5x slower on the second. So the
records that carry a wall time (the pipeline's manifest, the benchmarks, the shipped models' sittings) say
which CPU they ran on (``describe``, ``summary``), and the manifest adds the matmul rate it saw (``matmul_gflops``).
"""
from __future__ import annotations

import functools
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch

CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo(key: str) -> str | None:
    """The first ``key : value`` of /proc/cpuinfo (Linux), or None."""
    try:
        lines = CPUINFO.read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.split(":", 1)[0].strip() == key), None)


def describe() -> dict[str, Any]:
    """The CPU: ``cpu`` (model name), ``cpu_isa`` (the vector instructions torch's kernels use: AVX2, AVX512,
    ...), ``cpu_mhz`` (the clock the OS reports, None when it reports none), ``cpu_count``, ``cpu_bf16`` (bf16 in
    hardware: ``train.amp`` then trains in bf16)."""
    mhz = _cpuinfo("cpu MHz")
    return {
        "cpu": _cpuinfo("model name") or platform.processor() or platform.machine(),
        "cpu_isa": torch.backends.cpu.get_cpu_capability(),
        "cpu_mhz": round(float(mhz)) if mhz else None,
        "cpu_count": os.cpu_count() or 0,
        "cpu_bf16": native_bf16("cpu"),
    }


def summary(d: dict[str, Any] | None = None) -> str:
    """``describe`` (or ``d``, a record with its keys, e.g. a benchmark's JSON) in words, e.g. "AMD EPYC (AVX2,
    2.0 GHz), 2 cores", "Intel Xeon (AVX512, bf16, 2.1 GHz), 2 cores"."""
    d = describe() if d is None else d
    clock = f", {d['cpu_mhz'] / 1000:.1f} GHz" if d["cpu_mhz"] else ""
    bf16 = ", bf16" if d.get("cpu_bf16") else ""  # records before it say nothing of bf16
    return f"{d['cpu']} ({d['cpu_isa']}{bf16}{clock}), {d['cpu_count']} cores"


class _TotalsOnly:
    """``FlopCounterMode``'s module tracker reduced to what a total needs (every FLOP under "Global"): its
    per-module backward hooks break ``torch.autograd.grad`` with ``create_graph`` (the GANs' R1 penalty)."""

    parents = {"Global"}

    def __enter__(self) -> "_TotalsOnly":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def flops(fn: Callable[[], Any], calls: int = 1) -> float:
    """FLOPs of one call of ``fn``, averaged over ``calls`` calls (``torch.utils.flop_counter``: forward and
    backward, counted, not estimated)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _TotalsOnly()
    with counter:
        for _ in range(calls):
            fn()
    return counter.get_total_flops() / calls


def throughput(fn: Callable[[], Any], items_per_call: int, min_seconds: float = 2.0, warmup: int = 1) -> float:
    """Items per second of ``fn``, timed over at least ``min_seconds`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_seconds:
            return n * items_per_call / dt


def matmul_gflops(n: int = 2048, seconds: float = 2.0) -> float:
    """Float32 ``torch.matmul`` of two (n, n) matrices at torch's current threads, GFLOP/s over >= ``seconds``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return throughput(lambda: torch.matmul(a, b), 2 * n**3, seconds) / 1e9


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` multiplies bfloat16 in hardware: any CUDA device torch supports bf16 on, or a CPU with
    AMX or AVX512-BF16 (oneDNN's bf16 kernels). Elsewhere a bf16 convolution is emulated, many times slower."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and _cpu_bf16()


@functools.cache
def _cpu_bf16() -> bool:
    """The CPU's bf16 instructions, asked once per process (``autocast`` runs on every training step)."""
    return torch.backends.mkldnn.is_available() and (torch.cpu._is_amx_tile_supported()
                                                     or torch.cpu._is_avx512_bf16_supported())


def autocast(amp: bool, device: torch.device | str) -> torch.autocast:
    """bf16 autocast on ``device`` when ``amp`` (``train.amp``) and the device computes bf16 natively
    (``native_bf16``); float32 otherwise, so a config runs everywhere, fastest where it can."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and native_bf16(device))
