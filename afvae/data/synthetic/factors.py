"""The sampled factors of a synthetic face: per-identity Appearance and per-image Structure, batched.

Their samplers are deterministic from a ``torch.Generator``; the batching, the shared samplers and the
identity split are ``afvae.data.synthetic.sampling``'s.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as nnf
from torch import Tensor

from afvae.data.synthetic.sampling import (Factors, background_noise, identities_of, muted, pick, sample_light,
                                           skin_tone, uniform)

EXPRESSIONS = ("neutral", "smile", "surprise", "anger", "disgust", "eyes_closed")
HAIR_STYLES = ("bald", "short", "bangs", "bob", "long")
RENDER_YAW = 90.0  # the renderer draws any |yaw| up to this (profile); the training data sample up to 60
SHAPE_FACTORS = ("face_width", "face_length", "jaw_width", "eye_spacing", "eye_size",
                 "nose_length", "nose_width", "mouth_width", "lip_thickness", "brow_height")

# name -> width of each Appearance field, in to_vector order. "colour" fields never move a landmark;
# the "shape" field (identity geometry) does.
COLOUR_FIELDS: dict[str, int] = {
    "skin": 3, "hair": 3, "iris": 3, "lips": 3, "shirt": 3, "bg_top": 3, "bg_bottom": 3, "bg_noise": 16,
    "light_dir": 3, "light": 2, "hair_style": len(HAIR_STYLES), "hair_volume": 1, "glasses": 1,
    "glasses_colour": 3, "beard": 1,
}
SHAPE_FIELDS: dict[str, int] = {"shape": len(SHAPE_FACTORS)}
APPEARANCE_FIELDS: dict[str, int] = {**COLOUR_FIELDS, **SHAPE_FIELDS}


@dataclass(frozen=True, eq=False)
class Appearance(Factors):
    """Per-identity appearance, batched; RGB colours are albedos in [0, 1]."""

    skin: Tensor  # (B, 3)
    hair: Tensor  # (B, 3), also eyebrows and beard
    iris: Tensor  # (B, 3)
    lips: Tensor  # (B, 3)
    shirt: Tensor  # (B, 3)
    bg_top: Tensor  # (B, 3) background colour at the top row
    bg_bottom: Tensor  # (B, 3) ... and at the bottom row
    bg_noise: Tensor  # (B, 16) 4 x 4 grid of brightness offsets, bilinearly upsampled
    light_dir: Tensor  # (B, 3) unit vector towards the light, camera frame (x right, y up, z to camera)
    light: Tensor  # (B, 2) diffuse intensity, ambient level
    hair_style: Tensor  # (B, 5) weights over HAIR_STYLES (one-hot when sampled; mixes interpolate)
    hair_volume: Tensor  # (B, 1) in [-1, 1]
    glasses: Tensor  # (B, 1) 0 or 1
    glasses_colour: Tensor  # (B, 3)
    beard: Tensor  # (B, 1) density in [0, 1]
    shape: Tensor  # (B, 10) SHAPE_FACTORS in [-1, 1]: the only fields that move landmarks

    def to_vector(self) -> Tensor:
        """(B, A) features, A = 63, in APPEARANCE_FIELDS order (see appearance_columns())."""
        return torch.cat([getattr(self, k) for k in APPEARANCE_FIELDS], dim=1)

    @classmethod
    def from_vector(cls, v: Tensor) -> "Appearance":
        """Inverse of to_vector: (B, A) -> Appearance."""
        return cls(**dict(zip(APPEARANCE_FIELDS, v.float().split(list(APPEARANCE_FIELDS.values()), dim=1))))

    def columns(self) -> list[str]:
        """Names of the to_vector() columns (``appearance_columns()``)."""
        return appearance_columns()

    def with_colours_of(self, other: "Appearance") -> "Appearance":
        """This identity's shape with ``other``'s colour factors: the landmarks do not change."""
        return self.replace(**{k: getattr(other, k) for k in COLOUR_FIELDS})


@dataclass(frozen=True, eq=False)
class Structure(Factors):
    """Per-image structure, batched: head pose in degrees and expression weights."""

    yaw: Tensor  # (B,) degrees, > 0 turns the face to the image right
    pitch: Tensor  # (B,) degrees, > 0 looks up
    roll: Tensor  # (B,) degrees, > 0 tilts counter-clockwise in the image
    expression: Tensor  # (B, 6) weights over EXPRESSIONS in [0, 1]; neutral = 1 - sum of the others

    def to_vector(self) -> Tensor:
        """(B, S) features, S = 9: yaw, pitch, roll in radians, then the 6 expression weights."""
        pose = torch.stack([self.yaw, self.pitch, self.roll], dim=1)
        return torch.cat([torch.deg2rad(pose), self.expression], dim=1)

    @classmethod
    def from_vector(cls, v: Tensor) -> "Structure":
        """Inverse of to_vector: (B, S) -> Structure."""
        pose = torch.rad2deg(v[:, :3].float())
        return cls(pose[:, 0], pose[:, 1], pose[:, 2], v[:, 3:].float())

    def columns(self) -> list[str]:
        """Names of the to_vector() columns (``structure_columns()``)."""
        return structure_columns()

    @classmethod
    def create(cls, yaw: float | Sequence[float] | Tensor = 0.0, pitch: float | Sequence[float] | Tensor = 0.0,
               roll: float | Sequence[float] | Tensor = 0.0, expression: str | Sequence[str] | Tensor = "neutral",
               intensity: float | Sequence[float] | Tensor = 1.0) -> "Structure":
        """Structures from plain values; scalars broadcast to the longest argument.

        ``expression`` is a name, a list of names or (B, 6) weights; ``intensity`` scales a named expression.
        """
        if isinstance(expression, Tensor):
            expr = expression.float().reshape(-1, len(EXPRESSIONS))
        else:
            names = [expression] if isinstance(expression, str) else list(expression)
            expr = nnf.one_hot(torch.tensor([EXPRESSIONS.index(n) for n in names]), len(EXPRESSIONS)).float()
        vals = [torch.as_tensor(a, dtype=torch.float32).reshape(-1) for a in (yaw, pitch, roll, intensity)]
        n = max([len(v) for v in vals] + [expr.shape[0]])
        yaw_, pitch_, roll_, amount = (v.expand(n) if len(v) == 1 else v for v in vals)
        expr = expr.expand(n, -1)
        if not isinstance(expression, Tensor):
            expr = expr * amount[:, None]
        return cls(yaw_.clone(), pitch_.clone(), roll_.clone(), _with_neutral(expr))


AppearanceBatch = Appearance  # the batch is the type: every field has a leading batch dimension
StructureBatch = Structure


def _with_neutral(expr: Tensor) -> Tensor:
    """(B, 6) -> the same with the neutral weight set to 1 - sum of the others (at least 0)."""
    return torch.cat([(1 - expr[:, 1:].sum(1, keepdim=True)).clamp_min(0), expr[:, 1:]], dim=1)


def appearance_columns() -> list[str]:
    """Names of the A = 63 columns of Appearance.to_vector()."""
    suffix = {3: ("r", "g", "b")}
    named = {"light_dir": ("x", "y", "z"), "light": ("intensity", "ambient"), "hair_style": HAIR_STYLES,
             "shape": SHAPE_FACTORS, "bg_noise": tuple(f"{i:02d}" for i in range(16))}
    cols = []
    for name, width in APPEARANCE_FIELDS.items():
        parts = named.get(name, suffix.get(width, ()))
        cols += [name] if width == 1 else [f"{name}_{p}" for p in parts]
    return cols


def structure_columns() -> list[str]:
    """Names of the S = 9 columns of Structure.to_vector()."""
    return ["yaw_rad", "pitch_rad", "roll_rad", *(f"expr_{e}" for e in EXPRESSIONS)]


# =========================================================================================================
# Sampling
# =========================================================================================================

_HAIR_COLOURS = ((0.07, 0.05, 0.04), (0.22, 0.13, 0.07), (0.42, 0.27, 0.14), (0.80, 0.64, 0.38),
                 (0.58, 0.24, 0.09), (0.72, 0.71, 0.70))
_IRIS_COLOURS = ((0.30, 0.17, 0.07), (0.17, 0.10, 0.05), (0.45, 0.36, 0.15), (0.28, 0.46, 0.25),
                 (0.30, 0.50, 0.78), (0.48, 0.54, 0.60))
_HAIR_STYLE_P = (0.10, 0.30, 0.20, 0.20, 0.20)


def sample_appearance(n: int, generator: torch.Generator) -> Appearance:
    """``n`` random identities, deterministic given the generator's state."""
    g = generator
    skin = skin_tone(g, n)
    lips = (skin * torch.tensor([0.86, 0.56, 0.56]) + torch.tensor([0.10, 0.0, 0.02])).clamp(0, 1)
    lipstick = (uniform(g, n, 1) < 0.15).float()
    lips = lips * (1 - lipstick) + lipstick * torch.tensor([0.72, 0.12, 0.22]) * (0.7 + 0.3 * uniform(g, n, 1))
    light_dir, light = sample_light(g, n)
    style = torch.multinomial(torch.tensor(_HAIR_STYLE_P), n, replacement=True, generator=g)
    glasses = (uniform(g, n, 1) < 0.2).float()
    frame = torch.where(uniform(g, n, 1) < 0.5, 0.05 + 0.15 * uniform(g, n, 1).expand(n, 3), muted(g, n) * 0.7)
    beard = (uniform(g, n, 1) < 0.2).float() * (0.5 + 0.5 * uniform(g, n, 1))
    return Appearance(
        skin=skin, hair=pick(g, _HAIR_COLOURS, n, 0.03), iris=pick(g, _IRIS_COLOURS, n, 0.03),
        lips=lips.clamp(0, 1), shirt=muted(g, n), bg_top=muted(g, n), bg_bottom=muted(g, n),
        bg_noise=background_noise(g, n), light_dir=light_dir, light=light,
        hair_style=nnf.one_hot(style, len(HAIR_STYLES)).float(), hair_volume=2 * uniform(g, n, 1) - 1,
        glasses=glasses, glasses_colour=frame, beard=beard, shape=2 * uniform(g, n, len(SHAPE_FACTORS)) - 1,
    )


