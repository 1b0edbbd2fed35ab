"""The embedded dataset: procedural 3-D faces whose structure and appearance are known exactly.

A head is a union of ellipsoids (cranium, jaw, nose, nose wings, ears) carrying a texture drawn in head
coordinates (eyes, brows, lips, nostrils, beard ...), a clipped ellipsoid shell of hair, and a neck and
shoulders in front of a gradient background. Every pixel casts a ray through one pinhole camera; the
nearest surfaces are composited with analytic soft edges (so 64 px images come out anti-aliased) and
lit with a Lambert term on the true surface normals.

The 68 iBUG landmarks are 3-D points on the face surface: identity shape and expression blendshapes move
them in the head's (X, Y) plane, their depth Z is the surface's, and the jaw contour is the frontal
outline of the cranium and jaw. They are rotated by the head pose and projected with the same camera
that casts the rays, and the texture is drawn from the same landmark curves, so ``render`` returns the
exact landmarks of the image it draws. Far-side landmarks at large yaw are still returned (they are
3-D points, occluded in the image).

Conventions. Head frame: X to the image right (the subject's left), Y up, Z towards the camera; one unit
is half the head width. The camera sits at (0, 0, CAMERA_DISTANCE) looking down -Z. Pixel (row i, col j)
has its centre at (x=j, y=i). Pose: yaw > 0 turns the face to the image right, pitch > 0 looks up, roll > 0
tilts the head counter-clockwise in the image.

Appearance (per identity) and structure (per image) are batched dataclasses of tensors; ``render`` takes
one of each (a batch of 1 broadcasts), so an identity can be drawn under any structure: the true target of
a manipulation. Everything is deterministic from a ``torch.Generator``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple, Sequence, TypeVar

import torch
import torch.nn.functional as nnf
from torch import Tensor

from afvae.boundaries import FACE68_MIRROR
from afvae.images import to_uint8

EXPRESSIONS = ("neutral", "smile", "surprise", "anger", "disgust", "eyes_closed")
HAIR_STYLES = ("bald", "short", "bangs", "bob", "long")
SHAPE_FACTORS = ("face_width", "face_length", "jaw_width", "eye_spacing", "eye_size",
                 "nose_length", "nose_width", "mouth_width", "lip_thickness", "brow_height")
SIZES = (32, 64, 128, 256)

CAMERA_DISTANCE = 9.0  # head units from the camera to the head centre
ZOOM = 0.31  # image widths per head unit at the depth of the head centre
CENTRE_ROW = 0.03  # the head centre sits this many image heights below the image centre
FEATURE_RES = 128  # face features are drawn on a grid of at least this many pixels per image side,
FEATURE_SUPERSAMPLE = 2  # ... supersampling the raster at most this much

# =========================================================================================================
# Factors: what is sampled, batched
# =========================================================================================================

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
# Landmarks: template, identity shape, expression blendshapes (head X, Y), depth from the surface
# =========================================================================================================

MIRROR = FACE68_MIRROR  # landmarks of the mirrored image: flip x, then take landmarks[:, MIRROR]

# Neutral mean face, image-left half and midline (head units). Jaw 0-16 comes from the outline and the
# nose tip 30 from the nose ellipsoid; 31-35 are offsets from the tip.
_TEMPLATE_LEFT = {
    17: (-0.66, 0.17), 18: (-0.56, 0.24), 19: (-0.44, 0.27), 20: (-0.31, 0.26), 21: (-0.17, 0.22),
    27: (0.0, 0.04), 31: (-0.150, -0.065), 32: (-0.072, -0.088), 33: (0.0, -0.100),
    36: (-0.545, -0.005), 37: (-0.435, 0.07), 38: (-0.315, 0.072), 39: (-0.215, 0.0), 40: (-0.315, -0.048),
    41: (-0.435, -0.05),
    48: (-0.27, -0.66), 49: (-0.18, -0.615), 50: (-0.075, -0.585), 51: (0.0, -0.595), 57: (0.0, -0.75),
    58: (-0.08, -0.745), 59: (-0.18, -0.715),
    60: (-0.235, -0.66), 61: (-0.09, -0.649), 62: (0.0, -0.652), 66: (0.0, -0.652), 67: (-0.09, -0.649),
}

# Expression blendshapes: (dx, dy) in head units at intensity 1, image-left half and midline.
_BLENDSHAPES_LEFT: dict[str, dict[int, tuple[float, float]]] = {
    "smile": {48: (-0.05, 0.075), 49: (-0.02, 0.03), 50: (0.0, 0.012), 51: (0.0, 0.008), 59: (-0.02, 0.025),
              58: (0.0, -0.005), 57: (0.0, -0.01), 60: (-0.05, 0.075), 61: (-0.02, 0.035), 62: (0.0, 0.02),
              67: (-0.015, -0.005), 66: (0.0, -0.02), 40: (0.0, 0.016), 41: (0.0, 0.016), 37: (0.0, -0.008),
              38: (0.0, -0.008), 31: (-0.012, 0.008), 32: (-0.005, 0.004)},
    "surprise": {17: (0.0, 0.05), 18: (0.0, 0.08), 19: (0.0, 0.09), 20: (0.0, 0.09), 21: (0.0, 0.075),
                 37: (0.0, 0.035), 38: (0.0, 0.035), 40: (0.0, -0.012), 41: (0.0, -0.012), 48: (0.07, -0.02),
                 49: (0.03, 0.01), 50: (0.005, 0.02), 51: (0.0, 0.02), 59: (0.04, 0.0), 58: (0.01, 0.0),
                 60: (0.07, -0.02), 61: (0.025, 0.025), 62: (0.0, 0.03), 67: (0.025, 0.0)},
    "anger": {21: (0.035, -0.095), 20: (0.025, -0.065), 19: (0.005, -0.035), 18: (0.0, -0.01), 17: (0.0, 0.01),
              37: (0.0, -0.025), 38: (0.0, -0.03), 40: (0.0, 0.014), 41: (0.0, 0.014), 48: (0.025, -0.03),
              49: (0.005, -0.02), 50: (0.0, -0.022), 51: (0.0, -0.022), 59: (0.005, 0.022), 58: (0.0, 0.026),
              57: (0.0, 0.026), 60: (0.025, -0.03), 31: (-0.012, 0.006)},
    "disgust": {49: (0.0, 0.05), 50: (0.0, 0.065), 51: (0.0, 0.06), 61: (0.0, 0.06), 62: (0.0, 0.065),
                48: (0.01, 0.015), 60: (0.01, 0.02), 58: (0.0, -0.015), 57: (0.0, -0.018), 59: (0.0, -0.005),
                31: (-0.012, 0.03), 32: (0.0, 0.03), 33: (0.0, 0.026), 17: (0.0, -0.035), 18: (0.0, -0.045),
                19: (0.0, -0.05), 20: (0.012, -0.06), 21: (0.018, -0.06), 37: (0.0, -0.02),
                38: (0.0, -0.02), 40: (0.0, 0.024), 41: (0.0, 0.024)},
    "eyes_closed": {40: (0.0, 0.008), 41: (0.0, 0.008)},  # plus the upper lids onto the lower ones
}
_JAW_DROP = (0.0, 0.03, 0.17, 0.0, 0.0, 0.0)  # per expression: how far the jaw (chin, lower lip) drops
_LOWER_JAW = (55, 56, 57, 58, 59, 65, 66, 67)  # points that move down with the jaw
_MOUTH_CORNERS = (48, 54, 60, 64)  # ... and those that move half as far
_LID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))  # (upper, lower) eyelid points sharing an x


def _mirrored(left: dict[int, tuple[float, float]]) -> Tensor:
    """(68, 2) from the image-left half and midline; mirror partners get (-x, y)."""
    out = torch.zeros(68, 2)
    for i, (x, y) in left.items():
        out[i] = torch.tensor([x, y])
        out[MIRROR[i]] = torch.tensor([-x, y])
    return out


_TEMPLATE = _mirrored(_TEMPLATE_LEFT)  # (68, 2)
_BLENDSHAPES = torch.stack([torch.zeros(68, 2)] + [_mirrored(_BLENDSHAPES_LEFT[e]) for e in EXPRESSIONS[1:]])


class _Ellipsoid(NamedTuple):
    """A batch of ellipsoids: centre (B, 3), radii (B, 3), rot (B, 3, 3) local axes -> parent frame."""

    centre: Tensor
    radii: Tensor
    rot: Tensor


def _rot_x(a: Tensor) -> Tensor:
    """(B,) radians -> (B, 3, 3) rotation about x."""
    c, s, o, z = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([o, z, z, z, c, -s, z, s, c], 1).view(-1, 3, 3)


def _rot_y(a: Tensor) -> Tensor:
    """(B,) radians -> (B, 3, 3) rotation about y."""
    c, s, o, z = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, z, s, z, o, z, -s, z, c], 1).view(-1, 3, 3)


def _rot_z(a: Tensor) -> Tensor:
    """(B,) radians -> (B, 3, 3) rotation about z."""
    c, s, o, z = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, -s, z, s, c, z, z, z, o], 1).view(-1, 3, 3)


def head_rotation(structure: Structure) -> Tensor:
    """(B, 3, 3) head frame -> camera frame: roll @ pitch @ yaw."""
    yaw, pitch, roll = (torch.deg2rad(a) for a in (structure.yaw, structure.pitch, structure.roll))
    return _rot_z(roll) @ _rot_x(-pitch) @ _rot_y(yaw)


def _vec(*cols: Tensor | float, like: Tensor) -> Tensor:
    """Stack scalars / (B,) tensors into (B, k)."""
    return torch.stack([torch.as_tensor(c, dtype=like.dtype).expand_as(like) for c in cols], 1)


def _ellipsoid(centre: Tensor, radii: Tensor, rot: Tensor | None = None) -> _Ellipsoid:
    """Ellipsoids from centres (B, 3), radii (B, 3) and optional rotations (B, 3, 3), axis-aligned by default."""
    eye = torch.eye(3).expand(centre.shape[0], 3, 3)
    return _Ellipsoid(centre, radii, eye if rot is None else rot)


NOSE_TILT = math.radians(35.0)  # the nose's long axis leans forward at the bottom by this much


def head_geometry(shape: Tensor, expression: Tensor) -> dict[str, _Ellipsoid]:
    """The head's skin surfaces in the head frame from shape (B, 10) and expression (B, 6) weights."""
    s = shape.unbind(1)
    one = torch.ones_like(s[0])
    fw, fl, jw = 1 + 0.07 * s[0], s[1], 1 + 0.08 * s[2]
    drop = expression @ torch.tensor(_JAW_DROP)
    nose_b, nose_w = 0.24 * (1 + 0.12 * s[5]), 1 + 0.15 * s[6]
    tilt = torch.full_like(one, NOSE_TILT)
    geom = {
        "cranium": _ellipsoid(_vec(0, 0.1, -0.05, like=one), _vec(fw, 1.16, 1.12, like=one)),
        "jaw": _ellipsoid(_vec(0, -0.35 - 0.03 * fl - drop, -0.1, like=one),
                          _vec(0.86 * fw * jw, 0.82 * (1 + 0.06 * fl), 1.02, like=one)),
        "nose": _ellipsoid(_vec(0, -0.16 - 0.03 * s[5], 1.02, like=one),
                           _vec(0.095 * nose_w, nose_b, 0.10, like=one), _rot_x(-tilt)),
    }
    tip = _nose_tip(geom["nose"])
    lift = 0.025 * expression[:, EXPRESSIONS.index("disgust")]
    geom["alae"] = _ellipsoid(_vec(0, tip[:, 1] - 0.06 + lift, 0.97, like=one),
                              _vec(0.15 * nose_w, 0.075, 0.08, like=one))
    for side, name in ((-1.0, "ear_left"), (1.0, "ear_right")):
        geom[name] = _ellipsoid(_vec(side * 0.95 * fw, -0.06, -0.12, like=one), _vec(0.07, 0.19, 0.14, like=one),
                                _rot_y(torch.full_like(one, side * math.radians(25.0))))
    return geom


