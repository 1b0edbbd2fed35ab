"""Command-line entry points (argparse lives here, never in the library modules)."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from afvae.config import PRESETS, VARIANTS, Config, get_config


def load_config(spec: str, variant: str = "full") -> Config:
    """A preset name (smoke | default | paper) or a JSON file written by ``Config.to_json``."""
    if spec in PRESETS:
        return get_config(spec, variant)
    path = Path(spec)
    if not path.is_file():
        raise SystemExit(f"config {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a JSON file")
    try:
        cfg = Config.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise SystemExit(f"{path}: not a valid afvae config ({e})") from e
    return cfg.replace(name=variant, **VARIANTS[variant]) if variant != "full" else cfg


def train_main(argv: list[str] | None = None) -> None:
    """``python -m afvae.train CONFIG [--variant V] [--out DIR] [--resume] [--device D] [--steps N]``."""
    from afvae.data.datasets import for_data
    from afvae.train import run_dir, train

    p = argparse.ArgumentParser(prog="python -m afvae.train", description="Train one AF-VAE variant.")
    p.add_argument("config", help="preset (smoke | default | paper) or a config JSON")
    p.add_argument("--variant", default="full", choices=sorted(VARIANTS))
    p.add_argument("--out", help="run folder (default results/runs/NAME-HASH)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--device", help="cpu | cuda | cuda:N (overrides the config)")
    p.add_argument("--steps", type=int, help="total steps (overrides the config)")
    p.add_argument("--data", help="'synthetic' or a prepared data folder (overrides the config)")
    a = p.parse_args(argv)
    cfg = load_config(a.config, a.variant)
    train_changes = {k: v for k, v in {"device": a.device, "steps": a.steps}.items() if v is not None}
    if a.device and a.device.startswith("cuda"):
        train_changes["amp"] = True
    cfg = cfg.replace(train=train_changes)
    if a.data:
        cfg = for_data(cfg, a.data)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(a.out) if a.out else run_dir(cfg)
    history = train(cfg, out, resume=a.resume)
    if history:
        last = history[-1]
        print(f"step {last['step']}: loss {last['loss']:.4f}  l1 {last['l1']:.4f}  kl {last['kl']:.2f}  -> {out}")
