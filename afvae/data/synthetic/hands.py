"""Procedural hands: a right hand seen from its back, built of ellipsoids (palm, knuckles, finger segments,
forearm, sleeve), with the 21 ``hand21`` keypoints at its joints.

Hand frame: origin at the wrist joint, Y along the middle finger, X towards the little finger (the image right
at rest), Z out of the back of the hand (towards the camera at rest); units as the face's (half a face's
width). Each digit is a chain of three segments from its base joint (the thumb's CMC, a finger's MCP): a finger
bends in the plane of its base direction and -Z (towards the palm), the thumb across the palm. Forward
kinematics place the joints; the segments are ellipsoids between them, and the keypoints are the joints
themselves (the fingertip a little inside the rounded tip), turned by the wrist rotation (about the forearm)
and the in-plane rotation and projected with the faces' camera. So ``render`` returns the exact keypoints of
the image it draws (occluded joints included: they are 3-D points).

Appearance (per identity): skin tone, sleeve colour, background, light and hand proportions. Structure (per
image): flexion of each digit, finger spread, wrist rotation and in-plane rotation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from afvae.data.synthetic.camera import CAMERA_DISTANCE, Camera, Ellipsoid, ellipsoid, rot_y, rot_z, vec
from afvae.data.synthetic.sampling import (Factors, broadcast, identities_of, muted, sample_scene, skin_tone,
                                           uniform)
from afvae.data.synthetic.shading import Frame, Layer, Rays, cast, col, lighting, render_layered, zmerge

DIGITS = ("thumb", "index", "middle", "ring", "pinky")
HAND_SHAPE = ("finger_length", "palm_width", "thickness")  # Appearance.shape, each in [-1, 1]

# Per digit: base joint (X, Y), direction at spread 0.5 (degrees from +Y towards +X), the change of that angle
# from spread 0.5 to spread 1, segment lengths (base to tip), radius, joint angles at full flexion (degrees).
_BASE = ((-0.26, 0.20), (-0.30, 0.95), (-0.08, 1.00), (0.14, 0.95), (0.34, 0.84))
_ANGLE = (-46.0, -8.0, -2.0, 5.0, 12.0)
_SPREAD = (-16.0, -9.0, -1.0, 6.0, 13.0)
_LENGTHS = ((0.42, 0.34, 0.28), (0.48, 0.30, 0.24), (0.53, 0.34, 0.26), (0.50, 0.32, 0.25), (0.40, 0.25, 0.22))
_RADIUS = (0.115, 0.095, 0.10, 0.095, 0.085)
_FLEX = ((25.0, 40.0, 60.0), *((85.0, 100.0, 65.0),) * 4)
_THUMB_DROP = math.radians(20.0)  # the thumb leaves the palm plane towards the palm side by this much
# Palm, knuckle ridge and thumb ball: centre, radii, in-plane tilt (degrees); X is scaled by the palm width.
_PALM = (((0.02, 0.48, -0.03), (0.47, 0.58, 0.15), 0.0), ((0.02, 0.86, -0.02), (0.46, 0.17, 0.14), 8.0),
         ((-0.28, 0.30, -0.07), (0.20, 0.30, 0.15), -35.0))
SCALE = 1.12  # every length above, in face units
PIVOT = 1.0  # the hand frame's (0, PIVOT, 0) sits at the subject's centre; rotations turn about it


@dataclass(frozen=True, eq=False)
class HandAppearance(Factors):
    """Per-identity appearance of a hand, batched; RGB colours are albedos in [0, 1]."""

    skin: Tensor  # (B, 3)
    sleeve: Tensor  # (B, 3)
    bg_top: Tensor  # (B, 3) background colour at the top row
    bg_bottom: Tensor  # (B, 3) ... and at the bottom row
    bg_noise: Tensor  # (B, 16) 4 x 4 grid of brightness offsets
    light_dir: Tensor  # (B, 3) unit vector towards the light, camera frame
    light: Tensor  # (B, 2) diffuse intensity, ambient level
    shape: Tensor  # (B, 3) HAND_SHAPE in [-1, 1]: the only fields that move keypoints


@dataclass(frozen=True, eq=False)
class HandStructure(Factors):
    """Per-image structure of a hand, batched."""

    flexion: Tensor  # (B, 5) per digit (DIGITS order) in [0, 1]: 0 straight, 1 fully bent
    spread: Tensor  # (B,) in [0, 1]: 0 fingers together, 1 spread wide
    wrist: Tensor  # (B,) degrees about the forearm, > 0 turns the thumb side towards the camera
    roll: Tensor  # (B,) degrees in the image plane, > 0 counter-clockwise

    @classmethod
    def create(cls, flexion: float | Sequence[float] | Tensor = 0.0, spread: float | Sequence[float] | Tensor = 0.5,
               wrist: float | Sequence[float] | Tensor = 0.0, roll: float | Sequence[float] | Tensor = 0.0
               ) -> "HandStructure":
        """Structures from plain values; ``flexion`` is one value, five (one per digit) or (B, 5); scalars
        broadcast to the longest argument."""
        flex = torch.as_tensor(flexion, dtype=torch.float32)
        flex = flex.reshape(-1, 5) if flex.numel() % 5 == 0 and flex.numel() > 1 else flex.reshape(-1, 1).expand(-1, 5)
        vals = [torch.as_tensor(a, dtype=torch.float32).reshape(-1) for a in (spread, wrist, roll)]
        n = max([len(v) for v in vals] + [flex.shape[0]])
        spread_, wrist_, roll_ = (v.expand(n).clone() for v in vals)
        return cls(flex.expand(n, 5).clone(), spread_, wrist_, roll_)


def sample_hand_appearance(n: int, generator: torch.Generator) -> HandAppearance:
    """``n`` random hand identities, deterministic given the generator's state."""
    g = generator
    skin = skin_tone(g, n)
    return HandAppearance(skin=skin, sleeve=muted(g, n) * (0.5 + 0.5 * uniform(g, n, 1)), **sample_scene(g, n),
                          shape=2 * uniform(g, n, len(HAND_SHAPE)) - 1)


