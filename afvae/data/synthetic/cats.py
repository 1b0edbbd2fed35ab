"""Procedural cats: a furry head of ellipsoids with flat triangular ears, painted eyes, nose and mouth, whiskers
and a chest, with the 9 ``cat9`` keypoints.

Head frame as the faces': X to the image right, Y up, Z towards the camera, one unit half a face's width. The
head is a union of ellipsoids (cranium, cheeks, whisker pads, chin, nose) whose fur (a base colour with tabby
stripes or patches and white areas) is drawn in head coordinates; the ears are triangles whose base lies
inside the head. The keypoints follow the CAT dataset (Zhang, Sun & Tang 2008), "left" meaning the image
left: 0 left eye, 1 right eye, 2 mouth, 3-5 left ear (outer base, tip, inner base), 6-8 right ear (inner base,
tip, outer base). An eye's keypoint is the centre of its visible opening (closing an eye lowers it by half the
lid's travel) and the mouth's the centre of the mouth (it drops as the mouth opens), both lifted onto the head
surface; the ear points are the ear triangles' corners. They are rotated by the head pose and projected with
the faces' camera, so ``render`` returns the exact keypoints of the image it draws.

Appearance (per identity): fur colours and pattern, eye and nose colour, light, background and head
proportions. Structure (per image): head pose (yaw, pitch, roll), ear angle, eye opening and mouth opening.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as nnf
from torch import Tensor

from afvae.data.synthetic.camera import (CAMERA_DISTANCE, Camera, Ellipsoid, ellipsoid, front_z, pose_rotation, rot_x,
                                         rot_z, vec)
from afvae.data.synthetic.sampling import Factors, broadcast, identities_of, pick, sample_scene, uniform
from afvae.data.synthetic.shading import (Canvas, Frame, Layer, Rays, cast, cast_triangle, col, lighting, over,
                                          points_at, ramp, render_layered, stroke, zmerge)

CAT_PATTERNS = ("solid", "tabby", "patched")
CAT_SHAPE = ("head_width", "ear_size", "eye_size", "muzzle_size")  # CatAppearance.shape, each in [-1, 1]


@dataclass(frozen=True, eq=False)
class CatAppearance(Factors):
    """Per-identity appearance of a cat, batched; RGB colours are albedos in [0, 1]."""

    fur: Tensor  # (B, 3) base coat
    fur2: Tensor  # (B, 3) stripes or patches
    pattern: Tensor  # (B, 3) weights over CAT_PATTERNS (one-hot when sampled)
    patches: Tensor  # (B, 8) four wave directions (radians) and four phases of the patch pattern
    white: Tensor  # (B, 1) extent of the white muzzle and chest in [0, 1]
    iris: Tensor  # (B, 3)
    nose: Tensor  # (B, 3) nose leather
    bg_top: Tensor  # (B, 3) background colour at the top row
    bg_bottom: Tensor  # (B, 3) ... and at the bottom row
    bg_noise: Tensor  # (B, 16) 4 x 4 grid of brightness offsets
    light_dir: Tensor  # (B, 3) unit vector towards the light, camera frame
    light: Tensor  # (B, 2) diffuse intensity, ambient level
    shape: Tensor  # (B, 4) CAT_SHAPE in [-1, 1]: the only fields that move keypoints


@dataclass(frozen=True, eq=False)
class CatStructure(Factors):
    """Per-image structure of a cat, batched: head pose in degrees, ears, eyes and mouth."""

    yaw: Tensor  # (B,) degrees, > 0 turns the face to the image right
    pitch: Tensor  # (B,) degrees, > 0 looks up
    roll: Tensor  # (B,) degrees, > 0 tilts counter-clockwise in the image
    ears: Tensor  # (B,) ear angle in [-1, 1]: 1 pricked up, 0 relaxed, -1 flattened out to the sides
    eyes: Tensor  # (B,) eye opening in [0, 1]: 0 closed
    mouth: Tensor  # (B,) mouth opening in [0, 1]: 0 closed

    @classmethod
    def create(cls, yaw: float | Sequence[float] | Tensor = 0.0, pitch: float | Sequence[float] | Tensor = 0.0,
               roll: float | Sequence[float] | Tensor = 0.0, ears: float | Sequence[float] | Tensor = 0.0,
               eyes: float | Sequence[float] | Tensor = 1.0, mouth: float | Sequence[float] | Tensor = 0.0
               ) -> "CatStructure":
        """Structures from plain values; scalars broadcast to the longest argument."""
        vals = [torch.as_tensor(a, dtype=torch.float32).reshape(-1) for a in (yaw, pitch, roll, ears, eyes, mouth)]
        n = max(len(v) for v in vals)
        return cls(*(v.expand(n).clone() for v in vals))


_FUR = ((0.86, 0.52, 0.22), (0.52, 0.52, 0.54), (0.13, 0.12, 0.12), (0.46, 0.33, 0.21), (0.90, 0.80, 0.62),
        (0.62, 0.44, 0.30), (0.35, 0.33, 0.34))
_IRIS = ((0.46, 0.66, 0.22), (0.86, 0.72, 0.18), (0.88, 0.52, 0.14), (0.40, 0.62, 0.88), (0.66, 0.70, 0.25))
_NOSE = ((0.86, 0.52, 0.52), (0.22, 0.16, 0.16), (0.62, 0.36, 0.32))
_PATTERN_P = (0.3, 0.45, 0.25)


def _coat(g: torch.Generator, n: int) -> Tensor:
    """n fur colours: palette colours at a random brightness, with a little hue jitter, (n, 3)."""
    return (pick(g, _FUR, n, 0.01) * (0.8 + 0.35 * uniform(g, n, 1))).clamp(0, 1)


def sample_cat_appearance(n: int, generator: torch.Generator) -> CatAppearance:
    """``n`` random cat identities, deterministic given the generator's state."""
    g = generator
    fur = _coat(g, n)
    pattern = nnf.one_hot(torch.multinomial(torch.tensor(_PATTERN_P), n, replacement=True, generator=g), 3).float()
    patched = pattern[:, 2:]
    fur2 = patched * _coat(g, n) + (1 - patched) * fur * (0.3 + 0.25 * uniform(g, n, 1))
    patches = torch.cat([math.pi * uniform(g, n, 4), 2 * math.pi * uniform(g, n, 4)], 1)
    white = (uniform(g, n, 1) < 0.45).float() * (0.3 + 0.7 * uniform(g, n, 1))
    return CatAppearance(fur=fur, fur2=fur2, pattern=pattern, patches=patches, white=white,
                         iris=pick(g, _IRIS, n, 0.04), nose=pick(g, _NOSE, n, 0.04), **sample_scene(g, n),
                         shape=2 * uniform(g, n, len(CAT_SHAPE)) - 1)


