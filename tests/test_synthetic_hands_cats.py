"""The procedural hands and cats: exact keypoints, paired renders, determinism, identity split, datasets."""
import math

import pytest
import torch

from afvae.boundaries import CAT9, HAND21, boundary_map
from afvae.config import DataConfig, get_config
from afvae.data import synthetic as S
from afvae.data.datasets import SyntheticFaces, build_dataset, for_data
from afvae.data.synthetic import cats, hands, shading
from afvae.evaluate import factor_columns

SUBJECTS = {"hands": (S.HANDS, hands), "cats": (S.CATS, cats)}
POSES = {  # a spread of structures, extremes included
    "hands": S.HandStructure.create(flexion=torch.tensor([[0.0] * 5, [1.0] * 5, [0.2, 0.9, 0.0, 0.9, 0.9],
                                                          [0.6, 0.3, 0.7, 0.5, 0.1], [0.5] * 5,
                                                          [0.0, 1.0, 1.0, 0.0, 0.0]]),
                                    spread=[0.5, 0.0, 1.0, 0.3, 0.8, 0.6], wrist=[0.0, -70.0, 70.0, 35.0, -30.0, 10.0],
                                    roll=[0.0, 30.0, -30.0, 10.0, -15.0, 25.0]),
    "cats": S.CatStructure.create(yaw=[0.0, 45.0, -45.0, 20.0, -10.0, 30.0], pitch=[0.0, 20.0, -20.0, 5.0, 10.0, -15.0],
                                  roll=[0.0, -20.0, 20.0, 10.0, 0.0, -5.0], ears=[0.0, 1.0, -1.0, 0.5, -0.5, 1.0],
                                  eyes=[1.0, 0.0, 0.5, 1.0, 0.2, 0.8], mouth=[0.0, 1.0, 0.5, 0.0, 0.7, 0.3]),
}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rays_through(points: torch.Tensor, size: int) -> shading.Rays:
    """One ray through each pixel point (B, P, 2): a (B, 1, P) raster of rays a pixel wide."""
    cam = S.Camera.for_size(size)
    u, v = ((points[..., 0] - cam.cx) / cam.f)[:, None], ((cam.cy - points[..., 1]) / cam.f)[:, None]
    return shading.Rays(u, v, 1 / cam.f)


@pytest.mark.parametrize("name", SUBJECTS)
def test_keypoints_lie_on_the_drawn_subject(name):
    """The ray through each keypoint meets the drawn subject: inside its soft silhouette (coverage over 0.5, or
    exactly 0.5 on an ear's tip), and its first surface is no further than the keypoint's own depth."""
    subject, module = SUBJECTS[name]
    size, st = 64, POSES[name]
    app = subject.sample_appearance(len(st), gen(1))
    kp = subject.keypoints(app, st, size)
    hit = module.layer(app, st, rays_through(kp, size))  # (B, 1, P)
    assert hit.alpha.shape == (len(st), 1, subject.schema.n_points)
    if name == "cats":
        pts = cats.head_points(app.shape, st) @ cats.head_rotation(st).transpose(1, 2)
        corners = cats.ears(app.shape, st.ears).flatten(1, 2) @ cats.head_rotation(st).transpose(1, 2)
        assert torch.allclose(pts[:, 3:], corners), "ear keypoints are the ear triangles' corners"
    else:
        rot, t = hands.hand_pose(st)
        pts = hands.skeleton(app.shape, st).joints @ rot.transpose(1, 2) + t[:, None]
    tips = [4, 7] if name == "cats" else []  # the ear tips lie on the silhouette's edge: coverage 0.5
    inner = [k for k in range(subject.schema.n_points) if k not in tips]
    assert (hit.alpha[:, 0, tips] > 0.499).all(), "ear tips on the drawn ears"
    assert (hit.alpha[:, 0, inner] > 0.55).all(), f"{(hit.alpha[:, 0, inner] <= 0.55).sum()} keypoints off the {name}"
    depth = (S.CAMERA_DISTANCE - pts[..., 2])[:, inner]  # the ray parameter of each keypoint (rays are (u, v, -1))
    t = hit.t[:, 0, inner]
    solid = t < 100  # some surface half covers the ray (not only several soft edges together)
    assert solid.float().mean() > 0.9 and (t <= depth + 1e-3)[solid].all(), "the first surface is not behind a keypoint"