def sample_hand_structure(n: int, generator: torch.Generator, *, max_wrist: float = 70.0,
                          max_roll: float = 30.0) -> HandStructure:
    """``n`` random hand poses: a shared curl mixed with each digit's own (open hands, fists, pointing and
    everything between), spread uniform, wrist and in-plane rotation uniform in the given ranges (degrees)."""
    g = generator
    shared, own = uniform(g, n, 1), uniform(g, n, 5)
    mix = uniform(g, n, 1)
    flexion = shared * (1 - mix) + own * mix
    spread = uniform(g, n)
    wrist, roll = ((2 * uniform(g, n) - 1) * m for m in (max_wrist, max_roll))
    return HandStructure(flexion, spread, wrist, roll)


def sample_hand_identities(identities: Sequence[int] | Tensor, images_per_identity: int, seed: int
                           ) -> tuple[HandAppearance, HandStructure]:
    """Appearance of each identity (n) and its images' structures (n * images_per_identity, identity-major)."""
    return identities_of(sample_hand_appearance, sample_hand_structure, identities, images_per_identity, seed)


# =========================================================================================================
# Skeleton: forward kinematics of the five digits
# =========================================================================================================

class Skeleton(NamedTuple):
    """A batch of hands in the hand frame: the joints and each segment's axes, digits in DIGITS order."""

    joints: Tensor  # (B, 21, 3) the hand21 keypoints: wrist, then base to tip of each digit
    dirs: Tensor  # (B, 5, 3, 3) (digit, segment, xyz) unit vector along each segment, base to tip
    dorsal: Tensor  # (B, 5, 3, 3) unit vector out of each segment's back (nail side)
    lengths: Tensor  # (B, 5, 3)
    radius: Tensor  # (B, 5) each digit's radius
    width: Tensor  # (B,) palm width factor


