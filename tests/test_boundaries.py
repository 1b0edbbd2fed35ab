"""afvae.boundaries: the LAB curve table, maps against an independent reference renderer, symmetries, validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import make_interp_spline
from scipy.spatial import cKDTree

from afvae.boundaries import (
    CAT9,
    FACE68,
    FACE68_MIRROR,
    HAND21,
    SCHEMAS,
    Schema,
    boundary_map,
    dense_curves,
    mean_face_landmarks,
    merged_map,
)

# The LAB paper's 68-point grouping (iBUG order), typed in by hand.
LAB_TABLE = [
    ("contour", list(range(0, 17))),
    ("left_eyebrow", list(range(17, 22))),
    ("right_eyebrow", list(range(22, 27))),
    ("nose_bridge", list(range(27, 31))),
    ("nose_bottom", list(range(31, 36))),
    ("left_upper_eyelid", [36, 37, 38, 39]),
    ("left_lower_eyelid", [36, 41, 40, 39]),
    ("right_upper_eyelid", [42, 43, 44, 45]),
    ("right_lower_eyelid", [42, 47, 46, 45]),
    ("upper_outer_lip", list(range(48, 55))),
    ("upper_inner_lip", list(range(60, 65))),
    ("lower_inner_lip", [60, 67, 66, 65, 64]),
    ("lower_outer_lip", [48, 59, 58, 57, 56, 55, 54]),
]

# The standard iBUG 68 left-right pairs (0-based); points not listed map to themselves.
MIRROR_PAIRS = (
    [(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)]
    + [(31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]
)


def faces(n: int, size: int, seed: int = 0, jitter: float = 1.0) -> torch.Tensor:
    """(n, 68, 2) mean faces in a size-px image, each point moved by Gaussian noise of ``jitter * size / 64`` px."""
    g = torch.Generator().manual_seed(seed)
    return mean_face_landmarks(size) + torch.randn(n, 68, 2, generator=g) * jitter * size / 64


def random_points(schema: Schema, n: int, size: int, seed: int = 0) -> torch.Tensor:
    """(n, N, 2) points spread uniformly over the middle of the image."""
    g = torch.Generator().manual_seed(seed)
    return size * (0.2 + 0.6 * torch.rand(n, schema.n_points, 2, generator=g))


def reference_map(landmarks: np.ndarray, size: int, sigma: float, schema: Schema = FACE68) -> np.ndarray:
    """(N, 2) -> (C, size, size) by the recipe, one item and one curve at a time, without torch.

    Drop consecutive duplicates, scipy spline through the points (uniform parameter, degree
    min(3, n-1)), 4000 samples, exact nearest-sample distance D by KD-tree, exp(-D^2/2s^2) for D < 3s.
    """
    rows, cols = np.mgrid[0:size, 0:size]
    pixels = np.stack([cols.ravel(), rows.ravel()], 1).astype(np.float64)  # pixel (i, j) has centre (x=j, y=i)
    out = []
    for _, idx in schema.curves:
        p = landmarks[list(idx)].astype(np.float64)
        p = p[np.r_[True, np.any(np.diff(p, axis=0) != 0, axis=1)]]
        t = np.arange(len(p), dtype=np.float64)
        curve = make_interp_spline(t, p, k=min(3, len(p) - 1))(np.linspace(0, t[-1], 4000)) if len(p) > 1 else p
        d, _ = cKDTree(curve).query(pixels)
        out.append((np.exp(-(d**2) / (2 * sigma**2)) * (d < 3 * sigma)).reshape(size, size))
    return np.stack(out)


# --------------------------------------------------------------------------------------------- schemas

def test_face68_is_the_lab_table() -> None:
    assert [(name, list(idx)) for name, idx in FACE68.curves] == LAB_TABLE
    assert sorted(set().union(*[set(idx) for _, idx in FACE68.curves])) == list(range(68))
    curves = dict(FACE68.curves)
    for upper, lower in [("left_upper_eyelid", "left_lower_eyelid"), ("right_upper_eyelid", "right_lower_eyelid"),
                         ("upper_outer_lip", "lower_outer_lip"), ("upper_inner_lip", "lower_inner_lip")]:
        assert (curves[upper][0], curves[upper][-1]) == (curves[lower][0], curves[lower][-1])  # shared corners


def test_other_schemas() -> None:
    assert SCHEMAS == {"face68": FACE68, "hand21": HAND21, "cat9": CAT9}
    assert [idx[0] for _, idx in HAND21.curves] == [0] * 5
    assert [idx[-1] for _, idx in HAND21.curves] == [4, 8, 12, 16, 20]
    assert sorted(set().union(*[set(idx) for _, idx in HAND21.curves])) == list(range(21))
    assert sorted(set().union(*[set(idx) for _, idx in CAT9.curves])) == list(range(9))
    with pytest.raises(ValueError, match="outside"):
        Schema("bad", 3, (("c", (0, 3)),))
    with pytest.raises(ValueError, match="at least 2 points"):
        Schema("bad", 3, (("c", (1,)),))


def test_mirror_permutation_is_ibug() -> None:
    perm = list(range(68))
    for a, b in MIRROR_PAIRS:
        perm[a], perm[b] = b, a
    assert list(FACE68_MIRROR) == perm


def test_mean_face_is_a_plausible_ibug_face() -> None:
    lm = mean_face_landmarks(256)
    x, y = lm[:, 0], lm[:, 1]
    assert lm.shape == (68, 2) and bool(((lm > 0) & (lm < 255)).all())
    assert x[36:42].mean() < x[27:31].mean() < x[42:48].mean()  # left eye, nose, right eye
    assert y[17:27].max() < y[36:48].min()  # brows above the eyes
    assert y[36:48].max() < y[31:36].min() < y[48:68].min()  # eyes, nose, mouth
    assert int(y[:17].argmax()) == 8  # chin
    mirrored = lm[list(FACE68_MIRROR)] * torch.tensor([-1.0, 1.0]) + torch.tensor([255.0, 0.0])
    assert torch.allclose(mirrored, lm, atol=1e-3)  # symmetric


# --------------------------------------------------------------------------------------------- maps

def test_map_shape_dtype_and_range() -> None:
    lm = faces(3, 64)
    c = boundary_map(lm, 64)
    assert c.shape == (3, 13, 64, 64) and c.dtype == torch.float32
    assert float(c.min()) == 0.0 and 0.99 < float(c.max()) <= 1.0
    assert bool((c.amax(dim=(2, 3)) > 0.9).all())  # every curve is drawn
    single = boundary_map(lm[1].double().numpy(), 64)
    assert single.shape == (13, 64, 64) and torch.equal(single, c[1])
    m = merged_map(c)
    assert m.shape == (3, 1, 64, 64) and torch.equal(m[:, 0], c.amax(1))


def test_peak_on_the_landmarks() -> None:
    lm = faces(2, 64, seed=1, jitter=0.5).round()
    c = boundary_map(lm, 64)
    for ch, (_, idx) in enumerate(FACE68.curves):
        x, y = lm[:, list(idx), 0].long(), lm[:, list(idx), 1].long()  # (2, n)
        values = c[torch.arange(2)[:, None], ch, y, x]
        assert bool((values > 1 - 1e-5).all()), (ch, values)


def test_far_pixels_are_exactly_zero_and_near_ones_are_not() -> None:
    lm, size = faces(1, 64, seed=2)[0], 64
    c = boundary_map(lm, size)
    rows, cols = np.mgrid[0:size, 0:size]
    pixels = np.stack([cols.ravel(), rows.ravel()], 1)
    for ch, curve in enumerate(dense_curves(lm, samples_per_segment=200)):
        d = cKDTree(curve.numpy()).query(pixels)[0].reshape(size, size)
        assert bool((c[ch][torch.from_numpy(d > 3.05)] == 0).all())
        assert bool((c[ch][torch.from_numpy(d < 2.95)] > 0).all())
    assert bool((c[:, :10, :10] == 0).all())  # the top-left corner is far from the face


@pytest.mark.parametrize("size", [64, 128])
def test_matches_reference_renderer(size: int) -> None:
    lm = faces(2, size, seed=size)
    c = boundary_map(lm, size).numpy()
    for b in range(2):
        ref = reference_map(lm[b].numpy(), size, sigma=size / 64)
        assert np.abs(c[b] - ref).max() < 0.02


@pytest.mark.parametrize("schema", [HAND21, CAT9])
def test_other_schemas_match_reference_renderer(schema: Schema) -> None:
    lm = random_points(schema, 2, 64, seed=3)
    c = boundary_map(lm, 64, schema=schema, sigma=1.5).numpy()
    assert c.shape == (2, schema.n_curves, 64, 64)
    for b in range(2):
        assert np.abs(c[b] - reference_map(lm[b].numpy(), 64, 1.5, schema)).max() < 0.02


def test_straight_line_has_the_closed_form_profile() -> None:
    line = Schema("line", 2, (("line", (0, 1)),))
    c = boundary_map(np.array([[10.0, 20.0], [50.0, 20.0]]), 128, schema=line)[0]  # default sigma = 2 px
    profile = c[12:29, 30].numpy()  # column 30, rows 12..28: distance |row - 20|
    d = np.abs(np.arange(12, 29) - 20.0)
    assert np.allclose(profile, np.exp(-(d**2) / 8) * (d < 6), atol=0.012)
    assert float(c[20, 56]) == 0.0 and float(c[20, 55]) > 0.0  # 6 and 5 px beyond the end point


def test_mirrored_face_gives_the_flipped_map() -> None:
    lm = faces(2, 64, seed=4)
    mirrored = lm[:, list(FACE68_MIRROR)] * torch.tensor([-1.0, 1.0]) + torch.tensor([63.0, 0.0])  # x -> W-1-x
    names = list(FACE68.curve_names)
    swap = [names.index(n.replace("left", "@").replace("right", "left").replace("@", "right")) for n in names]
    assert swap != list(range(13))
    expected = boundary_map(lm, 64).flip(-1)[:, swap]
    assert torch.allclose(boundary_map(mirrored, 64), expected, atol=1e-5)


def test_batch_equals_items() -> None:
    lm = faces(4, 64, seed=5)
    lm[1] = 32 + (lm[1] - 32) * 0.5  # a small face needs fewer samples than the rest of its batch
    c = boundary_map(lm, 64)
    for b in range(4):
        assert torch.allclose(c[b], boundary_map(lm[b], 64), atol=1e-6)


def test_resolution_scaling() -> None:
    lm = faces(2, 256, seed=6)
    assert torch.allclose(boundary_map(lm, 64, image_size=256), boundary_map(lm / 4, 64), atol=1e-5)
    assert boundary_map(lm, 32, image_size=256).shape == (2, 13, 32, 32)


def test_duplicate_points_stay_finite() -> None:
    lm = faces(1, 64, seed=7)[0]
    lm[37] = lm[36]  # a zero-length span
    lm[27:31] = lm[27]  # a whole curve collapsed to one point
    c = boundary_map(lm, 64)
    assert bool(torch.isfinite(c).all()) and float(c.max()) <= 1.0
    for curve in dense_curves(lm):
        assert bool(torch.isfinite(curve).all())
    x, y = lm[27].round().long()
    assert float(c[3, y, x]) > 0.7 and float(c[3].sum()) < 40  # a single blob


def test_dense_curves_pass_through_the_points() -> None:
    lm = faces(2, 64, seed=8)
    curves = dense_curves(lm, samples_per_segment=5)
    assert len(curves) == 13
    for curve, (_, idx) in zip(curves, FACE68.curves):
        assert curve.shape == (2, (len(idx) - 1) * 5 + 1, 2)
        assert torch.allclose(curve[:, ::5], lm[:, list(idx)], atol=1e-4)
    line = dense_curves(np.array([[0.0, 0.0], [10.0, 5.0]]), Schema("line", 2, (("l", (0, 1)),)), 10)[0]
    assert torch.allclose(line, torch.linspace(0, 1, 11)[:, None] * torch.tensor([10.0, 5.0]), atol=1e-5)


# --------------------------------------------------------------------------------------------- validation

@pytest.mark.parametrize(
    "landmarks, kwargs, message",
    [
        (torch.zeros(67, 2) + 30, {}, r"expected 68 landmarks \(face68\), got 67"),
        (torch.zeros(2, 68, 3) + 30, {}, r"dimension of 2 \(x, y\), got shape \(2, 68, 3\)"),
        (torch.zeros(68) + 30, {}, r"shape \(N, 2\) or \(B, N, 2\)"),
        (torch.zeros(9, 2) + 30, {"schema": FACE68}, r"expected 68 landmarks \(face68\), got 9"),
        (torch.zeros(5, 9, 2) + 30, {"schema": HAND21}, r"expected 21 landmarks \(hand21\), got 9"),
        (None, {"size": 0}, r"size must be a positive integer, got 0"),
        (None, {"size": 64.0}, r"size must be a positive integer"),
        (None, {"image_size": -5}, r"image_size must be a positive integer, got -5"),
        (None, {"sigma": 0.0}, r"sigma must be positive"),
    ],
)
def test_bad_arguments_raise(landmarks: torch.Tensor | None, kwargs: dict, message: str) -> None:
    landmarks = mean_face_landmarks(64) if landmarks is None else landmarks
    with pytest.raises(ValueError, match=message):
        boundary_map(landmarks, **{"size": 64, **kwargs})


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_landmarks_name_the_sample(bad: float) -> None:
    lm = faces(3, 64)
    lm[2, 40, 1] = bad
    with pytest.raises(ValueError, match=r"NaN or inf: sample 2, points \[40\]"):
        boundary_map(lm, 64)


def test_far_outside_landmarks_name_the_points() -> None:
    lm = faces(2, 256)
    lm[1, 7, 0] = 400.0  # more than 128 px right of a 256-px image
    lm[1, 9, 1] = -140.0
    with pytest.raises(ValueError, match=r"far outside the 256x256 image .* sample 1, points \[7, 9\]"):
        boundary_map(lm, 64, image_size=256)
    lm[1, 7, 0], lm[1, 9, 1] = 300.0, -100.0  # outside, but within half an image: allowed
    assert bool(torch.isfinite(boundary_map(lm, 64, image_size=256)).all())
