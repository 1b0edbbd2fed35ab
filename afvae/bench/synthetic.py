"""Throughput of the synthetic face renderer: images per second at 32 / 64 / 128 / 256 px, batched on CPU.

``render`` draws on one thread by default (its small ops stall when OpenMP threads share a busy CPU);
each size is also timed with the process's thread count. ``images_per_s_{size}`` is the better of the
two (``threads_{size}`` says which); the raw rates are ``images_per_s_{size}_t{n}``.
"""
from __future__ import annotations

from typing import Any

import torch

from afvae.data.synthetic import render, sample_appearance, sample_structure
from afvae.hardware import throughput

BATCH = {32: 256, 64: 128, 128: 64, 256: 16}  # images per render call
TARGET_64 = 300  # images / s at 64 px


def images_per_s(size: int, batch: int, threads: int, seed: int = 0) -> float:
    """Rendered images per second at ``size`` px, ``batch`` random faces per call, on ``threads`` threads."""
    g = torch.Generator().manual_seed(seed)
    app, st = sample_appearance(batch, g), sample_structure(batch, g)
    return throughput(lambda: render(app, st, size, threads=threads), batch, min_seconds=2.0)


def run() -> dict[str, Any]:
    """images_per_s_{32,64,128,256} (best thread count), the raw rates, and the 64 px target."""
    counts = sorted({1, torch.get_num_threads()})
    out: dict[str, Any] = {}
    for size, batch in BATCH.items():
        rates = {n: images_per_s(size, batch, n) for n in counts}
        best = max(rates, key=rates.__getitem__)
        out[f"images_per_s_{size}"], out[f"threads_{size}"] = round(rates[best], 1), best
        out.update({f"images_per_s_{size}_t{n}": round(r, 1) for n, r in rates.items()})
    out["target_images_per_s_64"] = TARGET_64
    out["meets_target_64"] = out["images_per_s_64"] >= TARGET_64
    out["batch_sizes"] = ",".join(f"{s}:{b}" for s, b in BATCH.items())
    return out
