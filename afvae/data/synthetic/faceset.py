"""Sets of rendered images of a subject (faces by default): identities x structures, drawn in batches, with
everything known about them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from afvae.data.synthetic.sampling import Factors
from afvae.data.synthetic.subjects import FACES, Subject
from afvae.images import to_uint8


@dataclass(frozen=True, eq=False)
class FaceSet:
    """Rendered images of a subject: the images and everything known about them."""

    images: Tensor  # (N, 3, H, W) uint8
    landmarks: Tensor  # (N, P, 2) float32 pixels, P = the subject's schema's points (68 for faces)
    identity: Tensor  # (N,) int64 identity ids
    structure: Factors  # N, the subject's Structure
    appearance: Factors  # N, the identity's appearance per image


def render_faces(appearance: Factors, structure: Factors, size: int, batch_size: int = 256, progress: bool = False,
                 subject: Subject = FACES) -> tuple[Tensor, Tensor]:
    """subject.render() in batches: uint8 images (N, 3, size, size) and keypoints (N, P, 2)."""
    from tqdm.auto import tqdm

    n, p = len(structure), subject.schema.n_points
    images, marks = torch.empty(n, 3, size, size, dtype=torch.uint8), torch.empty(n, p, 2)
    for start in tqdm(range(0, n, batch_size), desc=f"rendering {n} {subject.name}", disable=not progress):
        sl = slice(start, start + batch_size)
        x, lm = subject.render(appearance.index(sl) if len(appearance) > 1 else appearance, structure.index(sl), size)
        images[sl], marks[sl] = to_uint8(x), lm
    return images, marks


def make_faces(size: int, identities: Sequence[int] | Tensor, images_per_identity: int, seed: int,
               progress: bool = False, subject: Subject = FACES) -> FaceSet:
    """Render images_per_identity structures of each listed identity (ids into the seed's population)."""
    ids = torch.as_tensor([int(i) for i in identities], dtype=torch.int64)
    app, st = subject.identities(ids, images_per_identity, seed)
    app = app.repeat_interleave(images_per_identity)
    images, marks = render_faces(app, st, size, progress=progress, subject=subject)
    return FaceSet(images, marks, ids.repeat_interleave(images_per_identity), st, app)