def sample_cat_structure(n: int, generator: torch.Generator, *, max_yaw: float = 45.0, max_pitch: float = 20.0,
                         max_roll: float = 20.0) -> CatStructure:
    """``n`` random cat structures: pose uniform in the given ranges (degrees), ears uniform in [-1, 1], eyes
    open in [0.6, 1] (closed to [0, 0.6] a quarter of the time), mouth closed or open up to 1 (a third of the
    time)."""
    g = generator
    yaw, pitch, roll = ((2 * uniform(g, n) - 1) * m for m in (max_yaw, max_pitch, max_roll))
    ears = 2 * uniform(g, n) - 1
    eyes = torch.where(uniform(g, n) < 0.25, 0.6 * uniform(g, n), 0.6 + 0.4 * uniform(g, n))
    mouth = (uniform(g, n) < 1 / 3).float() * uniform(g, n)
    return CatStructure(yaw, pitch, roll, ears, eyes, mouth)


def sample_cat_identities(identities: Sequence[int] | Tensor, images_per_identity: int, seed: int
                          ) -> tuple[CatAppearance, CatStructure]:
    """Appearance of each identity (n) and its images' structures (n * images_per_identity, identity-major)."""
    return identities_of(sample_cat_appearance, sample_cat_structure, identities, images_per_identity, seed)


# =========================================================================================================
# Geometry: head surfaces, ears, keypoints
# =========================================================================================================

HEAD_SURFACES = ("cranium", "cheeks", "pad_left", "pad_right", "chin", "nose")
_BLEND = {"cheeks": 0.2, "pad_left": 0.06, "pad_right": 0.06, "chin": 0.06, "nose": 0.04}  # depth blend widths
_EAR = ((-0.80, 0.36, -0.12), (-0.72, 1.26, -0.08), (-0.20, 0.80, -0.02))  # left ear: outer base, tip, inner base;
# the base corners lie inside the cranium, so the head hides the ear's root
_EYE = (0.33, 0.02, 0.15, 0.12, math.radians(12.0))  # |X|, Y, half width, half height, slant (outer corner up)
MOUTH_Y, MOUTH_DROP = -0.36, 0.07  # the closed mouth's Y, and how far its centre drops fully open