def test_cat_features_are_painted_at_their_keypoints():
    """A white cat with blue eyes: the eye keypoints show iris or pupil, an open mouth's keypoint its dark inside."""
    app = S.sample_cat_appearance(4, gen(2))
    white = torch.full_like(app.fur, 0.92)
    app = app.replace(fur=white, fur2=white, pattern=torch.tensor([[1.0, 0.0, 0.0]]).expand(4, 3),
                      iris=torch.tensor([[0.15, 0.35, 0.95]]).expand(4, 3))
    st = S.CatStructure.create(yaw=[0.0, 15.0, -15.0, 0.0], roll=[0.0, 10.0, -10.0, 5.0], mouth=1.0, eyes=1.0)
    x, kp = S.CATS.render(app, st, 128)
    at = lambda p: (x[torch.arange(4), :, p[:, 1].round().long(), p[:, 0].round().long()] + 1) / 2  # noqa: E731
    for eye in (0, 1):
        r, g, b = at(kp[:, eye]).unbind(-1)
        assert ((b > r + 0.2) | (r + g + b < 0.6)).all(), "iris blue or a dark pupil at the eye keypoint"
    r, g, b = at(kp[:, 2]).unbind(-1)
    assert ((r > g + 0.1) & (r + g + b < 1.5)).all(), "the open mouth's dark red inside at the mouth keypoint"
    closed = S.CATS.keypoints(app, st.replace(eyes=torch.zeros(4)), 128)
    assert (closed[:, :2, 1] > kp[:, :2, 1] + 1).all(), "closing the eyes lowers their keypoints"


@pytest.mark.parametrize("name", SUBJECTS)
def test_keypoints_turn_exactly_with_the_in_plane_rotation(name):
    """Rolling the subject by a turns its keypoints about the principal point by a, clockwise in pixel rows."""
    subject, _ = SUBJECTS[name]
    size, st = 64, POSES[name]
    app = subject.sample_appearance(len(st), gen(3))
    base = subject.keypoints(app, st, size)
    a = 23.0
    turned = subject.keypoints(app, st.replace(roll=st.roll + a), size)
    cam = S.Camera.for_size(size)
    c, s = math.cos(math.radians(a)), math.sin(math.radians(a))
    dx, dy = base[..., 0] - cam.cx, base[..., 1] - cam.cy
    expected = torch.stack([cam.cx + c * dx + s * dy, cam.cy - s * dx + c * dy], -1)
    assert torch.allclose(turned, expected, atol=1e-3)
    assert (turned - base).abs().amax() > 3


@pytest.mark.parametrize("name", SUBJECTS)
def test_structure_moves_only_structure_and_colours_only_colours(name):
    """One identity under two structures: the same background wherever the subject is absent, different keypoints;
    two identities differing only in colours under one structure: the same keypoints and silhouette."""
    subject, module = SUBJECTS[name]
    size, st = 64, POSES[name]
    app = subject.sample_appearance(2, gen(4))
    one = app.index(0)
    x, kp = subject.render(one, st, size)
    alpha = module.layer(one.index([0] * len(st)), st, shading.grid_rays(size, size)).alpha  # (B, H, W)
    empty = (alpha == 0).all(0)  # pixels no pose covers
    assert empty.float().mean() > 0.2 and (x[:, :, empty] == x[:1, :, empty]).all(), "the background is the identity's"
    assert (kp[1:] - kp[:1]).abs().amax(-1).amax(-1).min() > 1, "every structure moves some keypoint"
    recoloured = app.index(1).replace(shape=one.shape)
    x2, kp2 = subject.render(recoloured, st, size)
    assert torch.equal(kp, kp2)
    assert torch.equal(alpha, module.layer(recoloured.index([0] * len(st)), st, shading.grid_rays(size, size)).alpha)
    assert (x - x2).abs().mean() > 0.05
    small, large = (subject.keypoints(one.replace(shape=torch.full_like(one.shape, v)), st, size) for v in (-1.0, 1.0))
    assert (large - small).abs().amax() > 1, "identity proportions move keypoints"


