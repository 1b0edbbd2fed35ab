"""The synthetic faces up to profile: the default data unchanged, self-occlusion from the geometry, the profile
landmark convention and its boundary maps."""
import hashlib

import pytest
import torch

from afvae.boundaries import FACE68
from afvae.data import synthetic as S
from afvae.data.datasets import SyntheticFaces
from afvae.data.synthetic import geometry
from afvae.images import to_uint8

# sha256 of the uint8 renders and float32 landmarks of 8 identities x 8 sampled structures (seed 0, |yaw| <= 60),
# as the renderer drew them before it was extended to profile. Changing one is changing every data set, run and
# figure of the project: it must be deliberate.
DEFAULT_DATA_SHA256 = {
    32: "269e6f25f845da2e072b3776b8ac53a1ef000ec06b2e8e20ab57f652ac9928ce",
    64: "f472a926c0dc29d2ddf463f11159e0f626aa0e3250e56e36c8933f9c1687b125",
}
EYES_AND_BROWS = list(range(17, 27)) + list(range(36, 48))


def faces(n: int = 1, seed: int = 3) -> S.Appearance:
    return S.sample_appearance(n, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", [32, 64])
def test_default_data_are_bit_identical_to_before_profile(size):
    app, st = S.sample_identities(list(range(8)), 8, seed=0)
    assert float(st.yaw.abs().max()) <= 60
    x, lm = S.render(app.repeat_interleave(8), st, size)
    digest = hashlib.sha256(to_uint8(x).numpy().tobytes() + lm.numpy().tobytes()).hexdigest()
    assert digest == DEFAULT_DATA_SHA256[size]


def test_sample_structure_reaches_profile_only_when_asked():
    g = torch.Generator().manual_seed(0)
    assert float(S.sample_structure(500, g).yaw.abs().max()) <= 60
    wide = S.sample_structure(500, g, max_yaw=90).yaw.abs()
    assert 80 < float(wide.max()) <= 90
    with pytest.raises(ValueError, match="max_yaw"):
        S.sample_structure(4, g, max_yaw=120)


def test_far_eye_is_hidden_at_profile_and_visible_frontal():
    st = S.Structure.create(yaw=[0.0, 90.0, -90.0])
    vis = S.landmark_visibility(faces(1), st)
    assert vis[0, EYES_AND_BROWS].all()
    # yaw > 0 turns the face to the image right: the image-right eye (42-47, subject's left) turns away
    right_eye, left_eye = list(range(42, 48)), list(range(36, 42))
    assert not vis[1, right_eye].any() and vis[1, left_eye].all()
    assert not vis[2, left_eye].any() and vis[2, right_eye].all()
    # the nose bridge is the profile line: seen up to 75; at 90 the perspective camera sees just under half the head
    assert S.landmark_visibility(faces(1), S.Structure.create(yaw=[75.0, -75.0]))[:, 27:31].all()


def test_visibility_is_the_depth_test_not_the_pose():
    """A point on the back of the head is hidden at yaw 0; a landmark in front of every surface is not."""
    app = faces(1)
    st = S.Structure.create(yaw=[0.0])
    geom = geometry.head_geometry(app.shape, st.expression)
    eye = geometry.camera_in_head(geometry.head_rotation(st))
    back = torch.tensor([[[0.0, 0.1, -1.1]]])  # behind the cranium's centre, on the camera axis
    front = torch.tensor([[[0.0, 0.1, 2.0]]])  # in front of the face
    assert geometry.hidden(geom, back, eye).item() and not geometry.hidden(geom, front, eye).item()


def test_profile_contour_slides_to_the_silhouette():
    """At yaw +-90 a hidden contour point lands on the front of its slice of the skull (the profile outline),
    which for the axis-aligned cranium and jaw is nearly the slice's largest Z (the camera is 9 units away, so
    it sees a little less than the front half; near the chin it looks down on the jaw: those points are left out);
    visible points do not move."""
    app = faces(1)
    for yaw, far in ((90.0, slice(11, 17)), (-90.0, slice(0, 6))):
        st = S.Structure.create(yaw=[yaw])
        geom = geometry.head_geometry(app.shape, st.expression)
        pts = geometry.on_surface(geometry.face_xy(app.shape, st.expression, geom), geom)
        eye = geometry.camera_in_head(geometry.head_rotation(st))
        slid = geometry.profile_contour(geom, pts, eye)
        y = slid[0, far, 1]
        front = torch.stack([e.centre[0, 2] + e.radii[0, 2] * (1 - ((y - e.centre[0, 1]) / e.radii[0, 1]) ** 2)
                             .clamp_min(0).sqrt() for e in (geom["cranium"], geom["jaw"])]).amax(0)
        assert torch.allclose(slid[0, far, 2], front, atol=0.015)
        assert not geometry.hidden(geom, slid[:, far], eye, ("cranium", "jaw")).any()
        seen = ~geometry.hidden(geom, pts[:, :17], eye, ("cranium", "jaw"))
        assert torch.equal(slid[:, :17][seen], pts[:, :17][seen]) and seen.any()
        assert torch.equal(slid[:, 17:], pts[:, 17:])


def test_profile_convention_changes_landmarks_only_not_the_image():
    app, st = faces(1), S.Structure.create(yaw=[30.0, 75.0])
    x0, lm0 = S.render(app, st, 32)
    x1, lm1 = S.render(app, st, 32, occlusion="profile")
    assert torch.equal(x0, x1) and torch.equal(lm0[:, 17:], lm1[:, 17:])
    assert not torch.equal(lm0[:, :17], lm1[:, :17])
    assert torch.equal(lm1, S.landmarks(app, st, 32, occlusion="profile"))
    with pytest.raises(ValueError, match="occlusion"):
        S.render(app, st, 32, occlusion="ibug")


def test_profile_boundary_maps_drop_the_hidden_eye():
    ds = SyntheticFaces(size=32, n_identities=10, images_per_identity=1, split="test")
    st = S.Structure.create(yaw=[0.0, 90.0])
    out = ds.true_target(torch.tensor([0, 0]), st, occlusion="profile")
    ch = {name: i for i, name in enumerate(FACE68.curve_names)}
    energy = out["c"].sum((2, 3))  # (2, 13)
    assert (energy[0] > 0).all()
    for name in ("right_eyebrow", "right_upper_eyelid", "right_lower_eyelid"):
        assert energy[1, ch[name]] == 0
    for name in ("contour", "left_upper_eyelid", "nose_bridge", "upper_outer_lip"):
        assert energy[1, ch[name]] > 0
    plain = ds.true_target(torch.tensor([0, 0]), st)
    assert "visible" not in plain and (plain["c"].sum((2, 3))[1, ch["right_upper_eyelid"]] > 0)
    assert torch.equal(out["x"], plain["x"])