def proportions(shape: Tensor) -> tuple[Tensor, ...]:
    """Scale factors (B,) of the head's width, the ears, the eyes and the muzzle from shape (B, 4) in [-1, 1]."""
    return tuple(1 + k * shape[:, i] for i, k in enumerate((0.08, 0.18, 0.12, 0.12)))


def head_geometry(shape: Tensor, mouth: Tensor) -> dict[str, Ellipsoid]:
    """The head's furry surfaces in the head frame from shape (B, 4) and mouth opening (B,)."""
    hw, _, _, mz = proportions(shape)
    one = torch.ones_like(hw)
    geom = {"cranium": ellipsoid(vec(0, 0.12, -0.05, like=one), vec(0.9 * hw, 0.8, 0.82, like=one)),
            "cheeks": ellipsoid(vec(0, -0.22, 0.0, like=one), vec(1.0 * hw, 0.55, 0.72, like=one)),
            "chin": ellipsoid(vec(0, -0.5 - 0.12 * mouth, 0.5, like=one), vec(0.16 * mz, 0.11, 0.14, like=one)),
            "nose": ellipsoid(vec(0, -0.13, 0.74, like=one), vec(0.1 * mz, 0.09, 0.09, like=one))}
    for side, name in ((-1.0, "pad_left"), (1.0, "pad_right")):
        geom[name] = ellipsoid(vec(side * 0.15 * mz, -0.33, 0.66, like=one), vec(0.2 * mz, 0.16 * mz, 0.16, like=one))
    return geom


def ears(shape: Tensor, ear_angle: Tensor) -> Tensor:
    """The ear triangles in the head frame, (B, 2, 3, 3): (left, right) x (corner in keypoint order) x xyz.

    The tip turns about the base's midpoint: ear_angle 1 turns it up and in, -1 out sideways and back.
    """
    hw, size, _, _ = proportions(shape)
    left = torch.tensor(_EAR).expand(len(shape), 3, 3).clone()
    left[:, 0, 0] = left[:, 0, 0] * hw
    mid = (left[:, 0] + left[:, 2]) / 2  # (B, 3)
    turn = rot_z(torch.deg2rad(-25.0 * ear_angle)) @ rot_x(torch.deg2rad(25.0 * ear_angle.clamp(max=0)))
    left[:, 1] = mid + (turn @ ((left[:, 1] - mid) * size[:, None])[:, :, None])[..., 0]
    right = left[:, [2, 1, 0]] * torch.tensor([-1.0, 1.0, 1.0])  # mirrored, inner base first
    return torch.stack([left, right], 1)


def feature_xy(shape: Tensor, structure: CatStructure) -> Tensor:
    """Head (X, Y) of the left eye, right eye and mouth keypoints, (B, 3, 2)."""
    ex, ey, _, ry, _ = _EYE
    hw, _, es, _ = proportions(shape)
    eye_y = ey - ry * es * (1 - structure.eyes)  # the centre of the visible opening
    mouth_y = MOUTH_Y - MOUTH_DROP * structure.mouth
    x = torch.stack([-ex * hw, ex * hw, torch.zeros_like(hw)], 1)
    return torch.stack([x, torch.stack([eye_y, eye_y, mouth_y], 1)], -1)


def head_points(shape: Tensor, structure: CatStructure) -> Tensor:
    """The 9 keypoints as 3-D points of the head frame, (B, 9, 3): eyes and mouth on the surface, ear corners."""
    geom = head_geometry(shape, structure.mouth)
    xy = feature_xy(shape, structure)
    z = torch.stack([front_z(geom[k], xy) for k in HEAD_SURFACES]).amax(0)
    return torch.cat([torch.cat([xy, z[..., None]], -1), ears(shape, structure.ears).flatten(1, 2)], 1)


def head_rotation(structure: CatStructure) -> Tensor:
    """(B, 3, 3) head frame -> camera frame."""
    return pose_rotation(structure.yaw, structure.pitch, structure.roll)


def keypoints(appearance: CatAppearance, structure: CatStructure, size: int = 64) -> Tensor:
    """The exact 9 keypoints of render(appearance, structure, size), (B, 9, 2) pixels, without rendering."""
    appearance, structure = broadcast(appearance, structure)
    pts = head_points(appearance.shape, structure) @ head_rotation(structure).transpose(1, 2)
    return Camera.for_size(size).project(pts)


