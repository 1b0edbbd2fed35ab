"""The sampled factors of a synthetic face: per-identity Appearance and per-image Structure, batched.

Their samplers (deterministic from a ``torch.Generator``) and the identity split: each identity draws its
appearance and structures from its own generator, and a seeded tenth of identities is held out.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence, TypeVar

import torch
import torch.nn.functional as nnf
from torch import Tensor

EXPRESSIONS = ("neutral", "smile", "surprise", "anger", "disgust", "eyes_closed")
HAIR_STYLES = ("bald", "short", "bangs", "bob", "long")
SHAPE_FACTORS = ("face_width", "face_length", "jaw_width", "eye_spacing", "eye_size",
                 "nose_length", "nose_width", "mouth_width", "lip_thickness", "brow_height")

_F = TypeVar("_F", bound="_Factors")


class _Factors:
    """Batch behaviour shared by Appearance and Structure: every field is a (B, ...) float32 tensor."""

    def tensors(self) -> dict[str, Tensor]:
        """The fields by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def __len__(self) -> int:
        return next(iter(self.tensors().values())).shape[0]

    def index(self: _F, idx: int | slice | Sequence[int] | Tensor) -> _F:
        """The sub-batch ``idx`` (an int keeps a batch of one)."""
        idx = [idx] if isinstance(idx, int) else idx
        return type(self)(**{k: v[idx] for k, v in self.tensors().items()})

    def repeat_interleave(self: _F, n: int) -> _F:
        """Each item repeated ``n`` times in place: (B, ...) -> (B * n, ...)."""
        return type(self)(**{k: v.repeat_interleave(n, dim=0) for k, v in self.tensors().items()})

    @classmethod
    def cat(cls: type[_F], items: Sequence[_F]) -> _F:
        """Concatenate batches."""
        return cls(**{f.name: torch.cat([getattr(i, f.name) for i in items]) for f in dataclasses.fields(cls)})

    def replace(self: _F, **fields: Tensor) -> _F:
        """Copy with some fields changed."""
        return dataclasses.replace(self, **fields)  # type: ignore[type-var]


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
class Appearance(_Factors):
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

    def with_colours_of(self, other: "Appearance") -> "Appearance":
        """This identity's shape with ``other``'s colour factors: the landmarks do not change."""
        return self.replace(**{k: getattr(other, k) for k in COLOUR_FIELDS})


@dataclass(frozen=True, eq=False)
class Structure(_Factors):
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


def broadcast(appearance: Appearance, structure: Structure) -> tuple[Appearance, Structure]:
    """Repeat a batch of one to the other's length."""
    na, ns = len(appearance), len(structure)
    if na == ns:
        return appearance, structure
    if na == 1:
        return appearance.index([0] * ns), structure
    if ns == 1:
        return appearance, structure.index([0] * na)
    raise ValueError(f"appearance and structure batches differ: {na} vs {ns} (one of them may be 1)")


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

_SKIN_TONES = ((0.98, 0.85, 0.76), (0.94, 0.76, 0.63), (0.84, 0.62, 0.47), (0.68, 0.46, 0.32),
               (0.50, 0.33, 0.22), (0.34, 0.22, 0.15))
_HAIR_COLOURS = ((0.07, 0.05, 0.04), (0.22, 0.13, 0.07), (0.42, 0.27, 0.14), (0.80, 0.64, 0.38),
                 (0.58, 0.24, 0.09), (0.72, 0.71, 0.70))
_IRIS_COLOURS = ((0.30, 0.17, 0.07), (0.17, 0.10, 0.05), (0.45, 0.36, 0.15), (0.28, 0.46, 0.25),
                 (0.30, 0.50, 0.78), (0.48, 0.54, 0.60))
_HAIR_STYLE_P = (0.10, 0.30, 0.20, 0.20, 0.20)


def _rand(g: torch.Generator, *shape: int) -> Tensor:
    """Uniform [0, 1) of the given shape from g."""
    return torch.rand(*shape, generator=g)


def _pick(g: torch.Generator, palette: Sequence[Sequence[float]], n: int, jitter: float) -> Tensor:
    """n random palette colours with Gaussian jitter, (n, 3) in [0, 1]."""
    idx = torch.randint(len(palette), (n,), generator=g)
    return (torch.tensor(palette)[idx] + jitter * torch.randn(n, 3, generator=g)).clamp(0, 1)


def _skin(g: torch.Generator, n: int) -> Tensor:
    """Skin albedo along the tone palette (piecewise linear) with jitter, (n, 3)."""
    tones = torch.tensor(_SKIN_TONES)
    pos = _rand(g, n) * (len(tones) - 1)
    lo = pos.floor().long().clamp(max=len(tones) - 2)
    frac = (pos - lo)[:, None]
    return (tones[lo] * (1 - frac) + tones[lo + 1] * frac + 0.02 * torch.randn(n, 3, generator=g)).clamp(0, 1)


def _muted(g: torch.Generator, n: int) -> Tensor:
    """Random colours pulled half-way to their grey, (n, 3)."""
    c = _rand(g, n, 3)
    return 0.15 + 0.75 * (0.5 * c + 0.5 * c.mean(1, keepdim=True))


