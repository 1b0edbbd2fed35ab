"""Rays, hits and compositing shared by every synthetic subject: rays through the pixels of the one camera,
ellipsoid hits with analytic soft edges and Lambert shading on their true normals, flat triangles and strokes,
depth compositing of soft-edged layers, the gradient background, a premultiplied canvas for painted texture,
and ``render_layered`` for a subject drawn as one layer.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as nnf
from torch import Tensor

from afvae.data.synthetic.camera import CAMERA_DISTANCE, Camera, Ellipsoid, torch_threads
from afvae.data.synthetic.sampling import broadcast


class Rays(NamedTuple):
    """Rays through pixel centres, direction (u, v, -1) from the camera at (0, 0, D) in the camera frame."""

    u: Tensor  # (B | 1, 1, w) camera-plane slope, x
    v: Tensor  # (B | 1, h, 1) camera-plane slope, y (up)
    px: float  # slope per raster pixel: CAMERA_DISTANCE * px is a pixel's width in units at the subject's centre


def grid_rays(size: int, grid: int) -> Rays:
    """Rays of a grid x grid raster over a size x size image (grid = size * supersampling)."""
    cam = Camera.for_size(size)
    pos = (torch.arange(grid) + 0.5) * (size / grid) - 0.5  # raster pixel centres in image pixels
    return Rays(((pos - cam.cx) / cam.f).view(1, 1, -1), ((cam.cy - pos) / cam.f).view(1, -1, 1), size / grid / cam.f)


def window_rays(size: int, grid: int, x0: Tensor, y0: Tensor, k: int, sub: int) -> Rays:
    """Rays of k x k raster pixels from (x0, y0) (B,) each split sub x sub: (B, 1, k sub), (B, k sub, 1)."""
    cam = Camera.for_size(size)
    step = torch.arange(k * sub) + 0.5
    xs = ((x0[:, None] + step / sub) * (size / grid) - 0.5 - cam.cx) / cam.f  # (B, k sub)
    ys = (cam.cy - ((y0[:, None] + step / sub) * (size / grid) - 0.5)) / cam.f
    return Rays(xs[:, None, :], ys[:, :, None], size / grid / sub / cam.f)


class Frame(NamedTuple):
    """A rigid frame the rays are expressed in: the camera centre (B, 3) and camera -> frame rotation (B, 3, 3)."""

    origin: Tensor
    rot_t: Tensor


class Hit(NamedTuple):
    t: Tensor  # (B, h, w) ray parameter of the hit (of the closest approach where the ray misses)
    cover: Tensor  # (B, h, w) soft coverage of the pixel in [0, 1]
    shade: Tensor  # (B, h, w) cosine between the surface normal and the light, unclamped
    p: tuple[Tensor, ...]  # the hit point in the frame, 3 x (B, h, w) (empty unless asked for)


def dot_rays(coef: Tensor, rays: Rays) -> Tensor:
    """coef (B, 3) . (u, v, -1) over the raster -> (B, h, w)."""
    c = coef[:, :, None, None]
    return c[:, 0] * rays.u + (c[:, 1] * rays.v - c[:, 2])


def cast(e: Ellipsoid, frame: Frame, rays: Rays, light: Tensor, far: bool = False, points: bool = False) -> Hit:
    """Intersect the rays with ellipsoids e (in frame); light (B, 3) in the camera frame; near or far root."""
    to_unit = e.rot.transpose(1, 2) / e.radii[:, :, None]  # (B, 3, 3) frame -> unit sphere
    o = (to_unit @ (frame.origin - e.centre)[:, :, None])[..., 0]  # (B, 3)
    m = to_unit @ frame.rot_t  # (B, 3, 3) camera directions -> unit sphere
    d = [dot_rays(m[:, k], rays) for k in range(3)]
    a = torch.addcmul(torch.addcmul(d[0] * d[0], d[1], d[1]), d[2], d[2])
    b = dot_rays((o[:, None, :] @ m)[:, 0], rays)  # o . d
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
    return Hit(t, cover, dot / norm, tuple(points_at(frame, t, rays).unbind(1)) if points else ())


def points_at(frame: Frame, t: Tensor, rays: Rays) -> Tensor:
    """The points at ray parameter t (B, h, w) in ``frame``'s coordinates: (B, 3, h, w)."""
    return torch.stack([torch.addcmul(frame.origin[:, k, None, None], t, dot_rays(frame.rot_t[:, k], rays))
                        for k in range(3)], 1)