def _nose_tip(nose: _Ellipsoid) -> Tensor:
    """(B, 2) head (X, Y) of the nose ellipsoid's front-most point (it leans by NOSE_TILT about X)."""
    b, c = nose.radii[:, 1], nose.radii[:, 2]
    sa, ca = math.sin(NOSE_TILT), math.cos(NOSE_TILT)
    n = (b**2 * sa**2 + c**2 * ca**2).sqrt()
    y = nose.centre[:, 1] + sa * ca * (c**2 - b**2) / n
    return torch.stack([torch.zeros_like(y), y], 1)


FACE_SURFACES = ("cranium", "jaw", "nose", "alae")  # the surfaces landmarks and face texture live on


def _identity_xy(shape: Tensor) -> Tensor:
    """Neutral landmarks of each identity in the head (X, Y) plane, (B, 68, 2); jaw and nose tip unset."""
    s = shape.unbind(1)
    xy = _TEMPLATE.expand(shape.shape[0], 68, 2).clone()
    eye_l, eye_r = slice(36, 42), slice(42, 48)
    for eye, brow, side in ((eye_l, slice(17, 22), -1.0), (eye_r, slice(22, 27), 1.0)):
        centre = xy[:, eye].mean(1, keepdim=True)
        xy[:, eye] = centre + (xy[:, eye] - centre) * torch.stack([1 + 0.12 * s[4], 1 + 0.2 * s[4]], 1)[:, None]
        xy[:, eye, 0] += side * 0.035 * s[3][:, None]
        xy[:, brow, 0] += side * 0.035 * s[3][:, None]
        xy[:, brow, 1] += 0.035 * s[9][:, None]
    xy[:, 31:36, 0] *= (1 + 0.15 * s[6])[:, None]
    mouth = slice(48, 68)
    line = xy[:, 48:49, 1]  # the mouth-corner line the lips thicken away from
    xy[:, mouth, 1] = line + (xy[:, mouth, 1] - line) * (1 + 0.3 * s[8])[:, None] - 0.035 * s[1][:, None]
    xy[:, mouth, 0] *= (1 + 0.12 * s[7])[:, None]
    xy[..., 0] *= (1 + 0.07 * s[0])[:, None]
    return xy


