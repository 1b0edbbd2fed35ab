"""3-D geometry of the face: the head's ellipsoids, the 68 landmarks on its surface and the head pose; seen
through ``afvae.data.synthetic.camera``.

Head frame: X to the image right (the subject's left), Y up, Z towards the camera; one unit is half the head
width.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from afvae.boundaries import FACE68_MIRROR
from afvae.data.synthetic.camera import (CAMERA_DISTANCE, Camera, Ellipsoid, ellipsoid, front_z, pose_rotation,
                                         ray_roots, rot_x, rot_y, torch_threads, vec)
from afvae.data.synthetic.factors import EXPRESSIONS, Appearance, Structure
from afvae.data.synthetic.sampling import broadcast

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


def head_rotation(structure: Structure) -> Tensor:
    """(B, 3, 3) head frame -> camera frame: roll @ pitch @ yaw."""
    return pose_rotation(structure.yaw, structure.pitch, structure.roll)


NOSE_TILT = math.radians(35.0)  # the nose's long axis leans forward at the bottom by this much


def head_geometry(shape: Tensor, expression: Tensor) -> dict[str, Ellipsoid]:
    """The head's skin surfaces in the head frame from shape (B, 10) and expression (B, 6) weights."""
    s = shape.unbind(1)
    one = torch.ones_like(s[0])
    fw, fl, jw = 1 + 0.07 * s[0], s[1], 1 + 0.08 * s[2]
    drop = expression @ torch.tensor(_JAW_DROP)
    nose_b, nose_w = 0.24 * (1 + 0.12 * s[5]), 1 + 0.15 * s[6]
    tilt = torch.full_like(one, NOSE_TILT)
    geom = {
        "cranium": ellipsoid(vec(0, 0.1, -0.05, like=one), vec(fw, 1.16, 1.12, like=one)),
        "jaw": ellipsoid(vec(0, -0.35 - 0.03 * fl - drop, -0.1, like=one),
                          vec(0.86 * fw * jw, 0.82 * (1 + 0.06 * fl), 1.02, like=one)),
        "nose": ellipsoid(vec(0, -0.16 - 0.03 * s[5], 1.02, like=one),
                           vec(0.095 * nose_w, nose_b, 0.10, like=one), rot_x(-tilt)),
    }
    tip = _nose_tip(geom["nose"])
    lift = 0.025 * expression[:, EXPRESSIONS.index("disgust")]
    geom["alae"] = ellipsoid(vec(0, tip[:, 1] - 0.06 + lift, 0.97, like=one),
                              vec(0.15 * nose_w, 0.075, 0.08, like=one))
    for side, name in ((-1.0, "ear_left"), (1.0, "ear_right")):
        geom[name] = ellipsoid(vec(side * 0.95 * fw, -0.06, -0.12, like=one), vec(0.07, 0.19, 0.14, like=one),
                                rot_y(torch.full_like(one, side * math.radians(25.0))))
    return geom


def _nose_tip(nose: Ellipsoid) -> Tensor:
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


def _jaw_contour(geom: dict[str, Ellipsoid], y0: float = -0.1) -> Tensor:
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


def face_xy(shape: Tensor, expression: Tensor, geom: dict[str, Ellipsoid] | None = None) -> Tensor:
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


def on_surface(xy: Tensor, geom: dict[str, Ellipsoid]) -> Tensor:
    """Head points (B, N, 2) lifted onto the front-most face surface: (B, N, 3)."""
    z = torch.stack([front_z(geom[k], xy) for k in FACE_SURFACES]).amax(0)
    return torch.cat([xy, z[..., None]], -1)


def face_points(shape: Tensor, expression: Tensor) -> Tensor:
    """The 68 landmarks as 3-D points on the face surface, head frame, (B, 68, 3)."""
    geom = head_geometry(shape, expression)
    return on_surface(face_xy(shape, expression, geom), geom)


# =========================================================================================================
# Self-occlusion: which landmarks the head hides, and the "profile" landmark convention
# =========================================================================================================

OCCLUSIONS = ("none", "profile")  # landmark conventions of ``landmarks`` and ``render``
OCCLUDERS = ("cranium", "jaw", "nose", "alae", "ear_left", "ear_right")  # the skin surfaces that hide landmarks
_SKULL = ("cranium", "jaw")  # the surface whose silhouette the hidden contour points slide to
_DEPTH_TOL = 0.005  # head units: a surface less than this in front of a point does not hide it
_MARCH_STEPS = 181  # candidate points per contour landmark on its way to the silhouette (about 1 degree apart)
CONTOUR = slice(0, 17)  # the jaw contour, iBUG 0-16


def camera_in_head(rot: Tensor) -> Tensor:
    """The camera centre in the head frame, (B, 3), from the head -> camera rotation (B, 3, 3)."""
    return rot.transpose(1, 2) @ torch.tensor([0.0, 0.0, CAMERA_DISTANCE])