def _screen(p: Tensor) -> Tensor:
    """Camera-frame points (B, ..., 3) -> their rays' camera-plane slopes (u, v): (B, ..., 2)."""
    return p[..., :2] / (CAMERA_DISTANCE - p[..., 2:])


def _edge(s0: Tensor, s1: Tensor, rays: Rays) -> Tensor:
    """Signed distance (slope units) of each ray from the screen line s0 -> s1 (B, 2 each), > 0 on its left."""
    e = s1 - s0
    length = e.norm(dim=1).clamp_min(1e-9)
    ex, ey = (e[:, 0] / length)[:, None, None], (e[:, 1] / length)[:, None, None]
    return ex * (rays.v - s0[:, 1, None, None]) - ey * (rays.u - s0[:, 0, None, None])


def cast_triangle(tri: Tensor, rays: Rays, light: Tensor) -> Hit:
    """Intersect the rays with flat triangles tri (B, 3, 3) (vertices x xyz, camera frame): the exact depth, the
    pixel coverage from the projected edges, and the two-sided Lambert cosine of the side facing the camera."""
    a, b, c = tri.unbind(1)  # (B, 3) each
    n = torch.linalg.cross(b - a, c - a)
    n = n / n.norm(dim=1, keepdim=True).clamp_min(1e-9)
    eye = torch.tensor([0.0, 0.0, CAMERA_DISTANCE])
    n = torch.where(((eye - a) * n).sum(1, keepdim=True) < 0, -n, n)  # the side the camera sees
    t = ((a - eye) * n).sum(1)[:, None, None] / dot_rays(n, rays).clamp(max=-1e-6)  # (B, h, w)
    s = _screen(tri)  # (B, 3, 2)
    turn = torch.sign((s[:, 1, 0] - s[:, 0, 0]) * (s[:, 2, 1] - s[:, 0, 1])
                      - (s[:, 1, 1] - s[:, 0, 1]) * (s[:, 2, 0] - s[:, 0, 0]))[:, None, None]  # counter-clockwise: +1
    dist = [turn * _edge(s[:, i], s[:, (i + 1) % 3], rays) for i in range(3)]
    inside = torch.minimum(torch.minimum(dist[0], dist[1]), dist[2])  # (B, h, w) slope units, > 0 inside
    cover = (inside / rays.px + 0.5).clamp(0, 1)
    shade = (n * light).sum(1)[:, None, None].expand_as(t)
    return Hit(t, cover, shade, ())


def stroke(p0: Tensor, p1: Tensor, width: float, rays: Rays) -> tuple[Tensor, Tensor]:
    """A straight line from p0 to p1 (B, 3, camera frame), ``width`` units wide at the subject's depth: its pixel
    coverage (B, h, w) and its ray parameter t there (interpolated along the screen line, for depth tests)."""
    s0, s1 = _screen(p0), _screen(p1)  # (B, 2)
    e = s1 - s0
    du, dv = rays.u - s0[:, 0, None, None], rays.v - s0[:, 1, None, None]  # (B, h, w) after broadcasting
    ex, ey = e[:, 0, None, None], e[:, 1, None, None]
    s = ((du * ex + dv * ey) / (ex * ex + ey * ey).clamp_min(1e-12)).clamp(0, 1)
    dist = ((du - s * ex) ** 2 + (dv - s * ey) ** 2).sqrt() / rays.px  # raster pixels
    w = width / (CAMERA_DISTANCE * rays.px)  # raster pixels
    cover = (0.5 + w / 2 - dist).clamp(0, 1) * min(w, 1.0)
    t0, t1 = (CAMERA_DISTANCE - p[:, 2, None, None] for p in (p0, p1))
    return cover, t0 + s * (t1 - t0)