def _jaw_contour(geom: dict[str, _Ellipsoid], y0: float = -0.1) -> Tensor:
    """(B, 17, 2) points just inside the frontal outline of cranium and jaw, at 17 angles from (0, y0)."""
    phi = torch.linspace(math.pi, 2 * math.pi, 17)
    d = torch.stack([phi.cos(), phi.sin()], 1)  # (17, 2) left, down, right
    dist = []
    for name in ("cranium", "jaw"):
        c, r = geom[name].centre[:, None, :2], geom[name].radii[:, None, :2]  # (B, 1, 2)
        off = torch.tensor([0.0, y0]) - c  # (B, 1, 2)
        a, b = ((d / r) ** 2).sum(-1), (off * d / r**2).sum(-1)
        cc = ((off / r) ** 2).sum(-1) - 1
        dist.append((-b + (b * b - a * cc).clamp_min(0).sqrt()) / a)  # (B, 17)
    s = torch.maximum(*dist) * 0.995
    return torch.tensor([0.0, y0]) + s[..., None] * d


def face_xy(shape: Tensor, expression: Tensor, geom: dict[str, _Ellipsoid] | None = None) -> Tensor:
    """The 68 landmarks in the head (X, Y) plane, (B, 68, 2), from shape (B, 10) and expression (B, 6)."""
    geom = head_geometry(shape, expression) if geom is None else geom
    xy = _identity_xy(shape)
    tip = _nose_tip(geom["nose"])  # (B, 2)
    xy[:, 30] = tip
    xy[:, 31:36] += tip[:, None]
    xy[:, 28] = xy[:, 27] + (tip - xy[:, 27]) / 3
    xy[:, 29] = xy[:, 27] + (tip - xy[:, 27]) * 2 / 3
    xy = xy + torch.einsum("be,end->bnd", expression, _BLENDSHAPES)
    drop = (expression @ torch.tensor(_JAW_DROP))[:, None]
    xy[:, _LOWER_JAW, 1] -= drop
    xy[:, _MOUTH_CORNERS, 1] -= drop / 2
    closed = expression[:, EXPRESSIONS.index("eyes_closed"), None]
    for up, lo in _LID_PAIRS:
        xy[:, up] = xy[:, up] + (xy[:, lo] - xy[:, up]) * closed.clamp(0, 1)
    xy[:, :17] = _jaw_contour(geom)
    return xy


def _front_z(e: _Ellipsoid, xy: Tensor) -> Tensor:
    """Z of the ellipsoid's front surface above head points xy (B, N, 2), -inf where it has none: (B, N)."""
    a = e.rot.transpose(1, 2) / e.radii[:, :, None]  # (B, 3, 3) head -> unit sphere
    p = torch.cat([xy, torch.zeros_like(xy[..., :1])], -1) - e.centre[:, None]  # (B, N, 3)
    w, g = p @ a.transpose(1, 2), a[:, :, 2][:, None]  # (B, N, 3), (B, 1, 3)
    gg, wg = (g * g).sum(-1), (w * g).sum(-1)
    disc = wg * wg - gg * ((w * w).sum(-1) - 1)
    z = (-wg + disc.clamp_min(0).sqrt()) / gg
    return torch.where(disc >= 0, z, torch.full_like(z, -math.inf))


def _on_surface(xy: Tensor, geom: dict[str, _Ellipsoid]) -> Tensor:
    """Head points (B, N, 2) lifted onto the front-most face surface: (B, N, 3)."""
    z = torch.stack([_front_z(geom[k], xy) for k in FACE_SURFACES]).amax(0)
    return torch.cat([xy, z[..., None]], -1)


def face_points(shape: Tensor, expression: Tensor) -> Tensor:
    """The 68 landmarks as 3-D points on the face surface, head frame, (B, 68, 3)."""
    geom = head_geometry(shape, expression)
    return _on_surface(face_xy(shape, expression, geom), geom)


class Camera(NamedTuple):
    """Pinhole camera for a size x size image: x = cx + f X / (D - Z), y = cy - f Y / (D - Z)."""

    f: float
    cx: float
    cy: float

    @classmethod
    def for_size(cls, size: int) -> "Camera":
        """The camera of a size x size image (the same view at every resolution)."""
        return cls(ZOOM * size * CAMERA_DISTANCE, (size - 1) / 2, (size - 1) / 2 + CENTRE_ROW * size)

    def project(self, p: Tensor) -> Tensor:
        """Camera-frame points (..., 3) -> pixels (..., 2)."""
        depth = CAMERA_DISTANCE - p[..., 2]
        return torch.stack([self.cx + self.f * p[..., 0] / depth, self.cy - self.f * p[..., 1] / depth], -1)


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the body with n intra-op threads (None: unchanged), restoring the setting afterwards."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def landmarks(appearance: Appearance, structure: Structure, size: int = 64, *, threads: int | None = 1) -> Tensor:
    """The exact 68 landmarks of render(appearance, structure, size), (B, 68, 2) float32 pixels, without rendering."""
    appearance, structure = _broadcast(appearance, structure)
    with _torch_threads(threads):
        pts = face_points(appearance.shape, structure.expression) @ head_rotation(structure).transpose(1, 2)
        return Camera.for_size(size).project(pts)


def _broadcast(appearance: Appearance, structure: Structure) -> tuple[Appearance, Structure]:
    """Repeat a batch of one to the other's length."""
    na, ns = len(appearance), len(structure)
    if na == ns:
        return appearance, structure
    if na == 1:
        return appearance.index([0] * ns), structure
    if ns == 1:
        return appearance, structure.index([0] * na)
    raise ValueError(f"appearance and structure batches differ: {na} vs {ns} (one of them may be 1)")


# =========================================================================================================
# Ray casting and compositing
# =========================================================================================================

class _Rays(NamedTuple):
    """Rays through pixel centres, direction (u, v, -1) from the camera at (0, 0, D) in the camera frame."""

    u: Tensor  # (B | 1, 1, w) camera-plane slope, x
    v: Tensor  # (B | 1, h, 1) camera-plane slope, y (up)
    px: float  # slope per raster pixel: CAMERA_DISTANCE * px is a pixel's width in head units


def _grid_rays(size: int, grid: int) -> _Rays:
    """Rays of a grid x grid raster over a size x size image (grid = size * supersampling)."""
    cam = Camera.for_size(size)
    pos = (torch.arange(grid) + 0.5) * (size / grid) - 0.5  # raster pixel centres in image pixels
    return _Rays(((pos - cam.cx) / cam.f).view(1, 1, -1), ((cam.cy - pos) / cam.f).view(1, -1, 1),
                 size / grid / cam.f)