@pytest.mark.parametrize("name", SUBJECTS)
def test_renders_are_deterministic_by_seed(name):
    subject, _ = SUBJECTS[name]

    def draw(seed):
        app, st = subject.identities(range(3), 2, seed)
        return subject.render(app.repeat_interleave(2), st, 32)

    (x1, k1), (x2, k2), (x3, k3) = draw(0), draw(0), draw(1)
    assert x1.shape == (6, 3, 32, 32) and k1.shape == (6, subject.schema.n_points, 2)
    assert x1.min() >= -1 and x1.max() <= 1
    assert torch.equal(x1, x2) and torch.equal(k1, k2)
    assert (x1 - x3).abs().mean() > 0.05 and (k1 - k3).abs().mean() > 0.5
    app, st = subject.identities([7], 3, 5)
    assert torch.equal(subject.identities([2, 7], 3, 5)[1].to_vector()[3:], st.to_vector()), "per-identity streams"


@pytest.mark.parametrize("source, schema", [("synthetic-hands", HAND21), ("synthetic-cats", CAT9)])
def test_dataset_builds_at_32_px_with_paired_ground_truth(source, schema):
    cfg = for_data(get_config("smoke"), source)
    assert cfg.data.boundary_channels == cfg.model.boundary_channels == schema.n_curves
    data = DataConfig(source=source, size=32, n_identities=10, images_per_identity=3,
                      boundary_channels=schema.n_curves, seed=2)
    train, test = build_dataset(data, "train"), build_dataset(data, "test")
    ids_train, ids_test = set(train.identity.tolist()), set(test.identity.tolist())
    assert not ids_train & ids_test and len(ids_train | ids_test) == 10 and len(ids_test) == 1
    assert len(train) == 27 and len(test) == 3
    b = train.get_batch(torch.tensor([0, 4]))
    assert b["x"].shape == (2, 3, 32, 32) and b["landmarks"].shape == (2, schema.n_points, 2)
    assert b["c"].shape == (2, schema.n_curves, 32, 32) and b["c"].max() > 0.5
    assert torch.equal(b["c"], boundary_map(b["landmarks"], 32, schema=schema)), "the schema's own curves"
    n_app, n_st = (len(c) for c in train.subject.columns())
    assert b["appearance"].shape == (2, n_app) and b["structure"].shape == (2, n_st)
    same = torch.nonzero(train.identity == train.identity[0])[:, 0]  # the first identity's three items
    truth = train.true_target(same[:1].expand(3), train.structure.index(same))  # item 0 under its siblings' poses
    assert torch.equal(truth["x"], train.get_batch(same)["x"]), "true targets are the stored renders"
    assert torch.allclose(truth["landmarks"], train.landmarks[same]) and truth["c"].shape[1] == schema.n_curves
    new = train.subject.structure.create(roll=[40.0])
    moved = train.true_target(torch.tensor([0]), new)
    assert (moved["landmarks"] - train.landmarks[:1]).abs().amax() > 1
    pair = test.render_pair(torch.tensor([0]), torch.tensor([2]))
    assert pair["x_target"].shape == (1, 3, 32, 32) and pair["c_target"].shape == (1, schema.n_curves, 32, 32)
    cols = factor_columns(2 * schema.n_points + n_app + n_st, schema.n_points)
    assert len(cols["appearance"]) == n_app and len(cols["structure"]) == n_st and "expression" not in cols
    with pytest.raises(ValueError, match=f"{schema.n_curves} curves"):
        SyntheticFaces(32, 10, 1, boundary_channels=13, subject=train.subject)


def test_subject_figure_shows_identities_by_structures_with_keypoints():
    from afvae import plotting

    fig = plotting.plot_synthetic_subjects(n_identities=1, size=32, seed=0)
    axes = fig.get_axes()
    assert len(axes) == 2 * 5
    for ax, name in zip(axes[::5], ("hands", "cats")):
        schema = S.SUBJECTS[name].schema
        image = ax.get_images()[0].get_array()
        assert image.shape == (32, 32, 3) and image.std() > 0.05, "a drawn image, not a blank"
        assert len(ax.get_lines()) == schema.n_curves and len(ax.collections[0].get_offsets()) == schema.n_points
    plotting.plt.close(fig)