def _digit_axes(spread: Tensor) -> tuple[Tensor, Tensor]:
    """Base directions d0 and bending directions b of the five digits, (B, 5, 3) each, in the hand frame."""
    ang = torch.deg2rad(torch.tensor(_ANGLE) + torch.tensor(_SPREAD) * (2 * spread[:, None] - 1))  # (B, 5)
    flat = torch.stack([ang.sin(), ang.cos(), torch.zeros_like(ang)], -1)  # (B, 5, 3) in the palm plane
    palm_side = torch.tensor([0.0, 0.0, -1.0])
    d0 = flat.clone()
    d0[:, 0] = math.cos(_THUMB_DROP) * flat[:, 0] + math.sin(_THUMB_DROP) * palm_side
    towards_palm = torch.stack([ang[:, 0].cos(), -ang[:, 0].sin(), torch.zeros_like(ang[:, 0])], -1)  # (B, 3)
    b = palm_side.expand_as(d0).clone()
    thumb_b = 0.55 * towards_palm + 0.83 * palm_side  # the thumb bends across the palm
    thumb_b = thumb_b - (thumb_b * d0[:, 0]).sum(-1, keepdim=True) * d0[:, 0]
    b[:, 0] = thumb_b / thumb_b.norm(dim=-1, keepdim=True)
    return d0, b


def skeleton(shape: Tensor, structure: HandStructure) -> Skeleton:
    """Joints and segment frames of hands with proportions shape (B, 3) under ``structure`` (B), hand frame."""
    length_k, width_k, thick_k = (1 + k * shape[:, i, None] for i, k in enumerate((0.08, 0.08, 0.12)))
    d0, b = _digit_axes(structure.spread)
    phi = (torch.deg2rad(torch.tensor(_FLEX)) * structure.flexion[..., None]).cumsum(-1)  # (B, 5, 3)
    cos, sin = phi.cos()[..., None], phi.sin()[..., None]
    dirs = cos * d0[:, :, None] + sin * b[:, :, None]  # (B, 5, 3, 3)
    dorsal = sin * d0[:, :, None] - cos * b[:, :, None]
    lengths = torch.tensor(_LENGTHS) * SCALE * length_k[..., None]  # (B, 5, 3)
    base = torch.tensor(_BASE) * SCALE * torch.cat([width_k, torch.ones_like(width_k)], 1)[:, None]  # (B, 5, 2)
    base = torch.cat([base, torch.zeros_like(base[..., :1])], -1)  # (B, 5, 3)
    joints = torch.cat([base[:, :, None], base[:, :, None] + (lengths[..., None] * dirs).cumsum(2)], 2)  # (B, 5, 4, 3)
    wrist = torch.zeros(len(shape), 1, 3)
    radius = torch.tensor(_RADIUS) * SCALE * thick_k  # (B, 5)
    return Skeleton(torch.cat([wrist, joints.flatten(1, 2)], 1), dirs, dorsal, lengths, radius, width_k[:, 0])


def hand_pose(structure: HandStructure) -> tuple[Tensor, Tensor]:
    """Hand frame -> camera frame: p_cam = R @ p + t, R (B, 3, 3) (in-plane roll @ wrist turn), t (B, 3)."""
    rot = rot_z(torch.deg2rad(structure.roll)) @ rot_y(torch.deg2rad(structure.wrist))
    return rot, -rot[:, :, 1] * PIVOT


def keypoints(appearance: HandAppearance, structure: HandStructure, size: int = 64) -> Tensor:
    """The exact 21 keypoints of render(appearance, structure, size), (B, 21, 2) pixels, without rendering."""
    appearance, structure = broadcast(appearance, structure)
    rot, t = hand_pose(structure)
    joints = skeleton(appearance.shape, structure).joints
    return Camera.for_size(size).project(joints @ rot.transpose(1, 2) + t[:, None])


# =========================================================================================================
# Surfaces and rendering
# =========================================================================================================

_TIP = 0.6  # segments reach this many radii beyond their end joints (the fingertip keypoint lies inside)


