"""Face alignment: one similarity transform (rotation, uniform scale, translation) onto a canonical template.

The same recipe for every source: a few anchor points of the landmarks (the two eye centres and the two
mouth corners for ``face68``) are fitted in the least-squares sense (Umeyama 1991, no reflection) to a
template; the image is warped with that 2x3 matrix (bilinear, PIL) and the landmarks are mapped with the
same matrix, so image and landmarks stay consistent to a fraction of a pixel.

The ``face68`` template is the synthetic face of ``afvae.boundaries.mean_face_landmarks(256)`` (eye centres
at about (92, 107) and (163, 107), mouth corners at (99, 186) and (156, 186) in a 256 crop): real faces come
out framed like the embedded synthetic ones. Templates are defined for a 256 crop and scaled to any size
keeping pixel centres: ``x' = (x + 0.5) * size / 256 - 0.5``.

Pixel convention (as in ``afvae.boundaries``): pixel (row i, column j) is centred at (x=j, y=i). PIL's
affine transform works with pixel corners, which ``warp_image`` converts.
"""
from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import numpy as np
from PIL import Image

from afvae.boundaries import CAT9, FACE68, Schema, mean_face_landmarks

Anchors = Literal["auto", "eyes_mouth", "eyes", "all", "box"]
TEMPLATE_SIZE = 256
BOX_FILL = 0.8  # "box" alignment: the keypoints' bounding box fills 80 % of the crop
_CAT9_TEMPLATE = ((92.0, 115.0), (163.0, 115.0), (127.5, 169.0))  # left eye, right eye, mouth in a 256 crop


class Aligned(NamedTuple):
    """An aligned crop: image (size, size, 3) uint8, landmarks (N, 2) pixels, matrix (2, 3) source -> crop."""

    image: np.ndarray
    landmarks: np.ndarray
    matrix: np.ndarray


def _face68_anchors(landmarks: np.ndarray, anchors: str) -> np.ndarray:
    """(68, 2) -> anchor points: eye centres (+ mouth corners 48, 54) or all 68."""
    if anchors == "all":
        return landmarks
    eyes = np.stack([landmarks[36:42].mean(0), landmarks[42:48].mean(0)])  # (2, 2)
    return eyes if anchors == "eyes" else np.concatenate([eyes, landmarks[[48, 54]]])  # (4, 2)


def anchor_points(landmarks: np.ndarray, schema: Schema = FACE68, anchors: Anchors = "auto") -> np.ndarray:
    """Landmarks (N, 2) -> the points the alignment fits, (K, 2); ``anchors`` as in ``align_face``."""
    anchors = resolve_anchors(schema, anchors)
    pts = np.asarray(landmarks, dtype=np.float64)
    if schema.name == FACE68.name:
        return _face68_anchors(pts, anchors)
    if schema.name == CAT9.name:
        return pts[:2] if anchors == "eyes" else pts[:3]
    raise ValueError(f"schema {schema.name!r} has no anchor template; use anchors='box'")


def resolve_anchors(schema: Schema, anchors: Anchors) -> str:
    """'auto' -> 'eyes_mouth' for face68 and cat9, 'box' for other schemas; validates the rest."""
    choices = {FACE68.name: ("eyes_mouth", "eyes", "all", "box"), CAT9.name: ("eyes_mouth", "eyes", "box")}
    allowed = choices.get(schema.name, ("box",))
    if anchors == "auto":
        return allowed[0]
    if anchors not in allowed:
        raise ValueError(f"anchors {anchors!r} not available for schema {schema.name!r}; choose from {allowed}")
    return anchors


@functools.lru_cache(maxsize=8)
def _template_256(schema_name: str, anchors: str) -> np.ndarray:
    if schema_name == FACE68.name:
        return _face68_anchors(mean_face_landmarks(TEMPLATE_SIZE).double().numpy(), anchors)
    cat = np.asarray(_CAT9_TEMPLATE)
    return cat[:2] if anchors == "eyes" else cat


