"""What a wall time was measured on: the CPU's description and the timing helpers."""
from __future__ import annotations

import math
import time

import torch

from afvae import hardware

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
cpu MHz\t\t: 1996.248

processor\t: 1
model name\t: AMD EPYC
cpu MHz\t\t: 1996.248
"""


def test_the_cpu_is_read_from_cpuinfo(tmp_path, monkeypatch):
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "cpuinfo")
    monkeypatch.setattr(hardware, "native_bf16", lambda device: False)
    d = hardware.describe()
    assert d["cpu"] == "AMD EPYC" and d["cpu_mhz"] == 1996 and d["cpu_count"] >= 1 and d["cpu_isa"]
    assert hardware.summary().startswith(f"AMD EPYC ({d['cpu_isa']}, 2.0 GHz), ") and not d["cpu_bf16"]
    assert hardware.summary(d | {"cpu_bf16": True}).startswith(f"AMD EPYC ({d['cpu_isa']}, bf16, 2.0 GHz), ")


def test_without_cpuinfo_the_cpu_is_still_named(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "missing")
    d = hardware.describe()
    assert d["cpu"] and d["cpu_mhz"] is None
    assert "GHz" not in hardware.summary()


def test_throughput_counts_items_per_second():
    calls = []
    rate = hardware.throughput(lambda: (calls.append(1), time.sleep(0.01)), items_per_call=5, min_seconds=0.1,
                               warmup=2)
    assert len(calls) >= 3  # the warm-up calls, then timed ones
    assert 5 / 1.0 < rate <= 5 / 0.01  # each call takes at least 0.01 s (and far less than a second)


def test_matmul_rate_is_finite_and_positive():
    g = hardware.matmul_gflops(n=128, seconds=0.05)
    assert math.isfinite(g) and g > 0


def test_autocast_is_bf16_only_when_asked_and_native(monkeypatch):
    a, b = torch.randn(4, 8), torch.randn(3, 8)
    with hardware.autocast(False, "cpu"):
        assert torch.nn.functional.linear(a, b).dtype == torch.float32
    with hardware.autocast(True, "cpu"):
        native = torch.nn.functional.linear(a, b).dtype == torch.bfloat16
    assert native == hardware.native_bf16("cpu")
    monkeypatch.setattr(hardware, "native_bf16", lambda device: False)  # an AVX2 CPU: emulated bf16, slower
    with hardware.autocast(True, "cpu"):
        assert torch.nn.functional.linear(a, b).dtype == torch.float32
