"""Drawn hand skeletons in the hand21 layout: a small keypoint dataset built by the tests (no real hands ship).

Each identity has its own skin, background and stroke width (appearance); each image its own rotation, spread
and finger curls (structure). ``write_hands`` writes ``ROOT/hand_*.png`` and ``ROOT/keypoints.csv`` for
``python -m afvae.data.real.prepare keypoints --schema hand21``. ``blank`` checks the figures the folder pipelines
write.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

SEGMENTS = {"thumb": (0.13, 0.10, 0.08, 0.07), "index": (0.30, 0.13, 0.09, 0.07), "middle": (0.31, 0.14, 0.10, 0.07),
            "ring": (0.30, 0.13, 0.09, 0.07), "pinky": (0.27, 0.10, 0.07, 0.06)}  # wrist->base, then 3 phalanges
BASE_ANGLES = (-0.85, -0.30, -0.06, 0.17, 0.40)  # radians from "up", thumb to pinky


def hand_keypoints(rng: np.random.Generator, size: int) -> np.ndarray:
    """One hand pose: (21, 2) pixels (wrist, then base-to-tip joints of thumb, index, middle, ring, pinky)."""
    rotation, spread = rng.uniform(-0.4, 0.4), rng.uniform(0.6, 1.3)
    wrist = np.array([0.5, 0.85])
    points = [wrist]
    for f, lengths in enumerate(SEGMENTS.values()):
        angle = rotation + BASE_ANGLES[f] * spread
        curl = rng.uniform(0.0, 1.2)  # seen from the palm, a curling finger foreshortens and leans inwards
        p = wrist
        for j, length in enumerate(lengths):
            bend = curl * j / 3
            direction = angle + (0.5 if f == 0 else 0.15) * bend
            p = p + length * np.cos(bend) * np.array([np.sin(direction), -np.cos(direction)])
            points.append(p)
    return np.stack(points) * size * np.array([1.0, 0.95])


def draw_hand(points: np.ndarray, size: int, skin: tuple, background: tuple, width: int) -> Image.Image:
    """Palm polygon and finger strokes over a plain background: (21, 2) pixels -> RGB image."""
    img = Image.new("RGB", (size, size), background)
    d = ImageDraw.Draw(img)
    d.polygon([tuple(points[i]) for i in (0, 1, 5, 9, 13, 17)], fill=skin)
    for f in range(5):
        joints = points[1 + 4 * f:5 + 4 * f]  # base to tip; the palm polygon covers wrist -> base
        d.line([tuple(p) for p in joints], fill=skin, width=width, joint="curve")
        for p in joints:
            d.ellipse([p[0] - width / 2, p[1] - width / 2, p[0] + width / 2, p[1] + width / 2], fill=skin)
    return img


def write_hands(root: str | Path, n_identities: int = 20, per_identity: int = 8, size: int = 96, seed: int = 0) -> Path:
    """Draw n_identities x per_identity hands into root with a keypoints.csv (file, identity, x0, y0, ...)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_identities):
        skin = tuple(int(v) for v in rng.uniform([120, 70, 40], [255, 200, 170]))
        background = tuple(int(v) for v in rng.uniform(0, 110, 3))
        width = int(rng.integers(max(3, size // 16), max(4, size // 9)))
        for k in range(per_identity):
            pts = hand_keypoints(rng, size)
            name = f"hand_{i:03d}_{k:02d}.png"
            draw_hand(pts, size, skin, background, width).save(root / name)
            rows.append({"file": name, "identity": f"person{i:03d}",
                         **{f"{a}{p}": pts[p, j] for p in range(21) for j, a in enumerate("xy")}})
    pd.DataFrame(rows).to_csv(root / "keypoints.csv", index=False, float_format="%.3f")
    return root


def blank(path: str | Path) -> bool:
    """Whether the image at ``path`` is (nearly) one flat grey level: what a figure that drew nothing looks like."""
    img = np.asarray(Image.open(path).convert("L"), dtype=float)
    return img.std() < 5
