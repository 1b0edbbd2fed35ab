"""Sets of rendered images of a subject (faces by default): identities x structures, drawn in batches, with
everything known about them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from afvae.data.synthetic import render_cache
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

    def index(self, idx: Tensor) -> "FaceSet":
        """The images ``idx`` (M,) and what is known about them: a set of M."""
        return FaceSet(self.images[idx], self.landmarks[idx], self.identity[idx], self.structure.index(idx),
                       self.appearance.index(idx))

    @staticmethod
    def cat(sets: Sequence["FaceSet"]) -> "FaceSet":
        """The sets one after another."""
        tensors = (torch.cat([getattr(s, k) for s in sets]) for k in ("images", "landmarks", "identity"))
        factors = (type(getattr(sets[0], k)).cat([getattr(s, k) for s in sets]) for k in ("structure", "appearance"))
        return FaceSet(*tensors, *factors)


def render_faces(appearance: Factors, structure: Factors, size: int, batch_size: int = 256, progress: bool = False,
                 subject: Subject = FACES) -> tuple[Tensor, Tensor]:
    """subject.render() in batches: uint8 images (N, 3, size, size) and keypoints (N, P, 2); read from and written
    to the disk cache when ``$AFVAE_RENDER_CACHE`` names one (``render_cache``)."""
    from tqdm.auto import tqdm

    cached = render_cache.entry(subject.name, size, batch_size, appearance, structure)
    if (hit := render_cache.read(cached)) is not None:
        return hit
    n, p = len(structure), subject.schema.n_points
    images, marks = torch.empty(n, 3, size, size, dtype=torch.uint8), torch.empty(n, p, 2)
    for start in tqdm(range(0, n, batch_size), desc=f"rendering {n} {subject.name}", disable=not progress):
        sl = slice(start, start + batch_size)
        x, lm = subject.render(appearance.index(sl) if len(appearance) > 1 else appearance, structure.index(sl), size)
        images[sl], marks[sl] = to_uint8(x), lm
    render_cache.write(cached, images, marks)
    return images, marks


def make_faces(size: int, identities: Sequence[int] | Tensor, images_per_identity: int, seed: int,
               progress: bool = False, subject: Subject = FACES) -> FaceSet:
    """Render images_per_identity structures of each listed identity (ids into the seed's population)."""
    ids = torch.as_tensor([int(i) for i in identities], dtype=torch.int64)
    app, st = subject.identities(ids, images_per_identity, seed)
    app = app.repeat_interleave(images_per_identity)
    images, marks = render_faces(app, st, size, progress=progress, subject=subject)
    return FaceSet(images, marks, ids.repeat_interleave(images_per_identity), st, app)