def sample_structure(n: int, generator: torch.Generator, *, max_yaw: float = 60.0, max_pitch: float = 20.0,
                     max_roll: float = 15.0, min_intensity: float = 0.3, mix: float = 0.25) -> Structure:
    """``n`` random structures: pose uniform in the given ranges (degrees), one dominant expression.

    ``max_yaw`` is at most RENDER_YAW (90: profile); the embedded data sets keep the default 60. The dominant
    expression is uniform over EXPRESSIONS with intensity in [min_intensity, 1]; with probability ``mix`` a second
    one is added at intensity up to 0.35.
    """
    if not 0 <= max_yaw <= RENDER_YAW:
        raise ValueError(f"max_yaw must be in [0, {RENDER_YAW:g}] degrees, got {max_yaw}")
    g = generator
    yaw, pitch, roll = ((2 * uniform(g, n) - 1) * m for m in (max_yaw, max_pitch, max_roll))
    k = len(EXPRESSIONS)
    main = nnf.one_hot(torch.randint(k, (n,), generator=g), k).float()
    main = main * (min_intensity + (1 - min_intensity) * uniform(g, n, 1))
    second = nnf.one_hot(torch.randint(k, (n,), generator=g), k).float()
    room = 1 - main.sum(1, keepdim=True)  # keep the weights' sum at most 1
    second = second * torch.minimum(0.35 * uniform(g, n, 1), room) * (uniform(g, n, 1) < mix).float()
    expr = main + second * (main == 0).float()
    return Structure(yaw, pitch, roll, _with_neutral(expr))


def sample_identities(identities: Sequence[int] | Tensor, images_per_identity: int, seed: int
                      ) -> tuple[Appearance, Structure]:
    """Appearance of each identity (n) and its images' structures (n * images_per_identity, identity-major)."""
    return identities_of(sample_appearance, sample_structure, identities, images_per_identity, seed)
