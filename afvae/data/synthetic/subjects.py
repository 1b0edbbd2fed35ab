"""The synthetic subjects side by side (faces, hands, cats): what each samples, draws and annotates, behind one
interface, so that datasets, sets and figures take any of them."""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor

from afvae.boundaries import CAT9, FACE68, HAND21, Schema
from afvae.data.synthetic import cats, factors, geometry, hands, raster
from afvae.data.synthetic.sampling import Factors, identities_of


class Subject(NamedTuple):
    """One procedural subject: its keypoint schema, factor types, samplers and renderer."""

    name: str  # "faces" | "hands" | "cats"
    schema: Schema
    appearance: type[Factors]  # per identity
    structure: type[Factors]  # per image; has create() from plain values and replace()
    sample_appearance: Callable[[int, torch.Generator], Factors]
    sample_structure: Callable[[int, torch.Generator], Factors]
    render: Callable[..., tuple[Tensor, Tensor]]  # (appearance, structure, size) -> x (B, 3, S, S), keypoints
    keypoints: Callable[..., Tensor]  # (appearance, structure, size) -> the keypoints (B, P, 2), without drawing

    def identities(self, identities: Sequence[int] | Tensor, images_per_identity: int, seed: int
                   ) -> tuple[Factors, Factors]:
        """Appearance of each identity (n) and its images' structures (n * images_per_identity, identity-major)."""
        return identities_of(self.sample_appearance, self.sample_structure, identities, images_per_identity, seed)

    def columns(self) -> tuple[list[str], list[str]]:
        """Names of the columns of the appearance and structure vectors (``to_vector``)."""
        g = torch.Generator().manual_seed(0)
        return self.sample_appearance(1, g).columns(), self.sample_structure(1, g).columns()


FACES = Subject("faces", FACE68, factors.Appearance, factors.Structure, factors.sample_appearance,
                factors.sample_structure, raster.render, geometry.landmarks)
HANDS = Subject("hands", HAND21, hands.HandAppearance, hands.HandStructure, hands.sample_hand_appearance,
                hands.sample_hand_structure, hands.render, hands.keypoints)
CATS = Subject("cats", CAT9, cats.CatAppearance, cats.CatStructure, cats.sample_cat_appearance,
               cats.sample_cat_structure, cats.render, cats.keypoints)
SUBJECTS: dict[str, Subject] = {s.name: s for s in (FACES, HANDS, CATS)}
