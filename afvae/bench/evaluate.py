"""Benchmark: the cost of evaluating 2,000 64-px images against 2,000 real ones (``python -m afvae.bench evaluate``).

Timed: ``ground_truth_errors`` (l1, psnr, ssim, factor_perceptual) of the fakes against their targets, plus
``factor_metrics`` (factor_fd, factor_kid over 100 subsets of 1,000, factor_is on the FactorNet's expression
classes) of the fakes against the real set. Not timed: rendering the synthetic faces and training / loading
the FactorNet (``afvae.features.load_factor_net``, cached after the first run).
The fakes are a fixed degradation of the real images (blur + noise): the timing does not depend on content,
and no generator has to be trained for it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from afvae.config import DataConfig, get_config
from afvae.data import synthetic as syn
from afvae.data.datasets import build_dataset, collate
from afvae.evaluate import factor_columns
from afvae.features import FeatureNet, load_factor_net
from afvae.hardware import throughput
from afvae.metrics import factor_class_probs, factor_metrics, ground_truth_errors

N_IMAGES = 2000


def expression_columns() -> list[int]:
    """FactorNet target columns of the 6 expression weights (layout of ``afvae.features.factor_targets``)."""
    n_targets = 68 * 2 + len(syn.appearance_columns()) + len(syn.structure_columns())
    return factor_columns(n_targets)["expression"]


def stand_in_fakes(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A deterministic degradation standing in for generator outputs: 3x3 box blur + N(0, 0.05) noise.

    x: (N, 3, H, W) in [-1, 1] -> same shape, in [-1, 1].
    """
    g = torch.Generator().manual_seed(seed)
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return (blurred + 0.05 * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def evaluate(real: torch.Tensor, fake: torch.Tensor, net: FeatureNet) -> dict[str, Any]:
    """What is timed: per-image ground-truth errors (fake vs real, pairwise) and the FactorNet proxies."""
    cols = expression_columns()
    errors = ground_truth_errors(fake, real, feature_net=net)
    proxies = factor_metrics(real, fake, net, classifier=lambda x: factor_class_probs(net, x, cols))
    return {**{k: float(v.mean()) for k, v in errors.items()}, **proxies}


VALUE_KEYS = ("l1", "psnr", "ssim", "factor_perceptual", "factor_fd", "factor_kid", "factor_kid_std", "factor_is",
              "factor_is_std", "kid_subsets", "kid_subset_size", "factor_is_splits")


def measure(data: DataConfig, n: int = N_IMAGES, cache_root: str | Path = "results/cache") -> dict[str, Any]:
    """Seconds to ``evaluate`` ``n`` images of ``data`` (train split) against themselves degraded."""
    ds = build_dataset(data, "train")
    if len(ds) < n:
        raise ValueError(f"the train split has {len(ds)} images, fewer than n={n}")
    real = collate(ds, torch.arange(n), keys=["x"])["x"]  # (n, 3, H, W) in [-1, 1]
    fake = stand_in_fakes(real)
    net = load_factor_net(data, root=cache_root, progress=False)
    t0 = time.perf_counter()
    values = evaluate(real, fake, net)  # also the warm-up call
    once = time.perf_counter() - t0
    per_s = throughput(lambda: evaluate(real, fake, net), items_per_call=n, min_seconds=1.0, warmup=0)
    return {"seconds": n / per_s, "seconds_first_call": once, "images_per_s": per_s, "n_images": n,
            "size": data.size, "feature_net": net.name, "factor_net_test_r2": float(net.meta.get("test_r2", "nan")),
            **{f"value_{k}": values[k] for k in VALUE_KEYS}}


def run() -> dict[str, Any]:
    """``seconds_2000_images_64`` on the default preset's 64-px synthetic faces, with the numbers it produced."""
    data = get_config("default").data
    if data.size != 64:
        raise RuntimeError(f"the default preset is {data.size} px; this benchmark is defined at 64 px")
    res = measure(data)
    return {"seconds_2000_images_64": res.pop("seconds"), **res}