def _segments(sk: Skeleton) -> Ellipsoid:
    """The 15 digit segments as ellipsoids, flattened to B * 15 (digit-major within each hand)."""
    joints = sk.joints[:, 1:].view(-1, 5, 4, 3)
    ex = torch.linalg.cross(sk.dirs, sk.dorsal, dim=-1)
    rot = torch.stack([ex, sk.dirs, sk.dorsal], -1)  # (B, 5, 3, 3, 3) columns: local axes
    r = sk.radius[..., None] * torch.tensor([1.0, 0.97, 0.9])  # (B, 5, 3) thinner towards the tip
    radii = torch.stack([r, sk.lengths / 2 + _TIP * r, 0.85 * r], -1)  # (B, 5, 3, 3)
    centre = (joints[:, :, :-1] + joints[:, :, 1:]) / 2
    return Ellipsoid(centre.reshape(-1, 3), radii.reshape(-1, 3), rot.reshape(-1, 3, 3))


def _knuckles(sk: Skeleton) -> Ellipsoid:
    """A round knuckle at each of the 14 inner joints (the thumb's base lies in the thumb ball), B * 14."""
    joints = sk.joints[:, 1:].view(-1, 5, 4, 3)[:, :, :3].reshape(-1, 15, 3)[:, 1:]  # (B, 14, 3)
    r = (sk.radius[..., None] * torch.tensor([1.05, 0.95, 0.9])).reshape(-1, 15)[:, 1:]  # (B, 14)
    radii = torch.stack([r, r, 0.9 * r], -1)
    return ellipsoid(joints.reshape(-1, 3), radii.reshape(-1, 3))


def _palm(sk: Skeleton) -> list[Ellipsoid]:
    """Palm, knuckle ridge and thumb ball (B each)."""
    w, one = sk.width * SCALE, torch.full_like(sk.width, SCALE)
    return [ellipsoid(vec(cx * w, cy * one, cz * one, like=w), vec(rx * w, ry * one, rz * one, like=w),
                      rot_z(torch.full_like(w, math.radians(tilt)))) for (cx, cy, cz), (rx, ry, rz), tilt in _PALM]


def _repeat(frame: Frame, rays: Rays, light: Tensor, n: int) -> tuple[Frame, Rays, Tensor]:
    """Each hand's frame, rays (when they differ per hand) and light repeated n times in place, for parts
    flattened to B * n."""
    rep = lambda v: v.repeat_interleave(n, 0) if v.shape[0] > 1 else v  # noqa: E731
    return Frame(rep(frame.origin), rep(frame.rot_t)), Rays(rep(rays.u), rep(rays.v), rays.px), rep(light)


def _nails(seg: Ellipsoid, p: tuple[Tensor, ...]) -> Tensor:
    """How much of each segment hit p (3 x (B * 15, h, w), hand frame) is nail: on the back of the last segments."""
    local = [sum(seg.rot[:, j, k, None, None] * (p[j] - seg.centre[:, j, None, None]) for j in range(3))
             / seg.radii[:, k, None, None] for k in range(3)]  # unit-sphere coordinates across, along, out
    x, y, z = local
    nail = (((0.55 - x.abs()) / 0.12).clamp(0, 1) * ((y - 0.05) / 0.12).clamp(0, 1) * ((0.9 - y) / 0.1).clamp(0, 1)
            * ((z - 0.3) / 0.15).clamp(0, 1))
    last = (torch.arange(len(nail)) % 3 == 2).float()[:, None, None]  # the third segment of each digit
    return nail * last