def hidden(geom: dict[str, Ellipsoid], points: Tensor, eye: Tensor, surfaces: tuple[str, ...] = OCCLUDERS) -> Tensor:
    """(B, N) bool: a surface of ``surfaces`` lies between each head point (B, N, 3) and the camera at ``eye`` (B, 3).

    A depth test along the ray from the camera: a point is hidden when the ray enters a surface more than
    _DEPTH_TOL before it (a point on the back of a surface is hidden by that surface's front).
    """
    d = points - eye[:, None]  # (B, N, 3): t = 1 at the point
    tol = _DEPTH_TOL / d.norm(dim=-1)
    out = torch.zeros(points.shape[:2], dtype=torch.bool)
    for name in surfaces:
        t_in, _ = ray_roots(geom[name], eye[:, None].expand_as(d), d)
        out |= t_in < 1 - tol
    return out


def _slice_points(geom: dict[str, Ellipsoid], contour: Tensor, steps: int) -> Tensor:
    """Candidates for the contour points (B, P, 3): points of the skull's surface on each point's horizontal slice,
    from its own azimuth about the jaw's vertical axis through the front to the mirror azimuth: (B, P, steps, 3)."""
    z0 = geom["jaw"].centre[:, 2, None]  # (B, 1)
    phi0 = torch.atan2(contour[..., 0], contour[..., 2] - z0)  # (B, P), 0 = straight ahead
    phi = phi0[..., None] * torch.linspace(1, -1, steps)  # (B, P, steps)
    d = torch.stack([phi.sin(), torch.zeros_like(phi), phi.cos()], -1).flatten(1, 2)  # (B, P*steps, 3)
    o = torch.stack([torch.zeros_like(contour[..., 1]), contour[..., 1], z0.expand_as(phi0)], -1)  # (B, P, 3)
    o = o.repeat_interleave(steps, 1)  # (B, P*steps, 3)
    r = torch.stack([ray_roots(geom[k], o, d)[1] for k in _SKULL]).amax(0)  # the outer surface's distance
    return (o + r[..., None] * d).view(*phi.shape, 3)


def profile_contour(geom: dict[str, Ellipsoid], points: Tensor, eye: Tensor) -> Tensor:
    """The landmarks (B, 68, 3, head frame) with each hidden contour point slid to the silhouette (landmark marching).

    A hidden point of 0-16 walks along its horizontal slice of the skull (cranium and jaw) towards the front and
    stops at the first point the skull does not hide, i.e. on the visible outline; visible points stay.
    """
    contour = points[:, CONTOUR]  # (B, 17, 3)
    cand = _slice_points(geom, contour, _MARCH_STEPS)  # (B, 17, M, 3)
    seen = ~hidden(geom, cand.flatten(1, 2), eye, _SKULL).view(cand.shape[:3])  # (B, 17, M)
    first = seen.float().argmax(-1)  # (B, 17): the first visible candidate
    moved = cand.gather(2, first[..., None, None].expand(-1, -1, 1, 3))[:, :, 0]  # (B, 17, 3)
    slide = hidden(geom, contour, eye, _SKULL) & seen.any(-1)
    out = points.clone()
    out[:, CONTOUR] = torch.where(slide[..., None], moved, contour)
    return out


def landmark_visibility(appearance: Appearance, structure: Structure) -> Tensor:
    """(B, 68) bool: which of the 3-D landmarks (``face_points``) the head itself hides from the camera (False).

    From the geometry: a depth test of every landmark against the skin surfaces (``hidden``); hair and glasses
    do not count. At |yaw| near 90 the far eye, brow, nostril and lip corner are hidden.
    """
    appearance, structure = broadcast(appearance, structure)
    with torch_threads(1):
        geom = head_geometry(appearance.shape, structure.expression)
        points = on_surface(face_xy(appearance.shape, structure.expression, geom), geom)
        return ~hidden(geom, points, camera_in_head(head_rotation(structure)))


def image_points(geom: dict[str, Ellipsoid], points: Tensor, rot: Tensor, occlusion: str = "none") -> Tensor:
    """Head-frame landmarks (B, 68, 3) as a convention annotates them, in the camera frame (B, 68, 3).

    ``occlusion`` "none": the 3-D points as they are (hidden ones included, where they are); "profile": the
    300W-LP / 3DDFA convention, hidden contour points slid to the visible silhouette (``profile_contour``), all
    other points at their 3-D positions (``landmark_visibility`` says which are hidden).
    """
    if occlusion not in OCCLUSIONS:
        raise ValueError(f"occlusion must be one of {OCCLUSIONS}, got {occlusion!r}")
    if occlusion == "profile":
        points = profile_contour(geom, points, camera_in_head(rot))
    return points @ rot.transpose(1, 2)


def landmarks(appearance: Appearance, structure: Structure, size: int = 64, *, occlusion: str = "none",
              threads: int | None = 1) -> Tensor:
    """The exact 68 landmarks of render(appearance, structure, size), (B, 68, 2) float32 pixels, without rendering.

    ``occlusion``: the landmark convention (``image_points``).
    """
    appearance, structure = broadcast(appearance, structure)
    with torch_threads(threads):
        geom = head_geometry(appearance.shape, structure.expression)
        points = on_surface(face_xy(appearance.shape, structure.expression, geom), geom)
        return Camera.for_size(size).project(image_points(geom, points, head_rotation(structure), occlusion))
