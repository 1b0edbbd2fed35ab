"""The one camera every synthetic subject is seen through, and the rigid-body pieces its scenes are built of:
rotations, batched ellipsoids and the pinhole projection.

World (camera) frame: x to the image right, y up, z towards the camera; one unit is half a face's width. The
camera sits at (0, 0, CAMERA_DISTANCE) looking down -z; pixel (row i, col j) has its centre at (x=j, y=i).
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, NamedTuple

import torch
from torch import Tensor

CAMERA_DISTANCE = 9.0  # units from the camera to the subject's centre
ZOOM = 0.31  # image widths per unit at the depth of the subject's centre
CENTRE_ROW = 0.03  # the subject's centre sits this many image heights below the image centre


class Ellipsoid(NamedTuple):
    """A batch of ellipsoids: centre (B, 3), radii (B, 3), rot (B, 3, 3) local axes -> parent frame."""

    centre: Tensor
    radii: Tensor
    rot: Tensor


def rot_x(a: Tensor) -> Tensor:
    """(B,) radians -> (B, 3, 3) rotation about x."""
    c, s, o, z = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([o, z, z, z, c, -s, z, s, c], 1).view(-1, 3, 3)


def rot_y(a: Tensor) -> Tensor:
    """(B,) radians -> (B, 3, 3) rotation about y."""
    c, s, o, z = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, z, s, z, o, z, -s, z, c], 1).view(-1, 3, 3)


def rot_z(a: Tensor) -> Tensor:
    """(B,) radians -> (B, 3, 3) rotation about z."""
    c, s, o, z = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, -s, z, s, c, z, z, z, o], 1).view(-1, 3, 3)


def pose_rotation(yaw: Tensor, pitch: Tensor, roll: Tensor) -> Tensor:
    """(B,) degrees each -> (B, 3, 3) object frame -> camera frame: roll @ pitch @ yaw.

    yaw > 0 turns the object's front to the image right, pitch > 0 tips it up, roll > 0 turns it
    counter-clockwise in the image.
    """
    yaw, pitch, roll = (torch.deg2rad(a) for a in (yaw, pitch, roll))
    return rot_z(roll) @ rot_x(-pitch) @ rot_y(yaw)


def vec(*cols: Tensor | float, like: Tensor) -> Tensor:
    """Stack scalars / (B,) tensors into (B, k)."""
    return torch.stack([torch.as_tensor(c, dtype=like.dtype).expand_as(like) for c in cols], 1)


def ellipsoid(centre: Tensor, radii: Tensor, rot: Tensor | None = None) -> Ellipsoid:
    """Ellipsoids from centres (B, 3), radii (B, 3) and optional rotations (B, 3, 3), axis-aligned by default."""
    eye = torch.eye(3).expand(centre.shape[0], 3, 3)
    return Ellipsoid(centre, radii, eye if rot is None else rot)


def front_z(e: Ellipsoid, xy: Tensor) -> Tensor:
    """Z of the ellipsoid's front surface above points xy (B, N, 2) of its frame, -inf where it has none: (B, N)."""
    a = e.rot.transpose(1, 2) / e.radii[:, :, None]  # (B, 3, 3) frame -> unit sphere
    p = torch.cat([xy, torch.zeros_like(xy[..., :1])], -1) - e.centre[:, None]  # (B, N, 3)
    w, g = p @ a.transpose(1, 2), a[:, :, 2][:, None]  # (B, N, 3), (B, 1, 3)
    gg, wg = (g * g).sum(-1), (w * g).sum(-1)
    disc = wg * wg - gg * ((w * w).sum(-1) - 1)
    z = (-wg + disc.clamp_min(0).sqrt()) / gg
    return torch.where(disc >= 0, z, torch.full_like(z, -math.inf))


def ray_roots(e: Ellipsoid, origin: Tensor, direction: Tensor) -> tuple[Tensor, Tensor]:
    """Where rays origin + t direction (B, N, 3 each, e's frame) enter and leave ellipsoids e: t_in, t_out (B, N);
    +inf and -inf where a ray misses."""
    to_unit = e.rot.transpose(1, 2) / e.radii[:, :, None]  # (B, 3, 3) frame -> unit sphere
    q, g = (origin - e.centre[:, None]) @ to_unit.transpose(1, 2), direction @ to_unit.transpose(1, 2)  # (B, N, 3)
    a, b, c = (g * g).sum(-1), (q * g).sum(-1), (q * q).sum(-1) - 1
    disc = b * b - a * c
    root = disc.clamp_min(0).sqrt()
    hit = disc >= 0
    return (torch.where(hit, (-b - root) / a, torch.full_like(a, math.inf)),
            torch.where(hit, (-b + root) / a, torch.full_like(a, -math.inf)))


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
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the body with n intra-op threads (None: unchanged), restoring the setting afterwards."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
