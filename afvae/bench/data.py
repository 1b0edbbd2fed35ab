"""Folder data streamed from disk (``afvae.data.store``) against what training consumes, and its memory.

* ``stream_img_per_s_{64,256}``: images per second read by ``FolderFaces.get_batch`` (batches of 32 random
  items, page cache warm), images only (``x``) and with the boundary maps drawn (``x``, ``c``, landmarks,
  what the training loop asks for); ``train_img_per_s_{64,256}``: AF-VAE training steps on this machine
  (the default preset's model at 64 px, the paper preset's at 256), so ``headroom_*`` > 1 means the data
  keep up.
* A folder of ``$AFVAE_BENCH_DATA_N`` images (default 200,000) at 64 px is generated in a temporary folder
  (1,000 rendered faces, hard-linked: cheap) and deleted afterwards. In a fresh process: the one-off store
  build, then one epoch of image batches over the training split; ``peak_rss_mb`` is that process's peak
  resident memory (VmHWM), beside ``in_memory_mb``, what holding the split's images takes (the loader
  before streaming held them, twice at its peak). Set the variable to 0 to skip it.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from afvae.config import get_config
from afvae.hardware import throughput

BATCH = 32
DISTINCT = 1000  # rendered faces the generated folders repeat
BIG_N = int(os.environ.get("AFVAE_BENCH_DATA_N", "200000"))


def make_folder(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """A prepared folder of ``n`` images at ``size`` px: ``DISTINCT`` rendered faces, each PNG hard-linked
    ``n / DISTINCT`` times, 10 images per identity, every tenth identity held out."""
    from PIL import Image

    from afvae.data import synthetic as syn

    faces = syn.make_faces(size, range(DISTINCT // 10), 10, seed)
    (root / "images").mkdir(parents=True)
    (root / "distinct").mkdir()
    cells = []
    for i, (img, lm) in enumerate(zip(faces.images.permute(0, 2, 3, 1).numpy(), faces.landmarks.numpy())):
        Image.fromarray(img).save(root / "distinct" / f"{i}.png", compress_level=1)
        cells.append(",".join(f"{v:.4f}" for v in lm.ravel()))
    header = "file,identity,split," + ",".join(f"{a}{i}" for i in range(68) for a in ("x", "y"))
    lines = [header]
    for i in range(n):
        os.link(root / "distinct" / f"{i % DISTINCT}.png", root / "images" / f"{i:06d}.png")
        ident = i // 10
        lines.append(f"images/{i:06d}.png,{ident},{'test' if ident % 10 == 0 else 'train'},{cells[i % DISTINCT]}")
    (root / "landmarks.csv").write_text("\n".join(lines) + "\n")
    (root / "meta.json").write_text(json.dumps({"size": size, "schema": "face68", "n_images": n, "source": "bench"}))
    return root


def stream_rates(root: Path, size: int) -> dict[str, float]:
    """Images per second of get_batch on the folder's training split: images only, and everything."""
    from afvae.data.datasets import FolderFaces

    ds = FolderFaces(root, "train", size=size)
    g = torch.Generator().manual_seed(0)
    draw = lambda: torch.randint(len(ds), (BATCH,), generator=g)  # noqa: E731
    return {"x": throughput(lambda: ds.get_batch(draw(), ["x"]), BATCH),
            "all": throughput(lambda: ds.get_batch(draw()), BATCH)}


def train_rate(scale: str, size: int, batch: int) -> float:
    """AF-VAE training images per second (forward, ELBO, backward, Adam) with ``scale``'s model at ``size`` px."""
    from afvae import losses
    from afvae.model import AFVAE

    cfg = dataclasses.replace(get_config(scale).model, resolution=size)
    torch.manual_seed(0)
    model = AFVAE(cfg, torch.rand(cfg.n_focal, cfg.boundary_channels * 256)).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = (torch.rand(batch, 3, size, size) * 2 - 1).contiguous(memory_format=torch.channels_last)
    c = torch.rand(batch, cfg.boundary_channels, size, size).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        out = model(x, c)
        loss = losses.elbo_terms(x=x, x_hat=out["x_hat"], mu=out["mu"], logvar=out["logvar"], mu_p=out["mu_p"],
                                 logvar_p=out["logvar_p"], beta=1e-5)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return throughput(step, batch, min_seconds=4.0)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: its own address space's, not inherited from a parent)."""
    status = Path("/proc/self/status")
    if status.exists():
        line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _epoch(root: str, queue: mp.Queue) -> None:
    """Child process: open the big folder (building its store), stream one epoch of image batches."""
    from afvae.data.datasets import FolderFaces

    start = peak_rss_mb()
    t0 = time.perf_counter()
    ds = FolderFaces(root, "train", size=64)
    built, rss_open = time.perf_counter() - t0, peak_rss_mb()
    t0 = time.perf_counter()
    for idx in torch.randperm(len(ds), generator=torch.Generator().manual_seed(0)).split(BATCH):
        ds.get_batch(idx, ["x"])
    epoch = time.perf_counter() - t0
    queue.put({"n_train": len(ds), "open_s": built, "epoch_s": epoch, "rss_start_mb": start,
               "rss_open_mb": rss_open, "peak_rss_mb": peak_rss_mb()})


def big_folder(n: int) -> dict[str, Any]:
    """Generate an ``n``-image 64-px folder in a temporary folder, measure the epoch in a child, delete it."""
    from afvae.preflight import folder_counts

    tmp = Path(tempfile.mkdtemp(prefix="afvae-bench-data-"))
    try:
        t0 = time.perf_counter()
        root = make_folder(tmp / "folder", n, 64)
        made = time.perf_counter() - t0
        t0 = time.perf_counter()
        folder_counts(root)
        preflight_s = time.perf_counter() - t0
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_epoch, args=(str(root), q))
        p.start()
        r = q.get()
        p.join()
        store_mb = sum(f.stat().st_size for f in (root / "cache").glob("*.u8")) / 2**20
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"big_n_images": n, "big_n_train": r["n_train"], "big_generate_s": round(made, 1),
            "big_preflight_s": round(preflight_s, 2), "big_open_and_store_build_s": round(r["open_s"], 1),
            "big_epoch_s": round(r["epoch_s"], 1), "big_epoch_img_per_s": round(r["n_train"] / r["epoch_s"]),
            "big_rss_at_start_mb": round(r["rss_start_mb"]), "big_peak_rss_after_open_mb": round(r["rss_open_mb"]),
            "big_peak_rss_mb": round(r["peak_rss_mb"]),
            "big_store_mb": round(store_mb), "big_in_memory_mb": round(r["n_train"] * 3 * 64 * 64 / 2**20)}


def run() -> dict[str, Any]:
    """Stream rates and training rates at 64 and 256 px, headroom, and the big folder's memory."""
    out: dict[str, Any] = {"batch": BATCH}
    if BIG_N > 0:  # first, while this process is small (the child is forked from it)
        out |= big_folder(BIG_N)
    with tempfile.TemporaryDirectory(prefix="afvae-bench-data-") as tmp:
        for size, n, scale, batch in ((64, 4000, "default", BATCH), (256, 1000, "paper", 4)):
            rates = stream_rates(make_folder(Path(tmp) / f"f{size}", n, size), size)
            train = train_rate(scale, size, batch)
            out |= {f"stream_img_per_s_{size}_x": round(rates["x"]),
                    f"stream_img_per_s_{size}_all": round(rates["all"]), f"train_img_per_s_{size}": round(train, 1),
                    f"train_model_{size}": scale, f"train_batch_{size}": batch,
                    f"headroom_{size}": round(rates["all"] / train, 1)}
    return out
