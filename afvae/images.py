"""Pixel conventions in one place, and PNG writing.

Networks see images as float ``x`` (N, 3, H, W) in [-1, 1]; files hold uint8 in [0, 255]; figures take float
in [0, 1] with channels last. Every conversion between them is here, so they cannot drift apart.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from afvae.atomic import atomic_path


def from_uint8(images: Tensor) -> Tensor:
    """uint8 (..., 3, H, W) in [0, 255] -> float32 in [-1, 1]."""
    return images.float() / 127.5 - 1


def to_uint8(x: Tensor) -> Tensor:
    """Float (..., 3, H, W) in [-1, 1] -> uint8 in [0, 255] (clamped, rounded to nearest), on the CPU.

    The quantisation of the stored images: ``to_uint8(from_uint8(u)) == u``.
    """
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_unit(x: Tensor) -> Tensor:
    """Float in [-1, 1] -> float in [0, 1] (clamped)."""
    return (x.clamp(-1, 1) + 1) / 2


def to_numpy_image(x: Tensor) -> np.ndarray:
    """One image (3, H, W) in [-1, 1] -> (H, W, 3) float in [0, 1], for imshow."""
    return to_unit(x.detach().float().cpu()).permute(1, 2, 0).numpy()


def save_grid(x: Tensor, path: str | Path, nrow: int) -> Path:
    """Images (N, 3, H, W) in [-1, 1] as one PNG grid of ``nrow`` columns, written atomically."""
    from torchvision.utils import save_image  # here, not at the top: importing torchvision costs seconds
    with atomic_path(path) as tmp:
        save_image(to_unit(x.float()), tmp, nrow=nrow, format="png")
    return Path(path)


def write_png(image: np.ndarray, path: str | Path) -> Path:
    """One uint8 image (H, W, 3) as a PNG, written atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="png")
    return Path(path)
