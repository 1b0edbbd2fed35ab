"""Landmarks -> boundary curves -> heatmaps (the LAB recipe, batched in torch).

The boundary map ``c`` of a face has one channel per curve of a keypoint schema. Each curve is a
parametric cubic spline through its points (degree ``min(3, n - 1)``, no smoothing, uniform
parameter: point ``i`` sits at ``t = i``); a pixel's value is ``exp(-D^2 / 2 sigma^2)`` where
``D < 3 sigma`` and 0 elsewhere, with ``D`` the Euclidean distance from the pixel centre to the
curve (the LAB recipe, Wu et al., CVPR 2018). Consecutive duplicate points need no special case:
the uniform parameter has no chord lengths to divide by, the curve just rests on the repeated point.

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

Rendering is a max-splat, vectorised over the batch and all curves: the spline is linear in the
points, so one matrix product (cached per schema) gives every span's cubic; each span is sampled
finely enough that samples lie at most 0.3 sigma apart (per face, so a face's map does not depend
on its batch); each sample's Gaussian, cut at 3 sigma, is the outer product of two 1-D profiles
over a ceil(6 sigma)^2 window, and ``scatter_reduce(amax)`` keeps each pixel's largest value
(the max over samples of exp(-d^2 / 2 sigma^2) is exp(-min d^2 / 2 sigma^2)). Sampling
underestimates a value by at most about 1 - exp(-0.3^2 / 8) = 1.1 %, and pixels with D just under
3 sigma may be 0 instead of ~0.011; tests hold the maps within 0.02 of an exact reference.
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
    reference: tuple[int, int] = (0, 1)  # two points whose distance normalises landmark errors (NME)

    def __post_init__(self) -> None:
        for curve, idx in self.curves:
            if len(idx) < 2:
                raise ValueError(f"schema {self.name}: curve {curve!r} needs at least 2 points, got {len(idx)}")
            if not all(0 <= i < self.n_points for i in idx):
                raise ValueError(f"schema {self.name}: curve {curve!r} has indices outside [0, {self.n_points})")
        if not all(0 <= i < self.n_points for i in self.reference) or len(set(self.reference)) != 2:
            raise ValueError(f"schema {self.name}: reference {self.reference} must be two distinct point indices")

    @property
    def curve_names(self) -> tuple[str, ...]:
        """Curve names in channel order."""
        return tuple(name for name, _ in self.curves)

    @property
    def n_curves(self) -> int:
        """Number of curves, i.e. channels of the boundary map."""
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
), reference=(36, 45))  # outer eye corners: the inter-ocular distance

# Hand: wrist 0, then 4 joints per finger from base to tip; one curve wrist -> tip per finger.
_FINGERS = ("thumb", "index", "middle", "ring", "pinky")
HAND21 = Schema("hand21", 21, tuple((finger, (0, *range(1 + 4 * f, 5 + 4 * f))) for f, finger in enumerate(_FINGERS)),
                reference=(0, 9))  # wrist to the middle finger's base: the palm length

# CAT dataset: 0 left eye, 1 right eye, 2 mouth, 3-5 left ear, 6-8 right ear.
CAT9 = Schema("cat9", 9, (
    ("left_ear", (3, 4, 5)),
    ("right_ear", (6, 7, 8)),
    ("eyes_mouth", (0, 2, 1)),
    ("eye_line", (0, 1)),
), reference=(0, 1))  # the two eyes

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
    pts = landmarks if isinstance(landmarks, Tensor) else torch.as_tensor(np.asarray(landmarks))
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


def _check_sizes(size: int, image_size: int, sigma: float | None) -> None:
    """Raise ValueError unless the map and image sizes are positive integers and sigma (if given) is positive."""
    for key, v in (("size", size), ("image_size", image_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"{key} must be a positive integer, got {v!r}")
    if sigma is not None and not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be positive, got {sigma!r}")


# ---------------------------------------------------------------------------------------------
# Dense curves
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def span_polynomials(n_points: int) -> np.ndarray:
    """(n-1, 4, n) power-basis coefficients of the spline through n points, per span.

    Span j (from point j to j + 1) is ``P_j(s) = sum_p s**p * (coef[j, p] @ points)`` for s in
    [0, 1]. A spline is linear in its points, so the coefficients come from the splines of the
    identity: uniform parameter t = 0..n-1, degree min(3, n - 1), no smoothing, not-a-knot ends.
    """
    spline = make_interp_spline(np.arange(n_points, dtype=np.float64), np.eye(n_points), k=min(3, n_points - 1))
    s = np.array([0.0, 1 / 3, 2 / 3, 1.0])
    values = spline(np.arange(n_points - 1)[:, None] + s)  # (n-1, 4, n) at 4 parameters per span
    coef = np.linalg.solve(np.vander(s, 4, increasing=True), values)  # cubic through 4 values -> power basis
    coef[:, 0] = np.eye(n_points)[:-1]  # P_j(0) is exactly point j
    return coef


@functools.lru_cache(maxsize=16)
def _schema_spans(schema: Schema) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Span polynomials on the schema's points (G*4, N), each span's curve (G,), whether it ends its curve (G,)."""
    blocks, curve, last = [], [], []
    for ch, (_, idx) in enumerate(schema.curves):
        coef = span_polynomials(len(idx))  # (n-1, 4, n)
        full = np.zeros((len(idx) - 1, 4, schema.n_points))
        full[..., list(idx)] = coef
        blocks.append(full.reshape(-1, schema.n_points))
        curve += [ch] * (len(idx) - 1)
        last += [False] * (len(idx) - 2) + [True]
    return np.concatenate(blocks), np.array(curve), np.array(last)