class Layer(NamedTuple):
    alpha: Tensor  # (B, h, w)
    t: Tensor  # (B, h, w)
    value: Tensor  # (B, C, h, w) straight (not premultiplied)


def zmerge(a: Layer, b: Layer, tau: float) -> tuple[Layer, Tensor]:
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
    return Layer(alpha, t, value), vis_a


def over(img: Tensor, colour: Tensor, alpha: Tensor) -> Tensor:
    """img (B, 3, h, w) under colour (B, 3, h, w) with alpha (B, h, w)."""
    return torch.addcmul(img, alpha[:, None], colour - img)


def col(c: Tensor) -> Tensor:
    """(B, 3) colour -> (B, 3, 1, 1)."""
    return c[:, :, None, None]


def lighting(light: Tensor, shade: Tensor) -> Tensor:
    """Ambient + wrapped Lambert: light (B, 2) (intensity, ambient), shade (B, h, w) -> (B, 1, h, w) light level."""
    level = ((shade + 0.25) * (1 / 1.25)).clamp_min(0) * light[:, 0, None, None] + light[:, 1, None, None]
    return level[:, None]


def background(top: Tensor, bottom: Tensor, noise: Tensor, grid: int) -> Tensor:
    """Vertical gradient from top (B, 3) to bottom (B, 3) plus low-frequency brightness noise (B, 16) on a 4 x 4
    grid, bilinearly upsampled: (B, 3, grid, grid)."""
    rows = torch.linspace(0, 1, grid).view(1, 1, grid, 1)
    grad = col(top) + (col(bottom) - col(top)) * rows  # (B, 3, grid, 1)
    noise = nnf.interpolate(noise.view(-1, 1, 4, 4), size=(grid, grid), mode="bilinear", align_corners=True)
    return grad + noise


def ramp(d: Tensor, pw: float) -> Tensor:
    """Soft step of a signed distance d (head units, > 0 inside) over one pixel pw -> [0, 1]."""
    return (d * (1 / pw) + 0.5).clamp(0, 1)


class Canvas:
    """Premultiplied RGBA painted back to front: rgb (B, 3, h, w), a (B, 1, h, w)."""

    def __init__(self, like: Tensor):
        self.rgb = torch.zeros(like.shape[0], 3, *like.shape[1:])
        self.a = torch.zeros(like.shape[0], 1, *like.shape[1:])

    def over(self, colour: Tensor, alpha: Tensor) -> None:
        """colour (B, 3, h, w) or (B, 3, 1, 1), alpha (B, h, w)."""
        alpha = alpha[:, None]
        self.rgb = torch.addcmul(self.rgb * (1 - alpha), colour, alpha)
        self.a = self.a + alpha * (1 - self.a)


def render_layered(layer: Callable[[Any, Any, Rays], Layer], keypoints: Callable[[Any, Any, int], Tensor],
                   appearance: Any, structure: Any, size: int, *, supersample: int = 1, threads: int | None = 1
                   ) -> tuple[Tensor, Tensor]:
    """Draw a subject that ``layer`` gives as one soft-edged layer over its appearance's background (bg_top,
    bg_bottom, bg_noise): x (B, 3, size, size) float32 in [-1, 1] and ``keypoints(appearance, structure, size)``.

    A batch of one appearance or structure broadcasts against the other. ``supersample`` renders the raster
    that many times finer and averages it down; ``threads``: torch intra-op threads while drawing (see the
    faces' ``render``).
    """
    if size < 16:
        raise ValueError(f"size must be at least 16, got {size}")
    appearance, structure = broadcast(appearance, structure)
    with torch.no_grad(), torch_threads(threads):
        grid = size * supersample
        subject = layer(appearance, structure, grid_rays(size, grid))
        img = background(appearance.bg_top, appearance.bg_bottom, appearance.bg_noise, grid)
        img = over(img, subject.value, subject.alpha).clamp(0, 1)
        if supersample > 1:
            img = nnf.avg_pool2d(img, supersample)
        return img * 2 - 1, keypoints(appearance, structure, size)