def _window_rays(size: int, grid: int, x0: Tensor, y0: Tensor, k: int, sub: int) -> _Rays:
    """Rays of k x k raster pixels from (x0, y0) (B,) each split sub x sub: (B, 1, k sub), (B, k sub, 1)."""
    cam = Camera.for_size(size)
    step = torch.arange(k * sub) + 0.5
    xs = ((x0[:, None] + step / sub) * (size / grid) - 0.5 - cam.cx) / cam.f  # (B, k sub)
    ys = (cam.cy - ((y0[:, None] + step / sub) * (size / grid) - 0.5)) / cam.f
    return _Rays(xs[:, None, :], ys[:, :, None], size / grid / sub / cam.f)


class _Frame(NamedTuple):
    """A rigid frame the rays are expressed in: the camera centre (B, 3) and camera -> frame rotation (B, 3, 3)."""

    origin: Tensor
    rot_t: Tensor


class _Hit(NamedTuple):
    t: Tensor  # (B, h, w) ray parameter of the hit (of the closest approach where the ray misses)
    cover: Tensor  # (B, h, w) soft coverage of the pixel in [0, 1]
    shade: Tensor  # (B, h, w) cosine between the surface normal and the light, unclamped
    p: tuple[Tensor, ...]  # the hit point in the frame, 3 x (B, h, w) (empty unless asked for)


def _lin(coef: Tensor, rays: _Rays) -> Tensor:
    """coef (B, 3) . (u, v, -1) over the raster -> (B, h, w)."""
    c = coef[:, :, None, None]
    return c[:, 0] * rays.u + (c[:, 1] * rays.v - c[:, 2])


def _cast(e: _Ellipsoid, frame: _Frame, rays: _Rays, light: Tensor, far: bool = False, points: bool = False
          ) -> _Hit:
    """Intersect the rays with ellipsoids e (in frame); light (B, 3) in the camera frame; near or far root."""
    to_unit = e.rot.transpose(1, 2) / e.radii[:, :, None]  # (B, 3, 3) frame -> unit sphere
    o = (to_unit @ (frame.origin - e.centre)[:, :, None])[..., 0]  # (B, 3)
    m = to_unit @ frame.rot_t  # (B, 3, 3) camera directions -> unit sphere
    d = [_lin(m[:, k], rays) for k in range(3)]
    a = torch.addcmul(torch.addcmul(d[0] * d[0], d[1], d[1]), d[2], d[2])
    b = _lin((o[:, None, :] @ m)[:, 0], rays)  # o . d
    c = ((o * o).sum(1) - 1)[:, None, None]
    disc = torch.addcmul(b * b, a, c, value=-1.0)
    root = disc.clamp_min(0).sqrt()
    t = ((root if far else -root) - b) / a
    width = rays.px * CAMERA_DISTANCE / e.radii[:, :2].prod(1).sqrt()  # a pixel on the unit sphere
    cover = (disc / a * (0.5 / width)[:, None, None] + 0.5).clamp(0, 1)  # (1 - dist^2) / 2 ~ 1 - dist
    q = [torch.addcmul(o[:, k, None, None], t, d[k]) for k in range(3)]
    lv = (m @ light[:, :, None])[..., 0]  # (B, 3): n . L = q . (m L) / |q / r|
    inv_r = (1 / e.radii)[:, :, None, None]
    dot = sum(q[k] * lv[:, k, None, None] for k in range(3))
    norm = sum((q[k] * inv_r[:, k]) ** 2 for k in range(3)).sqrt()
    p = tuple(torch.addcmul(frame.origin[:, k, None, None], t, _lin(frame.rot_t[:, k], rays)) for k in range(3)
              ) if points else ()
    return _Hit(t, cover, dot / norm, p)


class _Layer(NamedTuple):
    alpha: Tensor  # (B, h, w)
    t: Tensor  # (B, h, w)
    value: Tensor  # (B, C, h, w) straight (not premultiplied)


def _zmerge(a: _Layer, b: _Layer, tau: float) -> tuple[_Layer, Tensor]:
    """Depth-composite two layers, blending values over depth gaps below tau; also how visible a stays.

    The merged t is the nearest half-covered surface's, unblended, so that texture coordinates derived
    from it (and the landmarks drawn there) stay exact across the smoothly shaded creases.
    """
    front = (0.5 + (b.t - a.t) / tau).clamp(0, 1)  # 1 where a is in front
    vis_a = front + (1 - front) * (1 - b.alpha)
    wa, wb = a.alpha * vis_a, b.alpha * (1 - front * a.alpha)
    alpha = a.alpha + b.alpha - a.alpha * b.alpha
    value = (wa[:, None] * a.value + wb[:, None] * b.value) / (wa + wb).clamp_min(1e-6)[:, None]
    t = torch.minimum(a.t + (a.alpha < 0.5) * 1e3, b.t + (b.alpha < 0.5) * 1e3)
    return _Layer(alpha, t, value), vis_a


def _over(img: Tensor, colour: Tensor, alpha: Tensor) -> Tensor:
    """img (B, 3, h, w) under colour (B, 3, h, w) with alpha (B, h, w)."""
    return torch.addcmul(img, alpha[:, None], colour - img)


class _Scene(NamedTuple):
    """Everything per image that does not depend on the pixel."""

    app: Appearance
    st: Structure
    geom: dict[str, _Ellipsoid]
    head: _Frame
    world: _Frame
    xy: Tensor  # (B, 68, 2) landmarks in the head (X, Y) plane
    points: Tensor  # (B, 68, 3) landmarks in the camera frame
    hair: dict[str, Tensor]  # per-image hair-shell parameters


# Hair styles: shell radius scale, vertical stretch, and the hairline height at the front, side and back.
# Hair styles: a shell around the cranium (radius scale, vertical stretch) cut to the style's outline:
# hair lies above the bottom line (at the sides, lower at the back) except inside the face window
# (azimuth below window degrees and below the front hairline).
_HAIR_TABLE = torch.tensor([
    # exists, scale, stretch, front, window, side, back
    [0.0, 1.04, 1.00, 0.60, 76.0, 0.14, -0.42],  # bald
    [1.0, 1.04, 1.00, 0.60, 76.0, 0.14, -0.42],  # short
    [1.0, 1.07, 1.04, 0.30, 64.0, -0.30, -0.62],  # bangs
    [1.0, 1.10, 1.12, 0.58, 70.0, -0.62, -0.78],  # bob
    [1.0, 1.10, 1.42, 0.60, 70.0, -1.05, -1.60],  # long
])


def _hair_params(app: Appearance) -> dict[str, Tensor]:
    """Per-image hair shell and outline parameters from the style weights and volume."""
    exists, scale, stretch, front, window, side, back = (app.hair_style @ _HAIR_TABLE).unbind(1)
    scale = scale + 0.03 * app.hair_volume[:, 0]
    fw = 1 + 0.07 * app.shape[:, 0]
    ry = 1.12 * scale * stretch
    top = 0.12 + 1.12 * scale + 0.03
    one = torch.ones_like(scale)
    shell = _ellipsoid(_vec(0, top - ry, -0.08, like=one), torch.stack([fw * scale, ry, 1.12 * scale], 1))
    return {"exists": exists, "shell": shell, "front": front, "cos_window": torch.deg2rad(window).cos(),
            "side": side, "back": back}  # type: ignore[dict-item]