# =========================================================================================================
# Fur, features and rendering
# =========================================================================================================

class _Scene(NamedTuple):
    """Everything per image that does not depend on the pixel."""

    app: CatAppearance
    st: CatStructure
    geom: dict[str, Ellipsoid]
    head: Frame  # the camera seen from the head frame
    rot: Tensor  # (B, 3, 3) head frame -> camera frame
    ears: Tensor  # (B, 2, 3, 3) head frame


_WHITE = torch.tensor([0.93, 0.92, 0.90]).view(1, 3, 1, 1)
_INK = torch.tensor([0.06, 0.05, 0.05]).view(1, 3, 1, 1)


def _fur(app: CatAppearance, p: Tensor) -> Tensor:
    """Fur albedo at head points p (B, 3, h, w): the base coat with tabby stripes or patches, and white below."""
    x, y, z = p.unbind(1)
    top = ((y - 0.2) / 0.1).clamp(0, 1)  # stripes run back over the crown, and along the cheeks below it
    side = ((x.abs() - 0.5) / 0.1).clamp(0, 1) * ((0.15 - y) / 0.1).clamp(0, 1)
    phase = top * torch.atan2(x, z + 0.4) * (2 * math.pi / 0.2) + (1 - top) * (y + 0.3 * x.abs()) * (2 * math.pi / 0.16)
    stripes = ((torch.sin(phase) - 0.35) / 0.4).clamp(0, 1) * torch.maximum(top, side)
    angle, phi = app.patches[:, :4, None, None], app.patches[:, 4:, None, None]  # (B, 4, 1, 1)
    wave = torch.sin(3.2 * (angle.cos() * x[:, None] + angle.sin() * y[:, None]) + 1.5 * z[:, None] + phi)
    patches = ((wave.mean(1) - 0.1) / 0.1).clamp(0, 1)  # (B, h, w)
    w = app.pattern[:, :, None, None]
    second = 0.8 * w[:, 1] * stripes + w[:, 2] * patches
    albedo = col(app.fur) + (col(app.fur2) - col(app.fur)) * second[:, None]
    muzzle = (x / 0.42) ** 2 + ((y + 0.45) / 0.32) ** 2  # < 1 on the muzzle and chin
    white = ((app.white[:, :, None] * 1.6 - muzzle) / 0.1).clamp(0, 1) * (app.white[:, :, None] > 0)
    return over(albedo, _WHITE.expand_as(albedo), white)


def _paint_eye(cv: Canvas, x: Tensor, y: Tensor, pw: float, app: CatAppearance, st: CatStructure, side: float) -> None:
    """One eye, almond-shaped, its upper lid lowered by (1 - opening): iris, slit pupil, glint and a dark rim."""
    ex, ey, rx, ry, slant = _EYE
    hw, _, es, _ = proportions(app.shape)
    rx, ry = (rx * es)[:, None, None], (ry * es)[:, None, None]
    dx, dy = x - side * ex * hw[:, None, None], y - ey
    c, s = math.cos(side * slant), math.sin(side * slant)
    lx, ly = (c * dx + s * dy) / rx, (c * dy - s * dx) / ry  # the eye's own axes, unit half-sizes
    q = (1 - lx * lx).clamp_min(0).sqrt()
    upper, lower = -1 + 2 * st.eyes[:, None, None] * q, -q
    aperture = torch.minimum(upper - ly, ly - lower) * ry  # head units, > 0 inside the visible eye
    cv.over(_INK, 0.8 * ramp(aperture + 0.025, pw))  # the rim, left showing around the eye
    shade = 0.7 + 0.35 * (1 - (lx * lx + ly * ly)).clamp(0, 1)
    cv.over(col(app.iris) * shade[:, None], ramp(aperture, pw))
    pupil = 1 - ((lx / 0.22) ** 2 + (ly / 0.9) ** 2).sqrt()
    cv.over(_INK, ramp(pupil * 0.22 * rx, pw) * ramp(aperture, pw))
    glint = 1 - (((lx + 0.3) / 0.14) ** 2 + ((ly - 0.35) / 0.16) ** 2).sqrt()
    cv.over(_WHITE, 0.9 * ramp(glint * 0.1 * rx, pw) * ramp(aperture, pw))