def _hand_layer(app: HandAppearance, sk: Skeleton, frame: Frame, rays: Rays) -> Layer:
    """The hand's skin, palm to fingertips, with nails: value = lit colour (B, 3, h, w)."""
    B = len(app)
    seg, knuckles = _segments(sk), _knuckles(sk)
    hit = cast(seg, *_repeat(frame, rays, app.light_dir, 15), points=True)
    nail = _nails(seg, hit.p)
    parts = [Layer(c, t, torch.stack([s, n], 1)) for c, t, s, n in
             zip(*(v.view(B, 15, *v.shape[1:]).unbind(1) for v in (hit.cover, hit.t, hit.shade, nail)))]
    hit = cast(knuckles, *_repeat(frame, rays, app.light_dir, 14))
    parts += [Layer(c, t, torch.stack([s, torch.zeros_like(s)], 1)) for c, t, s in
              zip(*(v.view(B, 14, *v.shape[1:]).unbind(1) for v in (hit.cover, hit.t, hit.shade)))]
    for e in _palm(sk):
        hit = cast(e, frame, rays, app.light_dir)
        parts.append(Layer(hit.cover, hit.t, torch.stack([hit.shade, torch.zeros_like(hit.shade)], 1)))
    layer = parts[0]
    for part in parts[1:]:
        layer = zmerge(layer, part, 0.05)[0]
    shade, nail = layer.value[:, :1], layer.value[:, 1:]
    nail_colour = 0.55 * col(app.skin) + 0.45 * torch.tensor([1.0, 0.86, 0.84]).view(1, 3, 1, 1)
    albedo = col(app.skin) + (nail_colour - col(app.skin)) * nail
    return layer._replace(value=albedo * lighting(app.light, shade[:, 0]))


_CUFF = -0.25 * SCALE  # the sleeve ends this far below the wrist


def _arm_layer(app: HandAppearance, sk: Skeleton, frame: Frame, rays: Rays) -> Layer:
    """Forearm (a long ellipsoid hidden above the wrist) and the sleeve over it: value = lit colour."""
    w, one = sk.width * SCALE, torch.full_like(sk.width, SCALE)
    arm = cast(ellipsoid(vec(0, -1.0, -0.03, like=one), vec(0.30 * w, 30.0, 0.24 * one, like=one)), frame, rays,
               app.light_dir, points=True)
    sleeve = cast(ellipsoid(vec(0, -1.0, -0.03, like=one), vec(0.38 * w, 30.0, 0.31 * one, like=one)), frame,
                  rays, app.light_dir, points=True)
    arm_alpha = arm.cover * ((0.15 * SCALE - arm.p[1]) / 0.08).clamp(0, 1)
    sleeve_alpha = sleeve.cover * ((_CUFF - sleeve.p[1]) / 0.03).clamp(0, 1)
    cuff = 0.75 + 0.25 * ((_CUFF - 0.1 - sleeve.p[1]) / 0.03).clamp(0, 1)  # a darker hem
    skin = col(app.skin) * lighting(app.light, arm.shade)
    cloth = col(app.sleeve) * lighting(app.light, sleeve.shade) * cuff[:, None]
    return zmerge(Layer(arm_alpha, arm.t, skin), Layer(sleeve_alpha, sleeve.t, cloth), 0.02)[0]


def layer(appearance: HandAppearance, structure: HandStructure, rays: Rays) -> Layer:
    """Hand and arm as one soft-edged layer over ``rays`` (batches of equal length): alpha and t (B, h, w), value =
    lit colour (B, 3, h, w)."""
    sk = skeleton(appearance.shape, structure)
    rot, t = hand_pose(structure)
    rot_t = rot.transpose(1, 2)
    eye = torch.tensor([0.0, 0.0, CAMERA_DISTANCE])
    frame = Frame((rot_t @ (eye - t)[:, :, None])[..., 0], rot_t)  # the camera seen from the hand
    return zmerge(_hand_layer(appearance, sk, frame, rays), _arm_layer(appearance, sk, frame, rays), 0.06)[0]


def render(appearance: HandAppearance, structure: HandStructure, size: int = 64, *, supersample: int = 1,
           threads: int | None = 1) -> tuple[Tensor, Tensor]:
    """Draw hands: x (B, 3, size, size) float32 in [-1, 1] and their exact keypoints (B, 21, 2) in pixels.

    A batch of one appearance or structure broadcasts against the other; ``supersample`` and ``threads`` as
    for the faces' ``render``.
    """
    return render_layered(layer, keypoints, appearance, structure, size, supersample=supersample, threads=threads)