def _span_coefficients(pts: Tensor, schema: Schema) -> Tensor:
    """Landmarks (B, N, 2) -> polynomial coefficients of every span of every curve, (B, G, 4, 2), as one GEMM."""
    B, N, _ = pts.shape
    mat = torch.as_tensor(_schema_spans(schema)[0], dtype=pts.dtype, device=pts.device)  # (G*4, N)
    coef = mat @ pts.transpose(0, 1).reshape(N, B * 2)  # (G*4, B*2)
    return coef.view(-1, 4, B, 2).permute(2, 0, 1, 3).contiguous()  # (B, G, 4, 2)


def _sample_spans(coef: Tensor, counts: Tensor, schema: Schema) -> tuple[Tensor, Tensor]:
    """Span polynomials (B, G, 4, 2), samples per span (B, G) -> dense curves (B, S, 2) and each row's curve (S,).

    Span g holds rows s = i / k for i < K_g (its largest count k in the batch); rows past an item's
    own count repeat its last sample, so an item's samples do not depend on the rest of its batch.
    Each curve's last span adds one row for its end point (s = 1).
    """
    _, curve, last = _schema_spans(schema)
    most = counts.amax(0).cpu().numpy()  # (G,)
    rows = most + last  # (G,) rows per span
    span = np.repeat(np.arange(len(rows)), rows)  # (S,) span of each row
    i = np.arange(len(span)) - np.repeat(np.cumsum(rows) - rows, rows)  # (S,) row within its span
    span_t, i_t = torch.as_tensor(span, device=coef.device), torch.as_tensor(i, device=coef.device)
    k = counts[:, span_t]  # (B, S)
    s = torch.minimum(i_t, k - 1).to(coef.dtype) / k  # (B, S)
    s[:, torch.as_tensor(i == most[span], device=coef.device)] = 1.0  # curve end points
    a = coef[:, span_t]  # (B, S, 4, 2)
    s = s[..., None]  # (B, S, 1)
    dense = ((a[:, :, 3] * s + a[:, :, 2]) * s + a[:, :, 1]) * s + a[:, :, 0]  # Horner, (B, S, 2)
    return dense, torch.as_tensor(curve[span], device=coef.device)


def dense_curves(
    landmarks: Tensor | np.ndarray, schema: Schema = FACE68, samples_per_segment: int = DEFAULT_SAMPLES_PER_SEGMENT
) -> list[Tensor]:
    """Landmarks (B, N, 2) or (N, 2) -> one dense polyline per curve, (B, S_i, 2) or (S_i, 2).

    S_i = (n_i - 1) * samples_per_segment + 1 for a curve through n_i points, evenly spaced in the
    spline parameter; the points themselves are every ``samples_per_segment``-th sample.
    """
    pts, single = _as_batch(landmarks)
    _check_points(pts, schema)
    if int(samples_per_segment) != samples_per_segment or samples_per_segment < 1:
        raise ValueError(f"samples_per_segment must be a positive integer, got {samples_per_segment!r}")
    coef = _span_coefficients(pts, schema)  # (B, G, 4, 2)
    counts = torch.full(coef.shape[:2], int(samples_per_segment), device=pts.device)  # (B, G)
    dense, channel = _sample_spans(coef, counts, schema)  # (B, S, 2)
    curves = dense.split(np.bincount(channel.cpu().numpy(), minlength=schema.n_curves).tolist(), dim=1)
    return [d[0] if single else d for d in curves]


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

SAMPLE_SPACING = 0.3  # in sigma: samples this close keep every value within 1 - exp(-0.3^2 / 8) = 1.1 % of exact


def _sample_counts(coef: Tensor, spacing: float) -> Tensor:
    """Span polynomials (B, G, 4, 2) -> samples per span (B, G) that keep consecutive samples ``spacing`` apart.

    A span's samples are evenly spaced in s, so its count follows its largest speed |P'(s)|, taken
    over 9 values of s with a 10 % margin.
    """
    s = torch.linspace(0, 1, 9, dtype=coef.dtype, device=coef.device)[:, None]  # (9, 1)
    c = coef[:, :, None]  # (B, G, 1, 4, 2)
    speed = c[..., 1, :] + 2 * c[..., 2, :] * s + 3 * c[..., 3, :] * s**2  # (B, G, 9, 2) = P'(s)
    return torch.ceil(1.1 / spacing * speed.norm(dim=-1).amax(-1)).clamp_(min=1).long()


