"""Boundary-map throughput: full 13-channel FACE68 maps per second, batched, at 64 / 128 / 256 px.

Landmarks come from a 256-px image (as in the data pipeline) and are rendered at each map size
with the default sigma. Targets on a 2-core CPU: 2,000 maps/s at 64 px and 200 maps/s at 256 px.
"""
from __future__ import annotations

import torch

from afvae.boundaries import boundary_map, mean_face_landmarks
from afvae.hardware import throughput

BATCH = 32  # the default training batch (TrainConfig.batch_size)
IMAGE_SIZE = 256
TARGETS = {64: 2000, 256: 200}


def _rates(lm: torch.Tensor, suffix: str = "") -> dict[str, float]:
    """Maps per second of ``boundary_map`` on landmarks (B, 68, 2) at 64, 128 and 256 px."""
    rates = {}
    for size in (64, 128, 256):
        rate = throughput(lambda s=size: boundary_map(lm, s, image_size=IMAGE_SIZE), BATCH)
        rates[f"maps_per_s_{size}{suffix}"] = round(rate, 1)
    return rates


def run() -> dict[str, float | int | str | bool]:
    """Maps per second at each size with torch's threads and with one thread, the batch size and the targets."""
    g = torch.Generator().manual_seed(0)
    lm = mean_face_landmarks(IMAGE_SIZE) + 2.0 * torch.randn(BATCH, 68, 2, generator=g)  # (B, 68, 2)
    results: dict[str, float | int | str | bool] = {"batch_size": BATCH, "image_size": IMAGE_SIZE, "device": "cpu"}
    results |= _rates(lm)
    threads = torch.get_num_threads()
    try:  # on shared cores one thread can beat two: show both
        torch.set_num_threads(1)
        results |= _rates(lm, "_1thread")
    finally:
        torch.set_num_threads(threads)
    for size, target in TARGETS.items():
        results[f"target_maps_per_s_{size}"] = target
        results[f"meets_target_{size}"] = results[f"maps_per_s_{size}"] >= target
    return results
