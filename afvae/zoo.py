"""The shipped reference models: trained once with the ``long`` preset, their edits scored along the way.

``python -m afvae.zoo train [NAME ...] --runs DIR`` trains each model (AF-VAE, its Table 3 variants, the GAN
baselines) into ``DIR/NAME-HASH``, resuming exactly where an earlier sitting stopped. At every checkpoint it
scores the edit benchmark of ``afvae.quality`` (200 yaw and 200 expression edits of unseen faces) with the
evaluated weights (the EMA) and with the raw ones, into the run's ``curve.jsonl``: quality against images seen,
from the default budget to the long one.
"""
from __future__ import annotations

import argparse

from afvae.cli import add_debug, fail

AFVAE_NAMES = ("full", "no_kl", "standard_prior", "gmm_sampled", "deconv", "batchnorm", "no_norm")
BASELINE_NAMES = ("pix2pixHD", "StarGAN", "GANimation")
NAMES = AFVAE_NAMES + BASELINE_NAMES
SCALE = "long"
CURVE = "curve.jsonl"


def parser() -> argparse.ArgumentParser:
    """``python -m afvae.zoo``'s arguments."""
    p = argparse.ArgumentParser(prog="python -m afvae.zoo", description="Train the shipped reference models.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train (or resume) models of the long preset, scoring edits at checkpoints")
    t.add_argument("names", nargs="*", default=list(NAMES), metavar="NAME",
                   help=f"models to train, in order (default: all of {', '.join(NAMES)})")
    t.add_argument("--runs", required=True, help="folder of the runs (keep it outside the work tree)")
    t.add_argument("--cache", default="results/cache", help="feature and scoring networks' cache")
    return add_debug(p)


if __name__ == "__main__":  # parse before torch is imported
    ARGS = parser().parse_args()

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from afvae.atomic import write_text
from afvae.baselines import config as baseline_config
from afvae.checkpoint import run_dir
from afvae.config import Config, get_config
from afvae.data.datasets import build_dataset
from afvae.features import load_factor_net
from afvae.methods import Method
from afvae.quality import EditSet, edit_quality, edit_set
from afvae.train import fit

log = logging.getLogger(__name__)


def zoo_config(name: str, scale: str = SCALE) -> Config:
    """The config of reference model ``name``: an AF-VAE variant or a GAN baseline at preset ``scale``."""
    if name in BASELINE_NAMES:
        return baseline_config(scale, name)
    if name in AFVAE_NAMES:
        return get_config(scale, name)
    raise ValueError(f"unknown reference model {name!r}; choose one of {', '.join(NAMES)}")


def read_curve(run: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's ``curve.jsonl`` (one per scored checkpoint); [] before any."""
    path = Path(run) / CURVE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def curve_callback(cfg: Config, run: Path, edits: EditSet, scorer: Any) -> Any:
    """``fit``'s callback: at every checkpoint step, score the evaluated and the raw weights into ``CURVE``
    (rows of later steps, left by an interrupted sitting, are replaced)."""
    tc = cfg.train

    def score(done: int, method: Method) -> None:
        if done % tc.checkpoint_every and done != tc.steps:
            return
        t0 = time.perf_counter()
        row: dict[str, Any] = {"step": done, "images_seen": done * tc.batch_size}
        row |= edit_quality(method.evaluated, edits, scorer)
        if method.ema is not None:
            row |= {f"raw_{k}": v for k, v in edit_quality(method.model, edits, scorer).items()}
        row["eval_seconds"] = time.perf_counter() - t0
        rows = [r for r in read_curve(run) if r["step"] < done] + [row]
        write_text(run / CURVE, "".join(json.dumps(r) + "\n" for r in rows))
        log.info("%s step %d: yaw_ssim %.3f identity_sim %.3f", cfg.name, done, row["yaw_ssim"], row["identity_sim"])

    return score


def train(name: str, runs: str | Path, cache: str | Path = "results/cache", scale: str = SCALE) -> Path:
    """Train (or resume, or find finished) reference model ``name`` into ``runs/NAME-HASH`` -> that folder."""
    cfg = zoo_config(name, scale)
    run = run_dir(cfg, runs)
    scorer = load_factor_net(cfg.data, cache)
    edits = edit_set(build_dataset(cfg.data, "test"), n_yaw=200, n_expression=200, seed=0)
    with torch.random.fork_rng(devices=[]):
        fit(cfg, run, resume=True, cache_root=cache, callback=curve_callback(cfg, run, edits, scorer))
    return run


def run(a: argparse.Namespace) -> None:
    """Do what the parsed arguments ``a`` say; errors as one line, exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        for name in a.names:
            print(f"{name}: {train(name, a.runs, a.cache)}", flush=True)
    except (ValueError, OSError, FloatingPointError) as e:
        fail("python -m afvae.zoo", e, a.debug)


if __name__ == "__main__":
    run(ARGS)