def _profiles(q: Tensor, size: int, sigma: float, w: int) -> tuple[Tensor, Tensor]:
    """Points q (P, 2) -> 1-D Gaussians along x and y over each point's window (P, 2, w), and window corners (P, 2).

    The window spans the w = ceil(6 sigma) pixels around q, shifted inside the map near a border
    (it still covers every pixel of the map within 3 sigma of q).
    """
    offs = torch.arange(w, device=q.device)
    corner = (torch.floor(q - 3 * sigma) + 1).clamp_(0, size - w).long()  # (P, 2)
    g = torch.exp((corner[..., None] + offs - q[..., None]).square_() * (-0.5 / sigma**2))  # (P, 2, w)
    return g, corner


def _render(dense: Tensor, channel: Tensor, n_curves: int, size: int, sigma: float) -> Tensor:
    """Dense curve samples (B, S, 2) in map pixels, their curve (S,) -> boundary maps (B, n_curves, size, size).

    Max-splat: each sample's Gaussian is the outer product of two 1-D profiles over its window, cut
    where d >= 3 sigma, and ``scatter_reduce(amax)`` keeps each pixel's largest value.
    """
    B, S, _ = dense.shape
    w = min(math.ceil(6 * sigma), size)
    offs = torch.arange(w, device=dense.device)
    table = (offs[:, None] * size + offs).view(-1)  # (w*w,) flat offsets of a window's pixels
    g, corner = _profiles(dense.reshape(-1, 2), size, sigma, w)  # (P, 2, w), (P, 2)
    base = (torch.arange(B, device=dense.device)[:, None] * n_curves + channel).view(-1) * (size * size)  # (P,)
    start = base + corner[:, 1] * size + corner[:, 0]  # (P,) flat index of each window's first pixel
    out = torch.zeros(B * n_curves * size * size, device=dense.device)
    # On CPU, chunks under torch's intra-op grain (32768 elements) run inline: no thread wake-ups,
    # which cost milliseconds per op when the other cores are busy; the reused buffers stay in cache.
    chunk = max(1, (32767 if dense.device.type == "cpu" else 1 << 22) // (w * w))
    val = torch.empty(chunk, w, w, device=dense.device)
    idx = torch.empty(chunk, w * w, dtype=torch.long, device=dense.device)
    for p in range(0, B * S, chunk):
        n = min(chunk, B * S - p)
        v = torch.mul(g[p:p + n, 1, :, None], g[p:p + n, 0, None, :], out=val[:n])  # (n, w, w) rows x columns
        torch.nn.functional.threshold_(v, math.exp(-4.5), 0.0)  # d >= 3 sigma -> 0
        i = torch.add(start[p:p + n, None], table, out=idx[:n])  # (n, w*w)
        out.scatter_reduce_(0, i.view(-1), v.view(-1), "amax")
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

    Float32 in [0, 1] on the landmarks' device, one channel per curve of ``schema``:
    exp(-D^2 / 2 sigma^2) for D < 3 sigma, else 0. Landmarks (numpy or torch) are in pixels of an
    ``image_size`` image (default ``size``) with pixel (i, j) centred at (x=j, y=i); they are scaled
    by size / image_size. ``sigma`` is in map pixels (default ``size / 64``: 1 px at 64 px).
    """
    image_size = size if image_size is None else image_size
    _check_sizes(size, image_size, sigma)
    pts, single = _as_batch(landmarks)
    _check_points(pts, schema)
    _check_inside(pts, image_size)
    sigma = size / 64 if sigma is None else float(sigma)
    if pts.shape[0] == 0:
        return torch.zeros(0, schema.n_curves, size, size, device=pts.device)
    coef = _span_coefficients(pts * (size / image_size), schema)  # (B, G, 4, 2) in map pixels
    dense, channel = _sample_spans(coef, _sample_counts(coef, SAMPLE_SPACING * sigma), schema)  # (B, S, 2)
    c = _render(dense, channel, schema.n_curves, int(size), sigma)
    return c[0] if single else c


# The curves a face hides as a whole when it turns to profile (the "profile" landmark convention): eyes and brows.
# The contour's hidden points slide to the silhouette instead, and the nose and lip curves fold onto the profile.
FACE68_OCCLUDABLE = ("left_eyebrow", "right_eyebrow", "left_upper_eyelid", "left_lower_eyelid",
                     "right_upper_eyelid", "right_lower_eyelid")


def drop_hidden_curves(c: Tensor, visible: Tensor, schema: Schema = FACE68,
                       curves: tuple[str, ...] = FACE68_OCCLUDABLE) -> Tensor:
    """Boundary map c (B, C, H, W) with the channel of each named curve zeroed where most of its points are hidden.

    visible (B, N) bool per landmark; a curve is dropped when fewer than half of its distinct points are visible.
    """
    keep = torch.ones(c.shape[:2], dtype=c.dtype, device=c.device)  # (B, C)
    for ch, (name, idx) in enumerate(schema.curves):
        if name in curves:
            points = sorted(set(idx))
            keep[:, ch] = (2 * visible[:, points].sum(1) >= len(points)).to(c.dtype)
    return c * keep[:, :, None, None]


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
