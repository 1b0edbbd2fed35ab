"""What each notebook needs of a prepared folder, checked before the first notebook runs.

A folder too small for a notebook makes it fail minutes in, on whichever need it meets first (a batch larger
than the training set, fewer than two test identities, too few test faces for a figure). ``shortfalls`` reads
only ``meta.json`` and the ``identity`` and ``split`` columns of ``landmarks.csv`` (no torch, well under a
second) and returns, per notebook, every need the folder misses with the minimum; the pipeline skips those
notebooks and lists them all at once. The synthetic data meets every need.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from afvae.config import PRESETS, TUTORIAL_SIZES

SYNTHETIC_ONLY = {"07_manipulation", "08_identity", "12_hands_cats", "13_failures",
                  "14_prior_beta"}  # need the renderer: its truth, hands and cats
FIG4_TARGETS = 3  # 09_comparison: TARGET_EXPRESSIONS, each a test item of another identity per source
POSTERIOR_SWAPS = 6  # 11_cvae_tutorial: N_SAMPLES test faces encoded for the posterior swaps
MIN_PAIR_IMAGES = 2  # Frechet distance and KID fit statistics of at least two test images
TEST_FRACTION = 0.1  # afvae.data.real.prepare's split: this share of the people (at least one) is held out

LABELS = {"train_images": "training images", "test_images": "test images", "test_identities": "test identities",
          "other_identity_images": "test images of other identities for every test identity"}


@dataclass(frozen=True)
class Counts:
    """What a folder holds, in the terms of ``LABELS``."""

    train_images: int
    test_images: int
    test_identities: int
    other_identity_images: int  # the fewest test images of other identities, over the test identities


def folder_counts(root: str | Path) -> Counts:
    """The counts of a prepared folder (ValueError / FileNotFoundError when it is not one)."""
    root = Path(root)
    meta, table = root / "meta.json", root / "landmarks.csv"
    if not meta.is_file():
        raise FileNotFoundError(f"{meta} is missing: {root} is not a prepared data folder; make one with "
                                f"'python -m afvae.data.real.prepare SOURCE --root DIR --out {root}' "
                                "(see README, Real data)")
    try:
        json.loads(meta.read_text())
        df = pd.read_csv(table, usecols=["identity", "split"])
    except (ValueError, OSError) as e:
        raise ValueError(f"{root}: meta.json or landmarks.csv is unreadable ({e}); prepare the folder again") from None
    test = df.loc[df["split"] == "test", "identity"].value_counts()
    n_test = int(test.sum())
    return Counts(int((df["split"] == "train").sum()), n_test, len(test), int(n_test - test.max()) if n_test else 0)


def needs(scale: str) -> dict[str, dict[str, int]]:
    """Notebook stem -> {count: minimum} at ``scale`` (the counts of ``LABELS``)."""
    cfg = PRESETS[scale]
    batch = cfg.train.batch_size
    tutorial = PRESETS["smoke"].replace(train=TUTORIAL_SIZES["smoke" if scale == "smoke" else "default"]["train"])
    pairs = {"train_images": batch, "test_identities": 2, "test_images": MIN_PAIR_IMAGES}
    return {
        "00_data": {"train_images": 1, "test_images": 1},
        "01_focal_points": {"train_images": cfg.model.n_focal},  # k-means with K focal points
        "02_train": {"train_images": batch, "test_images": 1},
        "03_ablation": pairs,
        "04_pixel_shuffle": {"train_images": batch, "test_images": 1},
        "05_weight_norm": {"train_images": batch, "test_images": 1},
        "06_interpolation": {"train_images": batch, "test_identities": 2},
        "09_comparison": {**pairs, "other_identity_images": FIG4_TARGETS},
        "10_explorer": {"train_images": batch, "test_identities": 2},
        "11_cvae_tutorial": {"train_images": tutorial.train.batch_size, "test_images": POSTERIOR_SWAPS},
    }


def shortfalls(scale: str, data: str, stems: list[str]) -> dict[str, str]:
    """Notebooks of ``stems`` that cannot run on ``data`` at ``scale`` -> why (every need missed, with minima)."""
    if data == "synthetic":
        return {}
    counts = folder_counts(data)
    out = {s: "needs the synthetic renderer's ground truth (DATA=synthetic)" for s in stems if s in SYNTHETIC_ONLY}
    for stem, need in needs(scale).items():
        missed = [f">= {n} {LABELS[k]} (has {getattr(counts, k)})" for k, n in need.items() if getattr(counts, k) < n]
        if stem in stems and missed:
            out[stem] = "needs " + ", ".join(missed)
    return out


def minimum_folder(scale: str) -> str:
    """The smallest folder of people's photos on which every notebook runs at ``scale``, in words."""
    most = {k: max(n.get(k, 0) for n in needs(scale).values()) for k in LABELS}
    people = next(k for k in range(2, 10_000) if max(1, round(TEST_FRACTION * k)) >= most["test_identities"])
    per_person = max(-(-most["test_images"] // most["test_identities"]), most["other_identity_images"])
    return (f"at least {people} people (the test split holds {TEST_FRACTION:.0%} of them) with {per_person} "
            f"photos each, and at least {most['train_images']} training images")
