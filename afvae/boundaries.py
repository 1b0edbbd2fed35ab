"""Landmarks -> boundary curves -> heatmaps (the LAB recipe, batched in torch).

The boundary map ``c`` of a face has one channel per curve of a keypoint schema. Each curve is a
parametric cubic spline through its points (degree ``min(3, n - 1)``, no smoothing, uniform
parameter: point ``i`` sits at ``t = i``) sampled densely into a polyline; a pixel's value is
``exp(-D^2 / 2 sigma^2)`` where ``D < 3 sigma`` and 0 elsewhere, with ``D`` the exact Euclidean
distance from the pixel centre to that polyline. See /work/shared/LAB_BOUNDARIES.md.

Pixel convention: pixel ``(row i, column j)`` has its centre at ``(x, y) = (j, i)``, so a landmark
at ``x = 10.0, y = 20.0`` lies exactly on the centre of ``c[..., 20, 10]``. Landmarks given for an
``image_size`` image are rendered at ``size`` pixels by multiplying the coordinates by
``size / image_size``.

``FACE68`` (iBUG 300-W order, 0-based; "left" / "right" as seen in the image, so the "left"
curves belong to the subject's right side):

====  ==================  ==================================
 ch    curve               points
====  ==================  ==================================
  0    contour             0-16
  1    left_eyebrow        17-21
  2    right_eyebrow       22-26
  3    nose_bridge         27-30
  4    nose_bottom         31-35
  5    left_upper_eyelid   36, 37, 38, 39
  6    left_lower_eyelid   36, 41, 40, 39
  7    right_upper_eyelid  42, 43, 44, 45
  8    right_lower_eyelid  42, 47, 46, 45
  9    upper_outer_lip     48-54
 10    upper_inner_lip     60-64
 11    lower_inner_lip     60, 67, 66, 65, 64
 12    lower_outer_lip     48, 59, 58, 57, 56, 55, 54
====  ==================  ==================================

Rendering splats each segment of the dense polyline: every pixel in a square window around the
segment gets its exact distance to the segment, and ``scatter_reduce(amax)`` keeps the largest
value per pixel (the max of ``exp(-d^2 / 2 sigma^2)`` over segments is ``exp(-D^2 / 2 sigma^2)``).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.interpolate import make_interp_spline
from torch import Tensor

Curve = tuple[str, tuple[int, ...]]


@dataclass(frozen=True)
class Schema:
    """A keypoint layout: ``n_points`` landmarks and the named curves (index tuples) drawn through them."""

    name: str
    n_points: int
    curves: tuple[Curve, ...]

    def __post_init__(self) -> None:
        for curve, idx in self.curves:
            if len(idx) < 2:
                raise ValueError(f"schema {self.name}: curve {curve!r} needs at least 2 points, got {len(idx)}")
            if not all(0 <= i < self.n_points for i in idx):
                raise ValueError(f"schema {self.name}: curve {curve!r} has indices outside [0, {self.n_points})")

    @property
    def curve_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.curves)

    @property
    def n_curves(self) -> int:
        return len(self.curves)


FACE68 = Schema("face68", 68, (
    ("contour", tuple(range(0, 17))),
    ("left_eyebrow", tuple(range(17, 22))),
    ("right_eyebrow", tuple(range(22, 27))),
    ("nose_bridge", tuple(range(27, 31))),
    ("nose_bottom", tuple(range(31, 36))),
    ("left_upper_eyelid", (36, 37, 38, 39)),
    ("left_lower_eyelid", (36, 41, 40, 39)),
    ("right_upper_eyelid", (42, 43, 44, 45)),
    ("right_lower_eyelid", (42, 47, 46, 45)),
    ("upper_outer_lip", tuple(range(48, 55))),
    ("upper_inner_lip", tuple(range(60, 65))),
    ("lower_inner_lip", (60, 67, 66, 65, 64)),
    ("lower_outer_lip", (48, 59, 58, 57, 56, 55, 54)),
))

# Hand: wrist 0, then 4 joints per finger from base to tip; one curve wrist -> tip per finger.
HAND21 = Schema("hand21", 21, tuple(
    (finger, (0, *range(1 + 4 * f, 5 + 4 * f))) for f, finger in enumerate(("thumb", "index", "middle", "ring", "pinky"))
))

# CAT dataset: 0 left eye, 1 right eye, 2 mouth, 3-5 left ear, 6-8 right ear.
CAT9 = Schema("cat9", 9, (
    ("left_ear", (3, 4, 5)),
    ("right_ear", (6, 7, 8)),
    ("eyes_mouth", (0, 2, 1)),
    ("eye_line", (0, 1)),
))

SCHEMAS: dict[str, Schema] = {s.name: s for s in (FACE68, HAND21, CAT9)}

# Horizontal flip of iBUG 68 landmarks: flipped[k] = mirror_x(original[FACE68_MIRROR[k]]).
FACE68_MIRROR: tuple[int, ...] = (
    *range(16, -1, -1),  # contour
    *range(26, 16, -1),  # eyebrows
    27, 28, 29, 30, 35, 34, 33, 32, 31,  # nose
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,  # eyes
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,  # outer lips
    64, 63, 62, 61, 60, 67, 66, 65,  # inner lips
)

DEFAULT_SAMPLES_PER_SEGMENT = 8  # polyline pieces per landmark-to-landmark span in dense_curves


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

def _as_batch(landmarks: Tensor | np.ndarray) -> tuple[Tensor, bool]:
    """(N, 2) or (B, N, 2) array-like -> ((B, N, 2) float32 tensor, whether the input was single)."""
    pts = torch.as_tensor(np.asarray(landmarks) if not isinstance(landmarks, Tensor) else landmarks)
    if pts.ndim not in (2, 3):
        raise ValueError(f"landmarks must have shape (N, 2) or (B, N, 2), got {tuple(pts.shape)}")
    single = pts.ndim == 2
    pts = pts[None] if single else pts
    if pts.shape[-1] != 2:
        raise ValueError(f"landmarks must end in a dimension of 2 (x, y), got shape {tuple(pts.shape)}")
    if pts.is_complex() or pts.dtype == torch.bool:
        raise ValueError(f"landmarks must be real numbers, got {pts.dtype}")
    return pts.float(), single


def _check_points(pts: Tensor, schema: Schema) -> None:
    """Raise ValueError for a wrong landmark count or NaN / inf values; pts (B, N, 2)."""
    if pts.shape[1] != schema.n_points:
        raise ValueError(f"expected {schema.n_points} landmarks ({schema.name}), got {pts.shape[1]}")
    bad = ~torch.isfinite(pts).all(dim=-1)  # (B, N)
    if bad.any():
        b = int(bad.any(dim=1).nonzero()[0])
        raise ValueError(f"landmarks contain NaN or inf: sample {b}, points {bad[b].nonzero().flatten().tolist()}")


def _check_inside(pts: Tensor, image_size: int, margin: float = 0.5) -> None:
    """Raise ValueError if a point lies more than ``margin * image_size`` beyond a border; pts (B, N, 2)."""
    lo, hi = -margin * image_size, image_size - 1 + margin * image_size
    far = ((pts < lo) | (pts > hi)).any(dim=-1)  # (B, N)
    if far.any():
        b = int(far.any(dim=1).nonzero()[0])
        raise ValueError(
            f"landmarks far outside the {image_size}x{image_size} image (more than {margin:.0%} of its size "
            f"beyond a border): sample {b}, points {far[b].nonzero().flatten().tolist()}"
        )


def _check_positive(**values: float | None) -> None:
    """Raise ValueError naming each argument that is given but not a positive finite number."""
    for key, v in values.items():
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ValueError(f"{key} must be positive, got {v}")


# ---------------------------------------------------------------------------------------------
# Dense curves
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def spline_matrix(n_points: int, samples_per_segment: int) -> np.ndarray:
    """(S, n) matrix M with dense = M @ points: the spline through n points at S = (n-1)*k + 1 parameters.

    Uniform parameter (point i at t = i), degree min(3, n - 1), not-a-knot ends; every k-th row
    reproduces a control point exactly.
    """
    _check_positive(samples_per_segment=samples_per_segment)
    t = np.arange(n_points, dtype=np.float64)
    spline = make_interp_spline(t, np.eye(n_points), k=min(3, n_points - 1))  # splines of the identity basis
    ts = np.linspace(0.0, n_points - 1.0, (n_points - 1) * samples_per_segment + 1)
    m = spline(ts)  # (S, n)
    m[::samples_per_segment] = np.eye(n_points)  # exact through the points
    return m


def dense_curves(
    landmarks: Tensor | np.ndarray, schema: Schema = FACE68, samples_per_segment: int = DEFAULT_SAMPLES_PER_SEGMENT
) -> list[Tensor]:
    """Landmarks (B, N, 2) or (N, 2) -> one dense polyline per curve, (B, S_i, 2) or (S_i, 2).

    S_i = (n_i - 1) * samples_per_segment + 1 for a curve through n_i points; the points themselves
    are every ``samples_per_segment``-th sample.
    """
    pts, single = _as_batch(landmarks)
    _check_points(pts, schema)
    mat, channel, _ = _stacked_spline(schema, (samples_per_segment,) * schema.n_curves)
    dense = torch.matmul(torch.as_tensor(mat, dtype=pts.dtype, device=pts.device), pts)  # (B, S, 2)
    sizes = np.bincount(channel).tolist()
    return [d[0] if single else d for d in dense.split(sizes, dim=1)]


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

SAMPLE_SPACING = 0.3  # in sigma: dense samples this close keep every value within 1 - exp(-0.3^2 / 8) = 1.1 %


@functools.lru_cache(maxsize=16)
def _curve_spans(schema: Schema) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First and second landmark of every landmark-to-landmark span, (G,) each, and each curve's first span."""
    a = np.concatenate([idx[:-1] for _, idx in schema.curves])
    b = np.concatenate([idx[1:] for _, idx in schema.curves])
    first = np.cumsum([0] + [len(idx) - 1 for _, idx in schema.curves[:-1]])
    return a, b, first


