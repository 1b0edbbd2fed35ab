"""What a wall time was measured on: the CPU's description and the timing helpers."""
from __future__ import annotations

import math
import time

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
    d = hardware.describe()
    assert d["cpu"] == "AMD EPYC" and d["cpu_mhz"] == 1996 and d["cpu_count"] >= 1 and d["cpu_isa"]
    assert hardware.summary().startswith(f"AMD EPYC ({d['cpu_isa']}, 2.0 GHz), ")


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