def _scene(app: Appearance, st: Structure) -> _Scene:
    """Geometry, frames, landmarks and hair of each image."""
    rot = head_rotation(st)
    rot_t = rot.transpose(1, 2)
    cam = torch.tensor([0.0, 0.0, CAMERA_DISTANCE]).expand(len(app), 3)
    geom = head_geometry(app.shape, st.expression)
    xy = face_xy(app.shape, st.expression, geom)
    points = _on_surface(xy, geom) @ rot_t  # (B, 68, 3) camera frame
    return _Scene(app, st, geom, _Frame((rot_t @ cam[:, :, None])[..., 0], rot_t),
                  _Frame(cam, torch.eye(3).expand(len(app), 3, 3)), xy, points, _hair_params(app))


def _col(c: Tensor) -> Tensor:
    """(B, 3) colour -> (B, 3, 1, 1)."""
    return c[:, :, None, None]


def _lighting(app: Appearance, shade: Tensor) -> Tensor:
    """Ambient + wrapped Lambert: shade (B, h, w) -> (B, 1, h, w) light level."""
    level = ((shade + 0.25) * (1 / 1.25)).clamp_min(0) * app.light[:, 0, None, None] + app.light[:, 1, None, None]
    return level[:, None]


_BLEND = {"jaw": 0.25, "nose": 0.06, "alae": 0.05, "ear_left": 0.03, "ear_right": 0.03}  # depth blend widths


def _skin_hits(scene: _Scene, rays: _Rays, names: Sequence[str]) -> tuple[_Layer, Tensor]:
    """The union of skin surfaces: layer (value = shade (B, 1, h, w)) and head-frame hit points (B, 3, h, w)."""
    layer = None
    for name in names:
        hit = _cast(scene.geom[name], scene.head, rays, scene.app.light_dir)
        new = _Layer(hit.cover, hit.t, hit.shade[:, None])
        layer = new if layer is None else _zmerge(layer, new, _BLEND[name])[0]
    assert layer is not None
    p = torch.stack([torch.addcmul(scene.head.origin[:, k, None, None], layer.t, _lin(scene.head.rot_t[:, k], rays))
                     for k in range(3)], 1)
    return layer, p


def _skin_colour(scene: _Scene, p: Tensor, shade: Tensor, pw: float) -> Tensor:
    """Lit skin with cheek blush, beard and glasses arms at head points p (B, 3, h, w) -> (B, 3, h, w)."""
    app, (x, y, z) = scene.app, p.unbind(1)
    ax = x.abs()
    blush = torch.exp(-(((ax - 0.42) * (1 / 0.16)) ** 2 + ((y + 0.3) * (1 / 0.12)) ** 2))
    albedo = _col(app.skin) + blush[:, None] * torch.tensor([0.04, -0.012, -0.008]).view(1, 3, 1, 1)
    beard = ((-0.58 + 0.3 * x * x - y) * (1 / 0.1)).clamp(0, 1) * ((0.85 - ax) * (1 / 0.12)).clamp(0, 1)
    beard = beard * (z > 0) * app.beard[:, 0, None, None]
    dark = (0.7 + 0.3 * ((y + 1.1) * 2).clamp(0, 1))[:, None]  # darker towards the chin
    albedo = _over(albedo, _col(app.hair * 0.85) * dark, 0.85 * beard)
    eye_y = (scene.xy[:, 36, 1] + scene.xy[:, 39, 1])[:, None, None] / 2 + 0.02
    arm = ((0.013 - (y - eye_y).abs()) / pw + 0.5).clamp(0, 1) * ((ax - 0.57) * (1 / 0.02)).clamp(0, 1)
    arm = arm * (z > -0.4) * app.glasses[:, 0, None, None]
    albedo = _over(albedo, _col(app.glasses_colour).expand_as(albedo), arm)
    return albedo * _lighting(app, shade)


_STRANDS = 26.0  # hair stripes around the head


def _hair_layer(scene: _Scene, hit: _Hit, back: bool, pw: float) -> _Layer:
    """The hair shell where it lies above the style's hairline; the far (inside) side is darker."""
    hp, app = scene.hair, scene.app
    x, y, z = hit.p
    zc = z + 0.05
    r = (x * x + zc * zc + 1e-4).sqrt()
    cos_t = zc / r
    p = {k: v[:, None, None] for k, v in hp.items() if k != "shell"}
    ragged = 0.012 * torch.sin(x * 37.0) + 0.008 * torch.sin(x * 71.0 + 1.0)
    bottom = p["side"] + (p["back"] - p["side"]) * (-cos_t).clamp(0, 1) + ragged
    hairline = p["front"] - 0.12 * (1 - cos_t) + ragged
    window = ((cos_t - p["cos_window"]) * (1 / 0.04)).clamp(0, 1) * ((hairline - y) * (1 / 0.03)).clamp(0, 1)
    mask = ((y - bottom) * (1 / 0.04)).clamp(0, 1) * (1 - window)
    alpha = hit.cover * mask * p["exists"]
    inner = ((y - bottom) * (1 / 0.15)).clamp(0, 1) * (1 - ((cos_t - p["cos_window"]) * (1 / 0.15)).clamp(0, 1)
                                                      * ((hairline - y) * (1 / 0.15) + 1).clamp(0, 1))
    edge = 0.7 + 0.3 * inner  # darker towards the cut edges, so hair stands out from skin of a similar colour
    # strands fall from the crown: stripes in the azimuth, faded where they would alias or bunch up
    fade = (r * (2 * math.pi / _STRANDS / (3 * pw)) - 1).clamp(0, 1) * (r * 2).clamp(0, 1)
    phi = torch.atan2(x, zc) * _STRANDS + 2.0 * torch.sin(y * 3.0)
    strands = 1 + 0.05 * fade * (torch.sin(phi) + torch.sin(phi * 1.83 + 2.0))
    level = _lighting(app, hit.shade) * (0.45 if back else 1.0)
    sheen = 0.12 * (hit.shade.clamp_min(0) ** 8)[:, None] * (0 if back else 1)
    return _Layer(alpha, hit.t, _col(app.hair) * (strands * edge)[:, None] * level + sheen)


def _body_layer(scene: _Scene, rays: _Rays) -> _Layer:
    """Neck (a tall ellipsoid, cut below the head) and shoulders, in the world frame."""
    app, one = scene.app, torch.ones(len(scene.app))
    fw = 1 + 0.07 * app.shape[:, 0]
    neck = _cast(_ellipsoid(_vec(0, -1.4, -0.22, like=one), _vec(0.36 * fw, 30.0, 0.34, like=one)), scene.world,
                 rays, app.light_dir, points=True)
    torso = _cast(_ellipsoid(_vec(0, -2.62, -0.45, like=one), _vec(1.95 * fw, 1.18, 0.85, like=one)), scene.world,
                  rays, app.light_dir)
    ny = neck.p[1]
    neck_alpha = neck.cover * ((-0.35 - ny) * (1 / 0.1)).clamp(0, 1)
    under_chin = 0.55 + 0.45 * ((-0.95 - ny) * (1 / 0.5)).clamp(0, 1)
    neck_col = _col(app.skin) * _lighting(app, neck.shade) * under_chin[:, None]
    shirt = _col(app.shirt) * _lighting(app, torso.shade)
    return _zmerge(_Layer(neck_alpha, neck.t, neck_col), _Layer(torso.cover, torso.t, shirt), 0.05)[0]