@functools.lru_cache(maxsize=256)
def _stacked_spline(schema: Schema, ks: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All curves' spline matrices on the schema's points (S, N), each row's curve (S,), each curve's first row."""
    blocks = []
    for (_, idx), k in zip(schema.curves, ks):
        m = spline_matrix(len(idx), k)  # (S_i, n_i)
        full = np.zeros((m.shape[0], schema.n_points))
        full[:, list(idx)] = m
        blocks.append(full)
    lengths = [len(m) for m in blocks]
    channel = np.repeat(np.arange(len(blocks)), lengths)
    return np.concatenate(blocks), channel, np.cumsum([0] + lengths[:-1])


def _group_max(values: Tensor, starts: np.ndarray) -> np.ndarray:
    """Largest value over the batch and within each group of columns: values (B, G), group starts (C,) -> (C,)."""
    return np.maximum.reduceat(values.amax(0).double().cpu().numpy(), starts)


def _sample_curves(pts: Tensor, schema: Schema, spacing: float) -> tuple[Tensor, Tensor]:
    """Landmarks (B, N, 2), B > 0 -> dense curve samples (B, S, 2) at most ``spacing`` apart, and their curve (S,)."""
    a, b, first = _curve_spans(schema)
    longest = _group_max((pts[:, b] - pts[:, a]).norm(dim=-1), first)  # (C,) longest span of each curve
    ks = np.maximum(1, np.ceil(1.2 * longest / spacing)).astype(int)  # a spline span is a bit longer than its chord
    for _ in range(4):
        mat, channel, starts = _stacked_spline(schema, tuple(ks.tolist()))
        dense = torch.matmul(torch.as_tensor(mat, dtype=pts.dtype, device=pts.device), pts)  # (B, S, 2)
        inner = torch.as_tensor(channel[1:] == channel[:-1], device=pts.device)  # (S-1,) both rows on one curve
        gap = (dense[:, 1:] - dense[:, :-1]).norm(dim=-1) * inner  # (B, S-1)
        worst = _group_max(torch.cat([gap, torch.zeros_like(gap[:, :1])], 1), starts)  # (C,)
        over = worst > spacing
        if not over.any():
            break
        ks[over] = np.ceil(ks[over] * worst[over] / spacing * 1.1)
    return dense, torch.as_tensor(channel, device=pts.device)


def _splat_points(q: Tensor, flat_base: Tensor, out: Tensor, size: int, sigma: float) -> None:
    """Max-splat Gaussians exp(-d^2 / 2 sigma^2), cut at d >= 3 sigma, of points q (B, S, 2) into flat ``out``.

    ``flat_base`` (B, S) is the flat offset of each point's channel image. The Gaussian is separable,
    so each point costs two 1-D profiles and one outer product over its ceil(6 sigma)^2 window.
    """
    w = math.ceil(6 * sigma)
    offs = torch.arange(w, device=q.device)
    pix = (torch.floor(q - 3 * sigma).long() + 1)[..., None] + offs  # (B, S, 2, w): window columns and rows
    g = torch.exp((pix - q[..., None]).square_() * (-0.5 / sigma**2))  # (B, S, 2, w) 1-D profiles
    g.masked_fill_((pix < 0) | (pix >= size), 0.0)  # off the map
    val = g[:, :, 1, :, None] * g[:, :, 0, None, :]  # (B, S, w, w) rows x columns
    torch.nn.functional.threshold(val, math.exp(-4.5), 0.0, inplace=True)  # d >= 3 sigma -> 0
    pix.clamp_(0, size - 1)
    row = flat_base[..., None] + pix[:, :, 1] * size  # (B, S, w)
    idx = row[..., :, None] + pix[:, :, 0, None, :]  # (B, S, w, w)
    out.scatter_reduce_(0, idx.view(-1), val.view(-1), "amax")


def _render(dense: Tensor, channel: Tensor, n_curves: int, size: int, sigma: float) -> Tensor:
    """Dense curve samples (B, S, 2) in map pixels, their curve (S,) -> boundary maps (B, n_curves, size, size)."""
    B, S, _ = dense.shape
    out = torch.zeros(B * n_curves * size * size, device=dense.device)
    base = (torch.arange(B, device=dense.device)[:, None] * n_curves + channel) * (size * size)  # (B, S)
    chunk = max(1, (1 << 20) // (S * math.ceil(6 * sigma) ** 2))  # about 1M window pixels per pass
    for b in range(0, B, chunk):
        _splat_points(dense[b:b + chunk], base[b:b + chunk], out, size, sigma)
    return out.view(B, n_curves, size, size)


def boundary_map(
    landmarks: Tensor | np.ndarray,
    size: int,
    *,
    image_size: int | None = None,
    sigma: float | None = None,
    schema: Schema = FACE68,
) -> Tensor:
    """Landmarks (B, N, 2) or (N, 2) in image pixels (x, y) -> boundary map c (B, C, size, size) or (C, size, size).

    Float32 in [0, 1], one channel per curve of ``schema``: exp(-D^2 / 2 sigma^2) for D < 3 sigma,
    else 0. ``image_size`` is the side of the image the landmarks refer to (default ``size``);
    ``sigma`` is in map pixels (default ``size / 64``: 1 px at 64 px).
    """
    image_size = size if image_size is None else image_size
    _check_positive(size=size, image_size=image_size, sigma=sigma)
    pts, single = _as_batch(landmarks)
    _check_points(pts, schema)
    _check_inside(pts, image_size)
    sigma = size / 64 if sigma is None else float(sigma)
    if pts.shape[0] == 0:
        return torch.zeros(0, schema.n_curves, size, size, device=pts.device)
    dense, channel = _sample_curves(pts * (size / image_size), schema, SAMPLE_SPACING * sigma)  # map pixels
    c = _render(dense, channel, schema.n_curves, int(size), sigma)
    return c[0] if single else c


def merged_map(c: Tensor) -> Tensor:
    """Boundary map (B, C, H, W) or (C, H, W) -> max over curves, (B, 1, H, W) or (1, H, W)."""
    return c.amax(dim=-3, keepdim=True)


# ---------------------------------------------------------------------------------------------
# A synthetic face
# ---------------------------------------------------------------------------------------------

_EYE = ((-0.06, 0.0), (-0.02, -0.02), (0.02, -0.02), (0.06, 0.0), (0.02, 0.015), (-0.02, 0.015))
_OUTER_LIP = ((0.39, 0.73), (0.43, 0.71), (0.47, 0.70), (0.50, 0.705), (0.53, 0.70), (0.57, 0.71),
              (0.61, 0.73), (0.57, 0.765), (0.535, 0.78), (0.50, 0.785), (0.465, 0.78), (0.43, 0.765))
_INNER_LIP = ((0.41, 0.73), (0.46, 0.725), (0.50, 0.727), (0.54, 0.725), (0.59, 0.73),
              (0.54, 0.74), (0.50, 0.742), (0.46, 0.74))


def mean_face_landmarks(size: int = 256) -> Tensor:
    """A rough frontal face in iBUG 68-point order, (68, 2) float32 pixels (x, y) of a size x size image."""
    phi = np.linspace(np.pi, 0.0, 17)
    contour = np.stack([0.5 + 0.33 * np.cos(phi), 0.40 + 0.47 * np.sin(phi)], 1)  # temple, chin, temple
    brow_x = np.linspace(0.25, 0.45, 5)
    brow = np.stack([brow_x, 0.34 - 0.03 * np.sin(np.linspace(0.3, np.pi - 0.3, 5))], 1)
    right_brow = np.stack([1.0 - brow[::-1, 0], brow[::-1, 1]], 1)
    bridge = np.stack([np.full(4, 0.5), np.linspace(0.40, 0.58, 4)], 1)
    nose = np.stack([np.linspace(0.43, 0.57, 5), 0.62 + 0.015 * np.sin(np.linspace(0, np.pi, 5))], 1)
    eyes = [np.asarray(_EYE) + (cx, 0.42) for cx in (0.36, 0.64)]
    parts = [contour, brow, right_brow, bridge, nose, *eyes, np.asarray(_OUTER_LIP), np.asarray(_INNER_LIP)]
    return torch.tensor(np.concatenate(parts) * (size - 1), dtype=torch.float32)  # (68, 2)
