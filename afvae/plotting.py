"""Figures: the shared style and ``save_figure``. The only module that imports matplotlib."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt  # headless runs fall back to the Agg backend by themselves
import numpy as np
import torch

FIGURES = Path("figures")

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "image.interpolation": "nearest",
}


def use_style() -> None:
    """Apply the project's matplotlib style."""
    plt.rcParams.update(STYLE)


def save_figure(fig: plt.Figure, name: str, out_dir: str | Path = FIGURES) -> Path:
    """Save ``fig`` as ``out_dir/name.png`` atomically and return the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / (name if name.endswith(".png") else f"{name}.png")
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    tmp.replace(path)
    return path


def to_numpy_image(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) float in [0, 1] for imshow."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def boundary_rgb(c: torch.Tensor) -> np.ndarray:
    """(13, H, W) boundary map in [0, 1] -> (H, W, 3) with one colour per curve, for imshow."""
    k = c.shape[0]
    colours = torch.tensor(plt.get_cmap("tab20")(np.linspace(0, 1, max(k, 2)))[:k, :3], dtype=torch.float32)
    rgb = torch.einsum("khw,kc->hwc", c.detach().float().cpu(), colours)
    return rgb.clamp(0, 1).numpy()


use_style()