def _background(app: Appearance, grid: int) -> Tensor:
    """Vertical gradient plus low-frequency brightness noise, (B, 3, grid, grid)."""
    rows = torch.linspace(0, 1, grid).view(1, 1, grid, 1)
    grad = _col(app.bg_top) + (_col(app.bg_bottom) - _col(app.bg_top)) * rows  # (B, 3, grid, 1)
    noise = nnf.interpolate(app.bg_noise.view(-1, 1, 4, 4), size=(grid, grid), mode="bilinear", align_corners=True)
    return grad + noise


def _main_pass(scene: _Scene, rays: _Rays, grid: int) -> tuple[Tensor, Tensor]:
    """Background, hair, body, head: image (B, 3, grid, grid) in [0, 1] and how visible the skin is (B, grid, grid)."""
    app, hp = scene.app, scene.hair
    img = _background(app, grid)
    pw = rays.px * CAMERA_DISTANCE
    hair_back = _hair_layer(scene, _cast(hp["shell"], scene.head, rays, app.light_dir, True, True), True, pw)
    img = _over(img, hair_back.value, hair_back.alpha)
    body = _body_layer(scene, rays)
    img = _over(img, body.value, body.alpha)
    skin, p = _skin_hits(scene, rays, ("cranium", "jaw", "ear_left", "ear_right", "nose", "alae"))
    skin = skin._replace(value=_skin_colour(scene, p, skin.value[:, 0], pw))
    hair = _hair_layer(scene, _cast(hp["shell"], scene.head, rays, app.light_dir, points=True), False, pw)
    head, skin_vis = _zmerge(skin, hair, 0.04)
    return _over(img, head.value, head.alpha).clamp(0, 1), skin_vis


# =========================================================================================================
# Face features: painted in head (X, Y) from the landmark curves, in small supersampled windows
# =========================================================================================================

class _Curve(NamedTuple):
    """The polynomial y(x) through some landmarks, x normalised to [-1, 1] between two landmarks."""

    xc: Tensor  # (B, 1, 1) centre
    hw: Tensor  # (B, 1, 1) half width
    coef: Tensor  # (B, n) coefficients, constant term first

    def local(self, x: Tensor) -> Tensor:
        """Head X (B, h, w) -> the curve's normalised x."""
        return (x - self.xc) / self.hw

    def __call__(self, xl: Tensor) -> Tensor:
        """Normalised x (B, h, w) -> head Y on the curve (Horner)."""
        y = self.coef[:, -1, None, None].expand_as(xl)
        for k in range(self.coef.shape[1] - 2, -1, -1):
            y = torch.addcmul(self.coef[:, k, None, None], y, xl)
        return y


def _curve(xy: Tensor, idx: Sequence[int]) -> _Curve:
    """Interpolating polynomial through landmarks idx (increasing x), x normalised by the end points."""
    i0, i1 = idx[0], idx[-1]
    xc, hw = (xy[:, i0, 0] + xy[:, i1, 0]) / 2, (xy[:, i1, 0] - xy[:, i0, 0]).clamp_min(1e-3) / 2
    pts = xy[:, list(idx)].double()
    xl = (pts[..., 0] - xc.double()[:, None]) / hw.double()[:, None]  # (B, n)
    vander = xl[..., None] ** torch.arange(len(idx), dtype=torch.float64)  # (B, n, n)
    coef = torch.linalg.solve(vander, pts[..., 1:]).squeeze(-1).float()
    return _Curve(xc[:, None, None], hw[:, None, None], coef)


def _ramp(d: Tensor, pw: float) -> Tensor:
    """Soft step of a signed distance d (head units, > 0 inside) over one pixel pw -> [0, 1]."""
    return (d * (1 / pw) + 0.5).clamp(0, 1)


class _Canvas:
    """Premultiplied RGBA painted back to front: rgb (B, 3, h, w), a (B, 1, h, w)."""

    def __init__(self, like: Tensor):
        self.rgb = torch.zeros(like.shape[0], 3, *like.shape[1:])
        self.a = torch.zeros(like.shape[0], 1, *like.shape[1:])

    def over(self, colour: Tensor, alpha: Tensor) -> None:
        """colour (B, 3, h, w) or (B, 3, 1, 1), alpha (B, h, w)."""
        alpha = alpha[:, None]
        self.rgb = torch.addcmul(self.rgb * (1 - alpha), colour, alpha)
        self.a = self.a + alpha * (1 - self.a)


class _Tex(NamedTuple):
    """A window's head-frame texture coordinates and light, and the image's landmarks and factors."""

    x: Tensor  # (B, h, w)
    y: Tensor  # (B, h, w)
    lit: Tensor  # (B, 1, h, w) light level
    pw: float  # a window pixel's width in head units
    xy: Tensor  # (B, 68, 2)
    app: Appearance
    expr: Tensor  # (B, 6)