def template(size: int = TEMPLATE_SIZE, schema: Schema = FACE68, anchors: Anchors = "auto") -> np.ndarray:
    """Canonical anchor positions (K, 2) in pixels of a size x size crop (defined at 256, scaled by centres)."""
    anchors = resolve_anchors(schema, anchors)
    if anchors == "box":
        raise ValueError("'box' alignment has no template: it centres the keypoints' bounding box")
    return (_template_256(schema.name, anchors) + 0.5) * (size / TEMPLATE_SIZE) - 0.5


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src (K, 2) onto dst (K, 2).

    Umeyama's closed form without reflections; returns the 2x3 matrix M with ``dst ~ M[:, :2] @ p + M[:, 2]``.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d  # (K, 2) centred
    var_s = (s**2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("anchor points coincide: no similarity transform")
    U, S, Vt = np.linalg.svd(d.T @ s / len(src))  # cross-covariance (2, 2)
    flip = np.diag([1.0, np.sign(np.linalg.det(U @ Vt)) or 1.0])  # keep det(R) = +1
    R = U @ flip @ Vt
    scale = np.trace(np.diag(S) @ flip) / var_s
    return np.hstack([scale * R, (mu_d - scale * R @ mu_s)[:, None]])  # (2, 3)


def box_transform(landmarks: np.ndarray, size: int, fill: float = BOX_FILL) -> np.ndarray:
    """Scale + translation (no rotation) putting the bounding box of landmarks (N, 2) centred, ``fill`` of the crop."""
    pts = np.asarray(landmarks, np.float64)
    lo, hi = pts.min(0), pts.max(0)
    k = fill * size / max(float((hi - lo).max()), 1e-6)
    centre = (size - 1) / 2
    return np.array([[k, 0.0, centre - k * (lo[0] + hi[0]) / 2], [0.0, k, centre - k * (lo[1] + hi[1]) / 2]])


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points (N, 2) -> M[:, :2] @ p + M[:, 2], (N, 2) float32."""
    pts = np.asarray(points, np.float64)
    return (pts @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def _reduce(image: Image.Image, matrix: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """Box-downsample by the largest integer factor f <= 1 / scale (bilinear alone would alias), fold it into M.

    Reduced pixel j averages source pixels j*f .. j*f + f - 1, centred at x = f * j + (f - 1) / 2.
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    f = int(1.0 / scale) if scale > 0 else 1
    if f < 2:
        return image, matrix
    up = np.array([[f, 0.0, (f - 1) / 2], [0.0, f, (f - 1) / 2], [0.0, 0.0, 1.0]])  # reduced -> source
    return image.reduce(f), matrix @ up


def warp_image(image: np.ndarray, matrix: np.ndarray, size: int, fill: int = 0) -> np.ndarray:
    """Image (H, W, 3) uint8 warped by the 2x3 matrix (source -> output pixels) into (size, size, 3), bilinear.

    Pixels that come from outside the source are ``fill``. Shrinking by 2x or more box-filters first.
    """
    pil, m = _reduce(Image.fromarray(np.ascontiguousarray(image)), np.asarray(matrix, np.float64))
    inv = np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]]))[:2]  # output -> source, pixel centres
    # PIL maps output pixel corners to source corners: u = x + 0.5 on both sides.
    data = np.hstack([inv[:, :2], (inv[:, 2] + 0.5 - inv[:, :2].sum(1) * 0.5)[:, None]])
    out = pil.transform((size, size), Image.AFFINE, tuple(data.ravel()), resample=Image.BILINEAR,
                        fillcolor=(fill,) * 3)
    return np.asarray(out)


def alignment_matrix(landmarks: np.ndarray, size: int, schema: Schema = FACE68, anchors: Anchors = "auto"
                     ) -> np.ndarray:
    """The 2x3 similarity taking landmarks (N, 2) of a source image into a size x size aligned crop."""
    if resolve_anchors(schema, anchors) == "box":
        return box_transform(landmarks, size)
    return similarity_transform(anchor_points(landmarks, schema, anchors), template(size, schema, anchors))


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = TEMPLATE_SIZE, *, schema: Schema = FACE68,
               anchors: Anchors = "auto", fill: int = 0) -> Aligned:
    """Align one image (H, W, 3) uint8 with its landmarks (N, 2) pixels to a size x size crop.

    ``anchors``: 'eyes_mouth' (face68 / cat9 default: least squares on eye centres and mouth corners, or
    eyes and mouth for cats), 'eyes' (exact two-point fit), 'all' (all 68 points), 'box' (no rotation: the
    keypoints' bounding box centred, the default for schemas without a template such as hand21).
    Returns the crop, the landmarks mapped by the same matrix (N, 2) float32, and the matrix (2, 3).
    """
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (schema.n_points, 2):
        raise ValueError(f"expected landmarks of shape ({schema.n_points}, 2) for {schema.name}, got {landmarks.shape}")
    m = alignment_matrix(landmarks, size, schema, anchors)
    return Aligned(warp_image(image, m, size, fill), transform_points(landmarks, m), m)
