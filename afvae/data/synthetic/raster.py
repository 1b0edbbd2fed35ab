"""Rasterising the face: its scene (head surfaces, hair, body), the face features painted from the landmark
curves, and ``render``; rays, hits and compositing are ``afvae.data.synthetic.shading``'s.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as nnf
from torch import Tensor

from afvae.data.synthetic.camera import CAMERA_DISTANCE, ZOOM, Camera, Ellipsoid, ellipsoid, torch_threads, vec
from afvae.data.synthetic.factors import EXPRESSIONS, Appearance, Structure
from afvae.data.synthetic.geometry import (FACE_SURFACES, OCCLUSIONS, face_xy, head_geometry, head_rotation,
                                           image_points, on_surface)
from afvae.data.synthetic.sampling import broadcast
from afvae.data.synthetic.shading import (Canvas, Frame, Hit, Layer, Rays, background, cast, col, grid_rays,
                                          lighting, over, points_at, ramp, window_rays, zmerge)

SIZES = (32, 64, 128, 256)
FEATURE_RES = 128  # face features are drawn on a grid of at least this many pixels per image side,
FEATURE_SUPERSAMPLE = 2  # ... supersampling the raster at most this much


class _Scene(NamedTuple):
    """Everything per image that does not depend on the pixel."""

    app: Appearance
    st: Structure
    geom: dict[str, Ellipsoid]
    head: Frame
    world: Frame
    xy: Tensor  # (B, 68, 2) landmarks in the head (X, Y) plane
    points: Tensor  # (B, 68, 3) landmarks in the camera frame
    hair: dict[str, Tensor]  # per-image hair-shell parameters


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
    shell = ellipsoid(vec(0, top - ry, -0.08, like=one), torch.stack([fw * scale, ry, 1.12 * scale], 1))
    return {"exists": exists, "shell": shell, "front": front, "cos_window": torch.deg2rad(window).cos(),
            "side": side, "back": back}  # type: ignore[dict-item]


def _scene(app: Appearance, st: Structure) -> _Scene:
    """Geometry, frames, landmarks and hair of each image."""
    rot = head_rotation(st)
    rot_t = rot.transpose(1, 2)
    cam = torch.tensor([0.0, 0.0, CAMERA_DISTANCE]).expand(len(app), 3)
    geom = head_geometry(app.shape, st.expression)
    xy = face_xy(app.shape, st.expression, geom)
    points = on_surface(xy, geom) @ rot_t  # (B, 68, 3) camera frame
    return _Scene(app, st, geom, Frame((rot_t @ cam[:, :, None])[..., 0], rot_t),
                  Frame(cam, torch.eye(3).expand(len(app), 3, 3)), xy, points, _hair_params(app))


_BLEND = {"jaw": 0.25, "nose": 0.06, "alae": 0.05, "ear_left": 0.03, "ear_right": 0.03}  # depth blend widths


def _skin_hits(scene: _Scene, rays: Rays, names: Sequence[str]) -> tuple[Layer, Tensor]:
    """The union of skin surfaces: layer (value = shade (B, 1, h, w)) and head-frame hit points (B, 3, h, w)."""
    layer = None
    for name in names:
        hit = cast(scene.geom[name], scene.head, rays, scene.app.light_dir)
        new = Layer(hit.cover, hit.t, hit.shade[:, None])
        layer = new if layer is None else zmerge(layer, new, _BLEND[name])[0]
    assert layer is not None
    return layer, points_at(scene.head, layer.t, rays)


def _skin_colour(scene: _Scene, p: Tensor, shade: Tensor, pw: float) -> Tensor:
    """Lit skin with cheek blush, beard and glasses arms at head points p (B, 3, h, w) -> (B, 3, h, w)."""
    app, (x, y, z) = scene.app, p.unbind(1)
    ax = x.abs()
    blush = torch.exp(-(((ax - 0.42) * (1 / 0.16)) ** 2 + ((y + 0.3) * (1 / 0.12)) ** 2))
    albedo = col(app.skin) + blush[:, None] * torch.tensor([0.04, -0.012, -0.008]).view(1, 3, 1, 1)
    beard = ((-0.58 + 0.3 * x * x - y) * (1 / 0.1)).clamp(0, 1) * ((0.85 - ax) * (1 / 0.12)).clamp(0, 1)
    beard = beard * (z > 0) * app.beard[:, 0, None, None]
    dark = (0.7 + 0.3 * ((y + 1.1) * 2).clamp(0, 1))[:, None]  # darker towards the chin
    albedo = over(albedo, col(app.hair * 0.85) * dark, 0.85 * beard)
    eye_y = (scene.xy[:, 36, 1] + scene.xy[:, 39, 1])[:, None, None] / 2 + 0.02
    arm = ((0.013 - (y - eye_y).abs()) / pw + 0.5).clamp(0, 1) * ((ax - 0.57) * (1 / 0.02)).clamp(0, 1)
    arm = arm * (z > -0.4) * app.glasses[:, 0, None, None]
    albedo = over(albedo, col(app.glasses_colour).expand_as(albedo), arm)
    return albedo * lighting(app.light, shade)


_STRANDS = 26.0  # hair stripes around the head


def _hair_layer(scene: _Scene, hit: Hit, back: bool, pw: float) -> Layer:
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
    level = lighting(app.light, hit.shade) * (0.45 if back else 1.0)
    sheen = 0.12 * (hit.shade.clamp_min(0) ** 8)[:, None] * (0 if back else 1)
    return Layer(alpha, hit.t, col(app.hair) * (strands * edge)[:, None] * level + sheen)


def _body_layer(scene: _Scene, rays: Rays) -> Layer:
    """Neck (a tall ellipsoid, cut below the head) and shoulders, in the world frame."""
    app, one = scene.app, torch.ones(len(scene.app))
    fw = 1 + 0.07 * app.shape[:, 0]
    neck = cast(ellipsoid(vec(0, -1.4, -0.22, like=one), vec(0.36 * fw, 30.0, 0.34, like=one)), scene.world,
                rays, app.light_dir, points=True)
    torso = cast(ellipsoid(vec(0, -2.62, -0.45, like=one), vec(1.95 * fw, 1.18, 0.85, like=one)), scene.world,
                 rays, app.light_dir)
    ny = neck.p[1]
    neck_alpha = neck.cover * ((-0.35 - ny) * (1 / 0.1)).clamp(0, 1)
    under_chin = 0.55 + 0.45 * ((-0.95 - ny) * (1 / 0.5)).clamp(0, 1)
    neck_col = col(app.skin) * lighting(app.light, neck.shade) * under_chin[:, None]
    shirt = col(app.shirt) * lighting(app.light, torso.shade)
    return zmerge(Layer(neck_alpha, neck.t, neck_col), Layer(torso.cover, torso.t, shirt), 0.05)[0]


def _main_pass(scene: _Scene, rays: Rays, grid: int) -> tuple[Tensor, Tensor]:
    """Background, hair, body, head: image (B, 3, grid, grid) in [0, 1] and how visible the skin is (B, grid, grid)."""
    app, hp = scene.app, scene.hair
    img = background(app.bg_top, app.bg_bottom, app.bg_noise, grid)
    pw = rays.px * CAMERA_DISTANCE
    hair_back = _hair_layer(scene, cast(hp["shell"], scene.head, rays, app.light_dir, True, True), True, pw)
    img = over(img, hair_back.value, hair_back.alpha)
    body = _body_layer(scene, rays)
    img = over(img, body.value, body.alpha)
    skin, p = _skin_hits(scene, rays, ("cranium", "jaw", "ear_left", "ear_right", "nose", "alae"))
    skin = skin._replace(value=_skin_colour(scene, p, skin.value[:, 0], pw))
    hair = _hair_layer(scene, cast(hp["shell"], scene.head, rays, app.light_dir, points=True), False, pw)
    head, skin_vis = zmerge(skin, hair, 0.04)
    return over(img, head.value, head.alpha).clamp(0, 1), skin_vis


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


def _paint_eye(cv: Canvas, tex: _Tex, side: str) -> None:
    """Socket, lid crease, sclera, iris, pupil, glint, lashes, brow and glasses rim of one eye."""
    (c0, c1), upper, lower, brow, out = _EYES[side]
    x, y, pw, app, skin = tex.x, tex.y, tex.pw, tex.app, col(tex.app.skin) * tex.lit
    up, lo = _curve(tex.xy, upper), _curve(tex.xy, lower)
    xl = up.local(x)
    yu, yl = up(xl), lo(xl)
    ex, ey, hw = up.xc, (_scalar(tex.xy[:, c0, 1]) + _scalar(tex.xy[:, c1, 1])) / 2, up.hw
    cv.over(skin * 0.55, 0.35 * torch.exp(-(((x - ex) * (1 / 0.21)) ** 2 + ((y - ey - 0.03) * (1 / 0.14)) ** 2)))
    inside_x = hw * (1 - xl.abs())
    cv.over(skin * 0.6, 0.3 * ramp(0.006 - (y - yu - 0.042).abs(), pw) * ramp(inside_x, pw))
    eye = (torch.minimum(torch.minimum(yu - y, y - yl), inside_x) * (1 / pw)).clamp(0, 1)
    cv.over(_SCLERA * (0.4 + 0.6 * tex.lit), eye)
    ri = 0.42 * hw
    d = ((x - ex) ** 2 + (y - ey - 0.004) ** 2).sqrt()
    cv.over(col(app.iris) * (1.2 - 0.6 * (d / ri) ** 2)[:, None] * tex.lit, eye * ramp(ri - d, pw))
    cv.over(_INK, eye * ramp(0.42 * ri - d, pw))
    glint = ((x - ex + 0.3 * ri) ** 2 + (y - ey - 0.35 * ri) ** 2).sqrt()
    cv.over(_WHITE, 0.85 * eye * ramp(0.2 * ri - glint, pw))
    cv.over(_INK, 0.35 * eye * (1 - (yu - y) * (1 / 0.03)).clamp(0, 1))  # the lid's shadow on the eyeball
    lash = 0.011 * (1 + 0.7 * (xl * out).clamp(0, 1))
    cv.over(_INK, 0.95 * ramp(lash - (y - yu - 0.003).abs(), pw) * ramp(hw * (1.08 - xl.abs()), pw))
    cv.over(skin * 0.6, 0.45 * ramp(0.005 - (y - yl).abs(), pw) * ramp(inside_x, pw))
    _paint_brow(cv, tex, brow, out)
    _paint_rim(cv, tex, ex, ey)


def _paint_brow(cv: Canvas, tex: _Tex, idx: Sequence[int], out: float) -> None:
    """A thick stroke along the brow landmarks, thinning towards the outer end."""
    curve = _curve(tex.xy, idx)
    xl = curve.local(tex.x)
    half = 0.032 * (1 - 0.45 * ((xl * out + 1) / 2).clamp(0, 1))
    alpha = ramp(half - (tex.y - curve(xl)).abs(), tex.pw) * ramp(curve.hw * (1 - xl.abs()) + 0.01, tex.pw)
    colour = col(tex.app.hair * 0.75 + 0.02) * (0.55 + 0.45 * tex.lit)
    cv.over(colour, 0.92 * alpha)


def _paint_rim(cv: Canvas, tex: _Tex, ex: Tensor, ey: Tensor) -> None:
    """Glasses: a rounded-rectangle rim around the eye and a faint lens reflection."""
    on = _scalar(tex.app.glasses[:, 0])
    gx, gy = (tex.x - ex) * (1 / 0.2), (tex.y - ey - 0.02) * (1 / 0.145)
    r = (gx**4 + gy**4 + 1e-12) ** 0.25
    cv.over(_WHITE, on * 0.12 * ramp((1 - r) * 0.17, tex.pw))
    cv.over(col(tex.app.glasses_colour), on * ramp(0.016 - (r - 1).abs() * 0.17, tex.pw))


def _paint_nose(cv: Canvas, tex: _Tex) -> None:
    """Shadow under the nose, nostrils, tip highlight, frown lines, disgust wrinkles, glasses bridge."""
    x, y, pw, xy, skin = tex.x, tex.y, tex.pw, tex.xy, col(tex.app.skin) * tex.lit
    xm = (_scalar(xy[:, 39, 0]) + _scalar(xy[:, 42, 0])) / 2
    bx, by = _scalar(xy[:, 33, 0]), _scalar(xy[:, 33, 1])
    cv.over(skin * 0.5, 0.35 * torch.exp(-(((x - bx) * (1 / 0.13)) ** 2 + ((y - by + 0.035) * (1 / 0.035)) ** 2)))
    for k in (32, 34):
        nx, ny = _scalar(xy[:, k, 0]) * 0.85 + 0.15 * bx, _scalar(xy[:, k, 1]) + 0.012
        r = (((x - nx) * (1 / 0.032)) ** 2 + ((y - ny) * (1 / 0.016)) ** 2).sqrt()
        cv.over(_INK + 0.15 * col(tex.app.skin), 0.75 * ramp((1 - r) * 0.016, pw))
    tip = (x - _scalar(xy[:, 30, 0])) ** 2 + (y - _scalar(xy[:, 30, 1]) - 0.03) ** 2
    cv.over(_WHITE, 0.12 * torch.exp(-tip * (1 / 0.03**2)) * (tex.lit[:, 0] - 0.6).clamp(0, 1))
    anger, disgust = (_scalar(tex.expr[:, EXPRESSIONS.index(e)]) for e in ("anger", "disgust"))
    by21 = (_scalar(xy[:, 21, 1]) + _scalar(xy[:, 22, 1])) / 2
    span = ramp(0.05 - (y - by21 - 0.02).abs(), pw)
    cv.over(skin * 0.45, 0.75 * anger * ramp(0.007 - ((x - xm).abs() - 0.045).abs(), pw) * span)
    y28, y29 = _scalar(xy[:, 28, 1]), _scalar(xy[:, 29, 1])
    waves = ((torch.sin((y - y28) * (2 * math.pi / 0.04)) - 0.5) * 2).clamp(0, 1)
    band = ramp(0.5 * (y28 - y29) + 0.02 - (y - (y28 + y29) / 2).abs(), pw)
    cv.over(skin * 0.45, 0.7 * disgust * waves * band * (1 - (x - xm).abs() * (1 / 0.1)).clamp(0, 1))
    ey = (_scalar(xy[:, 36, 1]) + _scalar(xy[:, 39, 1])) / 2 + 0.02
    bridge = ramp(0.013 - (y - ey - 0.035 + 0.8 * (x - xm) ** 2).abs(), pw)
    on = _scalar(tex.app.glasses[:, 0])
    cv.over(col(tex.app.glasses_colour), on * bridge * ramp(0.19 - (x - xm).abs(), pw))


def _paint_mouth(cv: Canvas, tex: _Tex) -> None:
    """Lips between the outer and inner lip curves, a dark mouth with teeth where it is open, the lip line."""
    x, y, pw, lit = tex.x, tex.y, tex.pw, tex.lit
    ou, ol = _curve(tex.xy, range(48, 55)), _curve(tex.xy, (48, 59, 58, 57, 56, 55, 54))
    iu, il = _curve(tex.xy, range(60, 65)), _curve(tex.xy, (60, 67, 66, 65, 64))
    xo, xi = ou.local(x), iu.local(x)
    yiu, yil = iu(xi), il(xi)
    corner_y = _scalar(tex.xy[:, 48, 1])
    for cx in (ou.xc - ou.hw, ou.xc + ou.hw):  # shadowed mouth corners
        corner = torch.exp(-((x - cx) ** 2 + (y - corner_y) ** 2) * (1 / 0.03**2))
        cv.over(col(tex.app.skin) * lit * 0.5, 0.3 * corner)
    outer = (torch.minimum(torch.minimum(ou(xo) - y, y - ol(xo)), ou.hw * (1 - xo.abs())) * (1 / pw)).clamp(0, 1)
    upper = ramp(y - yiu, pw)[:, None]
    gloss = 0.08 * torch.exp(-(((x - iu.xc) * (1 / 0.08)) ** 2 + ((y - (yil + ol(xo)) / 2) * (1 / 0.02)) ** 2))
    cv.over(col(tex.app.lips) * (1.05 - 0.22 * upper) * lit + gloss[:, None], outer)
    inside_x = iu.hw * (1 - xi.abs())
    inner = (torch.minimum(torch.minimum(yiu - y, y - yil), inside_x) * (1 / pw)).clamp(0, 1)
    cv.over(torch.tensor([0.16, 0.05, 0.06]).view(1, 3, 1, 1) * lit, inner)
    teeth = inner * ramp(y - (yiu - 0.045), pw) * ramp(inside_x - 0.015, pw)
    cv.over(torch.tensor([0.93, 0.9, 0.84]).view(1, 3, 1, 1) * (0.5 + 0.5 * lit), teeth)
    cv.over(torch.tensor([0.8, 0.76, 0.7]).view(1, 3, 1, 1) * lit, 0.6 * inner * ramp(yil + 0.025 - y, pw))
    cv.over(col(tex.app.lips) * 0.35 * lit, 0.6 * ramp(0.006 - (y - yiu).abs(), pw) * ramp(inside_x, pw))


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
        rays = window_rays(size, grid, origin[:, 0], origin[:, 1], k, sub)
        skin, p = _skin_hits(scene, rays, FACE_SURFACES)
        tex = _Tex(p[:, 0], p[:, 1], lighting(scene.app.light, skin.value[:, 0]), rays.px * CAMERA_DISTANCE, scene.xy,
                   scene.app, scene.st.expression)
        cv = Canvas(tex.x)
        paint(cv, tex)
        rgba = torch.cat([cv.rgb, cv.a], 1) * (skin.alpha[:, None] * (p[:, 2:3] > 0))  # on visible front skin
        rgba = nnf.avg_pool2d(rgba, sub) if sub > 1 else rgba
        vis = vis_flat.gather(2, index).view(B, 1, k, k)
        patch = flat.gather(2, index.expand(B, 3, -1)).view(B, 3, k, k)
        patch = patch * (1 - rgba[:, 3:] * vis) + rgba[:, :3] * vis
        flat = flat.scatter(2, index.expand(B, 3, -1), patch.reshape(B, 3, -1))
    return flat.view(B, 3, grid, grid)


def render(appearance: Appearance, structure: Structure, size: int = 64, *, supersample: int = 1,
           occlusion: str = "none", threads: int | None = 1) -> tuple[Tensor, Tensor]:
    """Draw faces: x (B, 3, size, size) float32 in [-1, 1] and their exact landmarks (B, 68, 2) in pixels.

    A batch of one appearance or structure broadcasts against the other. Any yaw in [-90, 90] draws (at 90 the
    face is in profile). ``supersample`` renders the raster that many times finer and averages it down (edges
    are already anti-aliased without it). ``occlusion``: the landmark convention (``geometry.image_points``:
    "none", the 3-D points; "profile", hidden contour points on the silhouette); it never changes the image.
    ``threads``: torch intra-op threads while drawing, restored afterwards (None keeps the current
    setting). One by default: the renderer is thousands of small ops that gain little from threads
    and, on a shared CPU, stall badly when OpenMP threads wait for each other (measured 10-100x slower).
    """
    if size < 16:
        raise ValueError(f"size must be at least 16, got {size}")
    if occlusion not in OCCLUSIONS:
        raise ValueError(f"occlusion must be one of {OCCLUSIONS}, got {occlusion!r}")
    appearance, structure = broadcast(appearance, structure)
    with torch.no_grad(), torch_threads(threads):
        scene = _scene(appearance, structure)
        grid = size * supersample
        img, skin_vis = _main_pass(scene, grid_rays(size, grid), grid)
        img = _paint_features(img, skin_vis, scene, size, grid)
        if supersample > 1:
            img = nnf.avg_pool2d(img, supersample)
        points = scene.points if occlusion == "none" else image_points(
            scene.geom, on_surface(scene.xy, scene.geom), head_rotation(structure), occlusion)
        return img.clamp(0, 1) * 2 - 1, Camera.for_size(size).project(points)