def _scalar(v: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1)."""
    return v[:, None, None]


_SCLERA = torch.tensor([0.95, 0.93, 0.90]).view(1, 3, 1, 1)
_INK = torch.tensor([0.05, 0.035, 0.03]).view(1, 3, 1, 1)
_WHITE = torch.ones(1, 3, 1, 1)
_EYES = {  # corners, upper lid, lower lid, brow, direction of the outer corner
    "left": ((36, 39), (36, 37, 38, 39), (36, 41, 40, 39), (17, 18, 19, 20, 21), -1.0),
    "right": ((42, 45), (42, 43, 44, 45), (42, 47, 46, 45), (22, 23, 24, 25, 26), 1.0),
}


def _paint_eye(cv: _Canvas, tex: _Tex, side: str) -> None:
    """Socket, lid crease, sclera, iris, pupil, glint, lashes, brow and glasses rim of one eye."""
    (c0, c1), upper, lower, brow, out = _EYES[side]
    x, y, pw, app, skin = tex.x, tex.y, tex.pw, tex.app, _col(tex.app.skin) * tex.lit
    up, lo = _curve(tex.xy, upper), _curve(tex.xy, lower)
    xl = up.local(x)
    yu, yl = up(xl), lo(xl)
    ex, ey, hw = up.xc, (_scalar(tex.xy[:, c0, 1]) + _scalar(tex.xy[:, c1, 1])) / 2, up.hw
    cv.over(skin * 0.55, 0.35 * torch.exp(-(((x - ex) * (1 / 0.21)) ** 2 + ((y - ey - 0.03) * (1 / 0.14)) ** 2)))
    inside_x = hw * (1 - xl.abs())
    cv.over(skin * 0.6, 0.3 * _ramp(0.006 - (y - yu - 0.042).abs(), pw) * _ramp(inside_x, pw))
    eye = (torch.minimum(torch.minimum(yu - y, y - yl), inside_x) * (1 / pw)).clamp(0, 1)
    cv.over(_SCLERA * (0.4 + 0.6 * tex.lit), eye)
    ri = 0.42 * hw
    d = ((x - ex) ** 2 + (y - ey - 0.004) ** 2).sqrt()
    cv.over(_col(app.iris) * (1.2 - 0.6 * (d / ri) ** 2)[:, None] * tex.lit, eye * _ramp(ri - d, pw))
    cv.over(_INK, eye * _ramp(0.42 * ri - d, pw))
    glint = ((x - ex + 0.3 * ri) ** 2 + (y - ey - 0.35 * ri) ** 2).sqrt()
    cv.over(_WHITE, 0.85 * eye * _ramp(0.2 * ri - glint, pw))
    cv.over(_INK, 0.35 * eye * (1 - (yu - y) * (1 / 0.03)).clamp(0, 1))  # the lid's shadow on the eyeball
    lash = 0.011 * (1 + 0.7 * (xl * out).clamp(0, 1))
    cv.over(_INK, 0.95 * _ramp(lash - (y - yu - 0.003).abs(), pw) * _ramp(hw * (1.08 - xl.abs()), pw))
    cv.over(skin * 0.6, 0.45 * _ramp(0.005 - (y - yl).abs(), pw) * _ramp(inside_x, pw))
    _paint_brow(cv, tex, brow, out)
    _paint_rim(cv, tex, ex, ey)


def _paint_brow(cv: _Canvas, tex: _Tex, idx: Sequence[int], out: float) -> None:
    """A thick stroke along the brow landmarks, thinning towards the outer end."""
    curve = _curve(tex.xy, idx)
    xl = curve.local(tex.x)
    half = 0.032 * (1 - 0.45 * ((xl * out + 1) / 2).clamp(0, 1))
    alpha = _ramp(half - (tex.y - curve(xl)).abs(), tex.pw) * _ramp(curve.hw * (1 - xl.abs()) + 0.01, tex.pw)
    colour = _col(tex.app.hair * 0.75 + 0.02) * (0.55 + 0.45 * tex.lit)
    cv.over(colour, 0.92 * alpha)


def _paint_rim(cv: _Canvas, tex: _Tex, ex: Tensor, ey: Tensor) -> None:
    """Glasses: a rounded-rectangle rim around the eye and a faint lens reflection."""
    on = _scalar(tex.app.glasses[:, 0])
    gx, gy = (tex.x - ex) * (1 / 0.2), (tex.y - ey - 0.02) * (1 / 0.145)
    r = (gx**4 + gy**4 + 1e-12) ** 0.25
    cv.over(_WHITE, on * 0.12 * _ramp((1 - r) * 0.17, tex.pw))
    cv.over(_col(tex.app.glasses_colour), on * _ramp(0.016 - (r - 1).abs() * 0.17, tex.pw))


def _paint_nose(cv: _Canvas, tex: _Tex) -> None:
    """Shadow under the nose, nostrils, tip highlight, frown lines, disgust wrinkles, glasses bridge."""
    x, y, pw, xy, skin = tex.x, tex.y, tex.pw, tex.xy, _col(tex.app.skin) * tex.lit
    xm = (_scalar(xy[:, 39, 0]) + _scalar(xy[:, 42, 0])) / 2
    bx, by = _scalar(xy[:, 33, 0]), _scalar(xy[:, 33, 1])
    cv.over(skin * 0.5, 0.35 * torch.exp(-(((x - bx) * (1 / 0.13)) ** 2 + ((y - by + 0.035) * (1 / 0.035)) ** 2)))
    for k in (32, 34):
        nx, ny = _scalar(xy[:, k, 0]) * 0.85 + 0.15 * bx, _scalar(xy[:, k, 1]) + 0.012
        r = (((x - nx) * (1 / 0.032)) ** 2 + ((y - ny) * (1 / 0.016)) ** 2).sqrt()
        cv.over(_INK + 0.15 * _col(tex.app.skin), 0.75 * _ramp((1 - r) * 0.016, pw))
    tip = (x - _scalar(xy[:, 30, 0])) ** 2 + (y - _scalar(xy[:, 30, 1]) - 0.03) ** 2
    cv.over(_WHITE, 0.12 * torch.exp(-tip * (1 / 0.03**2)) * (tex.lit[:, 0] - 0.6).clamp(0, 1))
    anger, disgust = (_scalar(tex.expr[:, EXPRESSIONS.index(e)]) for e in ("anger", "disgust"))
    by21 = (_scalar(xy[:, 21, 1]) + _scalar(xy[:, 22, 1])) / 2
    span = _ramp(0.05 - (y - by21 - 0.02).abs(), pw)
    cv.over(skin * 0.45, 0.75 * anger * _ramp(0.007 - ((x - xm).abs() - 0.045).abs(), pw) * span)
    y28, y29 = _scalar(xy[:, 28, 1]), _scalar(xy[:, 29, 1])
    waves = ((torch.sin((y - y28) * (2 * math.pi / 0.04)) - 0.5) * 2).clamp(0, 1)
    band = _ramp(0.5 * (y28 - y29) + 0.02 - (y - (y28 + y29) / 2).abs(), pw)
    cv.over(skin * 0.45, 0.7 * disgust * waves * band * (1 - (x - xm).abs() * (1 / 0.1)).clamp(0, 1))
    ey = (_scalar(xy[:, 36, 1]) + _scalar(xy[:, 39, 1])) / 2 + 0.02
    bridge = _ramp(0.013 - (y - ey - 0.035 + 0.8 * (x - xm) ** 2).abs(), pw)
    on = _scalar(tex.app.glasses[:, 0])
    cv.over(_col(tex.app.glasses_colour), on * bridge * _ramp(0.19 - (x - xm).abs(), pw))


def _paint_mouth(cv: _Canvas, tex: _Tex) -> None:
    """Lips between the outer and inner lip curves, a dark mouth with teeth where it is open, the lip line."""
    x, y, pw, lit = tex.x, tex.y, tex.pw, tex.lit
    ou, ol = _curve(tex.xy, range(48, 55)), _curve(tex.xy, (48, 59, 58, 57, 56, 55, 54))
    iu, il = _curve(tex.xy, range(60, 65)), _curve(tex.xy, (60, 67, 66, 65, 64))
    xo, xi = ou.local(x), iu.local(x)
    yiu, yil = iu(xi), il(xi)
    corner_y = _scalar(tex.xy[:, 48, 1])
    for cx in (ou.xc - ou.hw, ou.xc + ou.hw):  # shadowed mouth corners
        corner = torch.exp(-((x - cx) ** 2 + (y - corner_y) ** 2) * (1 / 0.03**2))
        cv.over(_col(tex.app.skin) * lit * 0.5, 0.3 * corner)
    outer = (torch.minimum(torch.minimum(ou(xo) - y, y - ol(xo)), ou.hw * (1 - xo.abs())) * (1 / pw)).clamp(0, 1)
    upper = _ramp(y - yiu, pw)[:, None]
    gloss = 0.08 * torch.exp(-(((x - iu.xc) * (1 / 0.08)) ** 2 + ((y - (yil + ol(xo)) / 2) * (1 / 0.02)) ** 2))
    cv.over(_col(tex.app.lips) * (1.05 - 0.22 * upper) * lit + gloss[:, None], outer)
    inside_x = iu.hw * (1 - xi.abs())
    inner = (torch.minimum(torch.minimum(yiu - y, y - yil), inside_x) * (1 / pw)).clamp(0, 1)
    cv.over(torch.tensor([0.16, 0.05, 0.06]).view(1, 3, 1, 1) * lit, inner)
    teeth = inner * _ramp(y - (yiu - 0.045), pw) * _ramp(inside_x - 0.015, pw)
    cv.over(torch.tensor([0.93, 0.9, 0.84]).view(1, 3, 1, 1) * (0.5 + 0.5 * lit), teeth)
    cv.over(torch.tensor([0.8, 0.76, 0.7]).view(1, 3, 1, 1) * lit, 0.6 * inner * _ramp(yil + 0.025 - y, pw))
    cv.over(_col(tex.app.lips) * 0.35 * lit, 0.6 * _ramp(0.006 - (y - yiu).abs(), pw) * _ramp(inside_x, pw))


# window: painter, landmarks whose projected mean is its centre, half-size in head units
_WINDOWS = (
    (lambda cv, tex: _paint_eye(cv, tex, "left"), (*range(17, 22), *range(36, 42)), 0.34),
    (lambda cv, tex: _paint_eye(cv, tex, "right"), (*range(22, 27), *range(42, 48)), 0.34),
    (_paint_nose, (21, 22, *range(31, 36)), 0.40),
    (_paint_mouth, tuple(range(48, 68)), 0.42),
)


def _paint_features(img: Tensor, skin_vis: Tensor, scene: _Scene, size: int, grid: int) -> Tensor:
    """Paint the face features over img (B, 3, grid, grid), one supersampled window per feature group."""
    B = img.shape[0]
    sub = min(FEATURE_SUPERSAMPLE, max(1, math.ceil(FEATURE_RES / grid)))
    lm = Camera.for_size(size).project(scene.points) * (grid / size) + (grid / size - 1) / 2  # raster pixels
    flat, vis_flat = img.reshape(B, 3, grid * grid), skin_vis.reshape(B, 1, grid * grid)
    for paint, idx, half in _WINDOWS:
        k = min(grid, 2 * math.ceil(half * ZOOM * grid * CAMERA_DISTANCE / (CAMERA_DISTANCE - 1.1)) + 2)
        origin = (lm[:, list(idx)].mean(1) - k / 2 + 0.5).round().long().clamp(0, grid - k)  # (B, 2)
        offs = torch.arange(k)
        index = ((origin[:, 1, None, None] + offs[:, None]) * grid + origin[:, 0, None, None] + offs).view(B, 1, -1)
        rays = _window_rays(size, grid, origin[:, 0], origin[:, 1], k, sub)
        skin, p = _skin_hits(scene, rays, FACE_SURFACES)
        tex = _Tex(p[:, 0], p[:, 1], _lighting(scene.app, skin.value[:, 0]), rays.px * CAMERA_DISTANCE, scene.xy,
                   scene.app, scene.st.expression)
        cv = _Canvas(tex.x)
        paint(cv, tex)
        rgba = torch.cat([cv.rgb, cv.a], 1) * (skin.alpha[:, None] * (p[:, 2:3] > 0))  # on visible front skin
        rgba = nnf.avg_pool2d(rgba, sub) if sub > 1 else rgba
        vis = vis_flat.gather(2, index).view(B, 1, k, k)
        patch = flat.gather(2, index.expand(B, 3, -1)).view(B, 3, k, k)
        patch = patch * (1 - rgba[:, 3:] * vis) + rgba[:, :3] * vis
        flat = flat.scatter(2, index.expand(B, 3, -1), patch.reshape(B, 3, -1))
    return flat.view(B, 3, grid, grid)


def render(appearance: Appearance, structure: Structure, size: int = 64, *, supersample: int = 1,
           threads: int | None = 1) -> tuple[Tensor, Tensor]:
    """Draw faces: x (B, 3, size, size) float32 in [-1, 1] and their exact landmarks (B, 68, 2) in pixels.

    A batch of one appearance or structure broadcasts against the other. ``supersample`` renders the
    raster that many times finer and averages it down (edges are already anti-aliased without it).
    ``threads``: torch intra-op threads while drawing, restored afterwards (None keeps the current
    setting). One by default: the renderer is thousands of small ops that gain little from threads
    and, on a shared CPU, stall badly when OpenMP threads wait for each other (measured 10-100x slower).
    """
    if size < 16:
        raise ValueError(f"size must be at least 16, got {size}")
    appearance, structure = _broadcast(appearance, structure)
    with torch.no_grad(), _torch_threads(threads):
        scene = _scene(appearance, structure)
        grid = size * supersample
        img, skin_vis = _main_pass(scene, _grid_rays(size, grid), grid)
        img = _paint_features(img, skin_vis, scene, size, grid)
        if supersample > 1:
            img = nnf.avg_pool2d(img, supersample)
        return img.clamp(0, 1) * 2 - 1, Camera.for_size(size).project(scene.points)


# =========================================================================================================
# A dataset of identities x structures
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


@dataclass(frozen=True, eq=False)
class FaceSet:
    """Rendered faces: the images and everything known about them."""

    images: Tensor  # (N, 3, H, W) uint8
    landmarks: Tensor  # (N, 68, 2) float32 pixels
    identity: Tensor  # (N,) int64 identity ids
    structure: Structure  # N
    appearance: Appearance  # N, the identity's appearance per image


def render_faces(appearance: Appearance, structure: Structure, size: int, batch_size: int = 256,
                 progress: bool = False) -> tuple[Tensor, Tensor]:
    """render() in batches: uint8 images (N, 3, size, size) and landmarks (N, 68, 2)."""
    from tqdm.auto import tqdm

    n = len(structure)
    images, marks = torch.empty(n, 3, size, size, dtype=torch.uint8), torch.empty(n, 68, 2)
    for start in tqdm(range(0, n, batch_size), desc=f"rendering {n} faces", disable=not progress):
        sl = slice(start, start + batch_size)
        x, lm = render(appearance.index(sl) if len(appearance) > 1 else appearance, structure.index(sl), size)
        images[sl], marks[sl] = to_uint8(x), lm
    return images, marks


def make_faces(size: int, identities: Sequence[int] | Tensor, images_per_identity: int, seed: int,
               progress: bool = False) -> FaceSet:
    """Render images_per_identity structures of each listed identity (ids into the seed's population)."""
    ids = torch.as_tensor([int(i) for i in identities], dtype=torch.int64)
    app, st = sample_identities(ids, images_per_identity, seed)
    app = app.repeat_interleave(images_per_identity)
    images, marks = render_faces(app, st, size, progress=progress)
    return FaceSet(images, marks, ids.repeat_interleave(images_per_identity), st, app)