def _light(g: torch.Generator, n: int) -> tuple[Tensor, Tensor]:
    """Light direction (n, 3) from azimuth in [-70, 70] and elevation in [-15, 55] degrees; (intensity, ambient)."""
    az, el = torch.deg2rad(140 * _rand(g, n) - 70), torch.deg2rad(70 * _rand(g, n) - 15)
    direction = torch.stack([az.sin() * el.cos(), el.sin(), az.cos() * el.cos()], 1)
    return direction, torch.stack([0.55 + 0.4 * _rand(g, n), 0.28 + 0.17 * _rand(g, n)], 1)


def sample_appearance(n: int, generator: torch.Generator) -> Appearance:
    """``n`` random identities, deterministic given the generator's state."""
    g = generator
    skin = _skin(g, n)
    lips = (skin * torch.tensor([0.86, 0.56, 0.56]) + torch.tensor([0.10, 0.0, 0.02])).clamp(0, 1)
    lipstick = (_rand(g, n, 1) < 0.15).float()
    lips = lips * (1 - lipstick) + lipstick * torch.tensor([0.72, 0.12, 0.22]) * (0.7 + 0.3 * _rand(g, n, 1))
    light_dir, light = _light(g, n)
    style = torch.multinomial(torch.tensor(_HAIR_STYLE_P), n, replacement=True, generator=g)
    glasses = (_rand(g, n, 1) < 0.2).float()
    frame = torch.where(_rand(g, n, 1) < 0.5, 0.05 + 0.15 * _rand(g, n, 1).expand(n, 3), _muted(g, n) * 0.7)
    beard = (_rand(g, n, 1) < 0.2).float() * (0.5 + 0.5 * _rand(g, n, 1))
    return Appearance(
        skin=skin, hair=_pick(g, _HAIR_COLOURS, n, 0.03), iris=_pick(g, _IRIS_COLOURS, n, 0.03),
        lips=lips.clamp(0, 1), shirt=_muted(g, n), bg_top=_muted(g, n), bg_bottom=_muted(g, n),
        bg_noise=torch.randn(n, 16, generator=g) * 0.12 * _rand(g, n, 1), light_dir=light_dir, light=light,
        hair_style=nnf.one_hot(style, len(HAIR_STYLES)).float(), hair_volume=2 * _rand(g, n, 1) - 1,
        glasses=glasses, glasses_colour=frame, beard=beard, shape=2 * _rand(g, n, len(SHAPE_FACTORS)) - 1,
    )


def sample_structure(n: int, generator: torch.Generator, *, max_yaw: float = 60.0, max_pitch: float = 20.0,
                     max_roll: float = 15.0, min_intensity: float = 0.3, mix: float = 0.25) -> Structure:
    """``n`` random structures: pose uniform in the given ranges (degrees), one dominant expression.

    The dominant expression is uniform over EXPRESSIONS with intensity in [min_intensity, 1]; with
    probability ``mix`` a second one is added at intensity up to 0.35.
    """
    g = generator
    yaw, pitch, roll = ((2 * _rand(g, n) - 1) * m for m in (max_yaw, max_pitch, max_roll))
    k = len(EXPRESSIONS)
    main = nnf.one_hot(torch.randint(k, (n,), generator=g), k).float()
    main = main * (min_intensity + (1 - min_intensity) * _rand(g, n, 1))
    second = nnf.one_hot(torch.randint(k, (n,), generator=g), k).float()
    room = 1 - main.sum(1, keepdim=True)  # keep the weights' sum at most 1
    second = second * torch.minimum(0.35 * _rand(g, n, 1), room) * (_rand(g, n, 1) < mix).float()
    expr = main + second * (main == 0).float()
    return Structure(yaw, pitch, roll, _with_neutral(expr))


# =========================================================================================================
# Identities: one generator each, and the held-out split
# =========================================================================================================

TEST_FRACTION = 0.1


def identity_generator(seed: int, identity: int) -> torch.Generator:
    """The generator of one identity: its appearance and structures depend only on (seed, identity)."""
    return torch.Generator().manual_seed((seed % 2**31) * 2**32 + identity)


def held_out_identities(n_identities: int, seed: int) -> Tensor:
    """(n,) bool, True for the held-out identities: round(TEST_FRACTION * n) of them, chosen by seed."""
    n_test = round(TEST_FRACTION * n_identities)
    order = torch.randperm(n_identities, generator=torch.Generator().manual_seed(seed))
    test = torch.zeros(n_identities, dtype=torch.bool)
    test[order[:n_test]] = True
    return test


def sample_identities(identities: Sequence[int] | Tensor, images_per_identity: int, seed: int
                      ) -> tuple[Appearance, Structure]:
    """Appearance of each identity (n) and its images' structures (n * images_per_identity, identity-major)."""
    apps, structs = [], []
    for i in [int(i) for i in identities]:
        g = identity_generator(seed, i)
        apps.append(sample_appearance(1, g))
        structs.append(sample_structure(images_per_identity, g))
    return Appearance.cat(apps), Structure.cat(structs)