def _paint_muzzle(cv: Canvas, x: Tensor, y: Tensor, pw: float, app: CatAppearance, st: CatStructure) -> None:
    """Nose leather, the line down to the mouth, the mouth's two arcs and, opening, the mouth itself."""
    mz = proportions(app.shape)[3][:, None, None]
    top, tip = -0.11, -0.175  # the nose leather: a triangle pointing down
    width = 0.09 * mz * (y - tip) / (top - tip)  # its half width at height y
    nose = torch.minimum(top - y, 0.6 * (width - x.abs()))  # head units inside it, roughly
    cv.over(col(app.nose), ramp(nose, pw))
    line = ramp(0.012 - x.abs(), pw) * ramp(y + 0.34, pw) * ramp(-0.17 - y, pw)
    cv.over(_INK, 0.85 * line)
    arc = MOUTH_Y - 0.04 * torch.sin(math.pi * (x.abs() / (0.13 * mz)).clamp(0, 1))
    cv.over(_INK, 0.85 * ramp(0.013 - (y - arc).abs(), pw) * ramp(0.13 * mz - x.abs(), pw))
    m = st.mouth[:, None, None]
    cy, rx, ry = MOUTH_Y - MOUTH_DROP * m, 0.08 + 0.04 * m, 0.075 * m + 1e-3
    inside = (1 - ((x / rx) ** 2 + ((y - cy) / ry) ** 2).sqrt()) * ry
    cv.over(torch.tensor([0.32, 0.07, 0.09]).view(1, 3, 1, 1), ramp(inside, pw))
    tongue = (1 - ((x / (0.7 * rx)) ** 2 + ((y - cy + 0.6 * ry) / (0.5 * ry)) ** 2).sqrt()) * ry
    cv.over(torch.tensor([0.85, 0.45, 0.5]).view(1, 3, 1, 1), ramp(inside, pw) * ramp(tongue, pw))


def _head_layer(scene: _Scene, rays: Rays) -> Layer:
    """The furry head with its painted features: value = lit colour (B, 3, h, w)."""
    app, layer = scene.app, None
    for name in HEAD_SURFACES:
        hit = cast(scene.geom[name], scene.head, rays, app.light_dir)
        new = Layer(hit.cover, hit.t, hit.shade[:, None])
        layer = new if layer is None else zmerge(layer, new, _BLEND[name])[0]
    assert layer is not None
    p = points_at(scene.head, layer.t, rays)  # (B, 3, h, w)
    x, y, pw = p[:, 0], p[:, 1], rays.px * CAMERA_DISTANCE
    lit = lighting(app.light, layer.value[:, 0])
    cv = Canvas(x)
    for side in (-1.0, 1.0):
        _paint_eye(cv, x, y, pw, app, scene.st, side)
    _paint_muzzle(cv, x, y, pw, app, scene.st)
    front = (p[:, 2:] > 0.2).float()  # features live on the front of the head
    colour = _fur(app, p) * lit * (1 - cv.a * front) + cv.rgb * front * (0.35 + 0.65 * lit)
    return layer._replace(value=colour)


def _ear_layers(scene: _Scene, rays: Rays) -> list[Layer]:
    """Each ear: a fur triangle with a darker pink hollow inside, value = lit colour."""
    app, out = scene.app, []
    tri = scene.ears @ scene.rot[:, None].transpose(2, 3)  # (B, 2, 3, 3) camera frame
    inner = torch.tensor([0.80, 0.55, 0.55]).view(1, 3, 1, 1)
    for k in range(2):
        hit = cast_triangle(tri[:, k], rays, app.light_dir)
        p = points_at(scene.head, hit.t, rays)  # (B, 3, h, w) head frame
        a, tip, b = scene.ears[:, k].unbind(1)  # (B, 3)
        centre = (a + b + tip) / 3
        rel = torch.linalg.norm(p - ((centre + tip) / 2)[:, :, None, None], dim=1)  # distance from the hollow
        hollow = ((0.2 - rel) / 0.06).clamp(0, 1) * 0.8
        colour = col(app.fur) + (inner * (0.6 + 0.4 * col(app.nose)) - col(app.fur)) * hollow[:, None]
        out.append(Layer(hit.cover, hit.t, colour * lighting(app.light, hit.shade) * (1 - 0.35 * hollow[:, None])))
    return out


