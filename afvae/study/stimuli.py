"""Export a study set: real test images and each method's manipulations of the same (source, target) pairs.

The methods are Table 1's (AF-VAE and the GAN baselines) or AF-VAE ablation variants, trained models cached
by config (``afvae.baselines.compare.trained_method``); each manipulates the same ``n`` pairs of unseen test
identities (``afvae.evaluate.sample_pairs``): source appearance, target
boundary. ``images/real/`` holds, per pair, a real image of the same content: the true target (the source
identity rendered under the target's structure) on synthetic data, the target item itself on other data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from afvae.data.datasets import build_dataset
from afvae.baselines import compare
from afvae.evaluate import generate, sample_pairs
from afvae.images import to_uint8, write_png
from afvae.tables import write_json
from afvae.study.design import write_trials

DEFAULT_METHODS = compare.ORDER  # the methods of Table 1


def pair_name(i: int) -> str:
    return f"{i:04d}"


def save_images(x: Tensor, folder: str | Path) -> list[Path]:
    """Write images (N, 3, H, W) in [-1, 1] as ``folder/0000.png ...`` (each written atomically)."""
    folder = Path(folder)
    pixels = to_uint8(x)  # (N, 3, H, W) uint8
    paths = []
    for i, img in enumerate(pixels.permute(0, 2, 3, 1).numpy()):
        path = folder / f"{pair_name(i)}.png"
        paths.append(write_png(img, path))
    return paths


def prepare_study(out: str | Path, methods: Sequence[str] = DEFAULT_METHODS, *, scale: str = "default",
                  data: str = "synthetic", seed: int = 0, n: int = 12, results: str | Path = "results",
                  progress: bool = True) -> Path:
    """Write the study set ``out`` (images, ``study.json``, ``trials.json``) from the trained ``methods``.

    Each method is trained first when ``results/runs`` does not hold it. Folders of other methods already
    in ``out/images`` are kept and enter the trials too.
    """
    if n < 1:
        raise ValueError(f"need at least one pair, got n={n}")
    out = Path(out)
    torch.manual_seed(seed)
    for k, method in enumerate(tqdm(list(methods), desc="study methods", disable=not progress)):
        model, cfg, _ = compare.trained_method(method, scale, data, seed, results, progress=progress)
        dataset = build_dataset(cfg.data, "test")
        src, tgt = sample_pairs(dataset.identity, n, seed)
        g = generate(model, dataset, src, tgt, progress=False)
        save_images(g["x_out"], out / "images" / method)
        if k == 0:
            save_images(g["x"], out / "images" / "source")
            save_images(g["x_other"], out / "images" / "target")
            save_images(g["x_truth"] if g["x_truth"] is not None else g["x_other"], out / "images" / "real")
    meta = {"name": out.name, "scale": scale, "data": data, "seed": seed, "n_pairs": n,
            "generated_methods": list(methods), "real": "true targets" if data == "synthetic" else "target items"}
    write_json(out / "study.json", meta)
    return write_trials(out)