def _body_layer(scene: _Scene, rays: Rays) -> Layer:
    """Chest and shoulders below the head, in the world frame, white at the front for white-chested cats."""
    app, one = scene.app, torch.ones(len(scene.app))
    world = Frame(torch.tensor([0.0, 0.0, CAMERA_DISTANCE]).expand(len(app), 3), torch.eye(3).expand(len(app), 3, 3))
    hit = cast(ellipsoid(vec(0, -1.6, -0.8, like=one), vec(1.05, 0.85, 0.7, like=one)), world, rays, app.light_dir,
               points=True)
    x, y, _ = hit.p
    white = app.white[:, :, None]
    bib = ((white - (x / 0.6) ** 2 - ((y + 0.9) / 0.7) ** 2) / 0.1).clamp(0, 1) * (white > 0)
    stripes = ((torch.sin(y * (2 * math.pi / 0.2) + 0.5 * x * x) - 0.35) / 0.4).clamp(0, 1)
    stripes = 0.6 * stripes * app.pattern[:, 1, None, None] * ((x.abs() - 0.3) / 0.2).clamp(0, 1)  # on the flanks
    fur = col(app.fur) + (col(app.fur2) - col(app.fur)) * stripes[:, None]
    colour = over(fur, _WHITE.expand_as(fur), bib)
    return Layer(hit.cover, hit.t, colour * lighting(app.light, hit.shade))


_WHISKERS = ((0.22, -0.30, 0.76, -0.25), (0.22, -0.335, 0.78, -0.05), (0.21, -0.37, 0.76, 0.15))  # root, droop


def _whiskers(scene: _Scene, rays: Rays, cat: Layer) -> Layer:
    """Six whiskers from the whisker pads over the cat layer, hidden where the head is in front of them."""
    alpha = torch.zeros_like(cat.alpha)
    for side in (-1.0, 1.0):
        for x0, y0, z0, droop in _WHISKERS:
            root = torch.tensor([side * x0, y0, z0])
            tip = root + 0.95 * torch.tensor([side * math.cos(droop), math.sin(droop), -0.3])
            ends = torch.stack([root, tip]).expand(len(cat.t), 2, 3) @ scene.rot.transpose(1, 2)  # camera frame
            cover, t = stroke(ends[:, 0], ends[:, 1], 0.02, rays)
            seen = ((cat.t + 0.05 - t) / 0.05).clamp(0, 1).maximum(1 - cat.alpha)
            alpha = alpha + (1 - alpha) * cover * seen * 0.8
    colour = col(0.25 + 0.7 * scene.app.white.clamp(0.5, 1).expand(-1, 3))
    total = alpha + (1 - alpha) * cat.alpha
    value = (alpha[:, None] * colour + ((1 - alpha) * cat.alpha)[:, None] * cat.value) / total.clamp_min(1e-6)[:, None]
    return Layer(total, cat.t, value)


def _scene(app: CatAppearance, st: CatStructure) -> _Scene:
    """Head surfaces, ears and frames of each image."""
    rot = head_rotation(st)
    rot_t = rot.transpose(1, 2)
    cam = torch.tensor([0.0, 0.0, CAMERA_DISTANCE]).expand(len(app), 3)
    return _Scene(app, st, head_geometry(app.shape, st.mouth), Frame((rot_t @ cam[:, :, None])[..., 0], rot_t), rot,
                  ears(app.shape, st.ears))


def layer(appearance: CatAppearance, structure: CatStructure, rays: Rays) -> Layer:
    """The cat (head, ears, chest, whiskers) as one soft-edged layer over ``rays`` (batches of equal length): alpha
    and t (B, h, w), value = lit colour (B, 3, h, w)."""
    scene = _scene(appearance, structure)
    head = _head_layer(scene, rays)
    for ear in _ear_layers(scene, rays):
        head = zmerge(head, ear, 0.03)[0]
    return _whiskers(scene, rays, zmerge(head, _body_layer(scene, rays), 0.05)[0])


def render(appearance: CatAppearance, structure: CatStructure, size: int = 64, *, supersample: int = 1,
           threads: int | None = 1) -> tuple[Tensor, Tensor]:
    """Draw cats: x (B, 3, size, size) float32 in [-1, 1] and their exact keypoints (B, 9, 2) in pixels.

    A batch of one appearance or structure broadcasts against the other; ``supersample`` and ``threads`` as
    for the faces' ``render``.
    """
    return render_layered(layer, keypoints, appearance, structure, size, supersample=supersample, threads=threads)
