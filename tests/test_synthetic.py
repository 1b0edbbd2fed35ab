"""The embedded synthetic faces: determinism, landmark geometry, image <-> landmark agreement, datasets."""
import importlib
import json

import pytest
import torch

from afvae.data import synthetic as S
from afvae.data.datasets import FolderFaces, SyntheticFaces, collate, export_synthetic
from afvae.data.synthetic import raster, render_cache, shading
from afvae.images import to_uint8


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def identities(n: int, seed: int = 0, **fields: float) -> S.Appearance:
    """n sampled identities with some scalar fields overridden (e.g. glasses=0)."""
    app = S.sample_appearance(n, gen(seed))
    return app.replace(**{k: torch.full_like(getattr(app, k), v) for k, v in fields.items()})


def at(img: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Colours (B, 3) in [0, 1] of images (B, 3, H, W) at pixel points (B, 2), nearest pixel centre."""
    j, i = pts.round().long().unbind(-1)
    return (img[torch.arange(len(img)), :, i, j] + 1) / 2


def luma(rgb: torch.Tensor) -> torch.Tensor:
    return rgb @ torch.tensor([0.299, 0.587, 0.114])


def mirror(lm: torch.Tensor, size: int) -> torch.Tensor:
    """Landmarks of the horizontally flipped image."""
    flipped = torch.stack([size - 1 - lm[..., 0], lm[..., 1]], -1)
    return flipped[:, list(S.MIRROR)]


def test_render_is_deterministic_by_seed():
    threads = torch.get_num_threads()
    def draw(seed):
        app, st = S.sample_appearance(3, gen(seed)), S.sample_structure(3, gen(seed + 100))
        return S.render(app, st, 32)

    (x1, l1), (x2, l2), (x3, l3) = draw(0), draw(0), draw(1)
    assert x1.shape == (3, 3, 32, 32) and l1.shape == (3, 68, 2) and x1.dtype == torch.float32
    assert x1.min() >= -1 and x1.max() <= 1
    assert torch.equal(x1, x2) and torch.equal(l1, l2)
    assert (x1 - x3).abs().mean() > 0.05 and (l1 - l3).abs().mean() > 0.5
    assert torch.get_num_threads() == threads, "render restores the thread setting"


def test_identities_depend_on_the_seed():
    """Each (seed, identity) has its own generator; seed 0 keeps identity i on generator seed i."""
    a0, s0 = S.sample_identities([0, 5], 2, 0)
    a1, _ = S.sample_identities([0, 5], 2, 1)
    assert torch.equal(a0.to_vector(), S.sample_identities([0, 5], 2, 0)[0].to_vector())
    assert (a0.to_vector() - a1.to_vector()).abs().amax(1).min() > 0.1, "another seed, other people"
    assert torch.equal(a0.index(1).to_vector(), S.sample_appearance(1, gen(5)).to_vector())


def test_frontal_landmarks_follow_ibug_order():
    size = 64
    lm = S.landmarks(identities(16), S.Structure.create(), size)  # (16, 68, 2)
    x, y = lm[..., 0], lm[..., 1]
    assert (x[:, 1:17] > x[:, :16]).all(), "jaw runs left to right in the image"
    assert (y[:, 8:9] >= y[:, :17]).all(), "the chin is the jaw's lowest point"
    assert (y[:, 17:27].mean(1) < y[:, 36:48].mean(1)).all(), "brows above eyes"
    assert (y[:, 36:48].amax(1) < y[:, 30]).all() and (y[:, 30] < y[:, 33]).all(), "eyes above nose tip above nostrils"
    assert (y[:, 33] < y[:, 48:68].amin(1)).all(), "nose above mouth"
    assert (x[:, 36:42].amax(1) < x[:, 42:48].amin(1)).all(), "left eye (36-41) left of right eye in the image"
    assert (x[:, 17:22].amax(1) < x[:, 22:27].amin(1)).all()
    assert (x[:, 36] < x[:, 39]).all() and (x[:, 42] < x[:, 45]).all(), "eye corners: outer-inner, inner-outer"
    assert (y[:, 51] < y[:, 62]).all() and (y[:, 62] <= y[:, 66] + 1e-4).all() and (y[:, 66] < y[:, 57]).all()
    assert torch.allclose(mirror(lm, size), lm, atol=1e-3), "every identity is left-right symmetric"
    assert ((lm > 0) & (lm < size - 1)).all()


def test_yaw_plus_and_minus_mirror_landmarks():
    size = 64
    app = identities(8, seed=3)
    plus = S.landmarks(app, S.Structure.create(yaw=30.0, expression="smile"), size)
    minus = S.landmarks(app, S.Structure.create(yaw=-30.0, expression="smile"), size)
    assert torch.allclose(mirror(plus, size), minus, atol=1e-3)
    assert (plus[:, 30, 0] > size / 2 + 3).all(), "yaw > 0 turns the nose to the image right"
    up = S.landmarks(app, S.Structure.create(pitch=15.0), size)
    tilt = S.landmarks(app, S.Structure.create(roll=12.0), size)
    front = S.landmarks(app, S.Structure.create(), size)
    assert (up[:, 30, 1] < front[:, 30, 1]).all(), "pitch > 0 looks up"
    assert (tilt[:, 45, 1] < tilt[:, 36, 1]).all(), "roll > 0 tilts counter-clockwise: the right eye rises"


def test_landmarks_scale_with_the_pixel_centre_convention():
    app, st = identities(2), S.sample_structure(2, gen(5))
    lm64, lm128 = S.landmarks(app, st, 64), S.landmarks(app, st, 128)
    assert torch.allclose((lm64 + 0.5) * 2 - 0.5, lm128, atol=1e-4)
    assert torch.equal(S.render(app, st, 64)[1], lm64)


def test_rendered_features_sit_on_their_landmarks():
    size = 128
    app = identities(6, seed=7, glasses=0.0, beard=0.0)
    neutral, lm = S.render(app, S.Structure.create(), size)
    pupil = (lm[:, 37] + lm[:, 38] + lm[:, 40] + lm[:, 41]) / 4
    cheek = (lm[:, 41] + 2 * lm[:, 48] + 2 * lm[:, 2]) / 5
    dark = luma(at(neutral, pupil))
    assert (dark < 0.15).all() and (dark < 0.6 * luma(at(neutral, cheek))).all(), "pupil darker than the cheek"
    lower_lip = (at(neutral, (lm[:, 58] + lm[:, 67]) / 2) + at(neutral, (lm[:, 56] + lm[:, 65]) / 2)) / 2

    def chroma(c: torch.Tensor) -> torch.Tensor:
        return c / c.sum(-1, keepdim=True)

    lip_dist = (chroma(lower_lip) - chroma(app.lips)).norm(dim=-1)
    assert (lip_dist < (chroma(lower_lip) - chroma(app.skin)).norm(dim=-1)).all(), "lip pixels look like lips"
    mouth = lambda lm_: (lm_[:, 62] + 2 * lm_[:, 66]) / 3  # noqa: E731  inside the mouth, below the teeth
    open_, lm_o = S.render(app, S.Structure.create(expression="surprise"), size)
    inside = luma(at(open_, mouth(lm_o)))
    assert (inside < 0.15).all() and (luma(at(neutral, mouth(lm))) > 2 * inside).all(), "open mouths are dark inside"
    closed, lm_c = S.render(app, S.Structure.create(expression="eyes_closed"), size)
    assert torch.allclose(lm_c[:, 37], lm_c[:, 41]) and torch.allclose(lm_c[:, 44], lm_c[:, 46])
    lid = luma(at(closed, pupil))
    assert (lid > 1.5 * dark).all() and (lid > 0.5 * luma(at(neutral, cheek))).all(), "closed lids hide the pupil"


def test_structure_changes_keep_appearance_and_colour_changes_keep_landmarks():
    size = 64
    app = identities(4, seed=11, beard=0.0)
    before = app.to_vector().clone()
    st = S.Structure.create(pitch=[0.0, 0.0, 0.0], expression=["neutral", "smile", "anger"])
    skins = []
    for k in range(len(app)):
        x, lm = S.render(app.index(k), st, size)
        patch = torch.stack([at(x, (lm[:, 41] + 2 * lm[:, 48] + 2 * lm[:, 2]) / 5 + d)
                             for d in torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0]])]).mean(0)  # (3, 3)
        skins.append(patch)
        assert (patch - patch.mean(0)).abs().max() < 0.04, "cheek colour does not change with expression"
    assert torch.equal(app.to_vector(), before)
    other = identities(4, seed=12)
    recoloured = app.with_colours_of(other)
    st2 = S.sample_structure(4, gen(13))
    assert torch.equal(S.landmarks(app, st2, size), S.landmarks(recoloured, st2, size))
    assert (S.render(app, st2, size)[0] - S.render(recoloured, st2, size)[0]).abs().mean() > 0.05
    reshaped = app.replace(shape=other.shape)
    assert (S.landmarks(app, st2, size) - S.landmarks(reshaped, st2, size)).abs().amax() > 0.5


def test_sampled_poses_and_expressions_cover_their_ranges():
    st = S.sample_structure(4000, gen(0))
    for angle, limit in ((st.yaw, 60), (st.pitch, 20), (st.roll, 15)):
        assert angle.abs().max() <= limit and angle.min() < -0.95 * limit and angle.max() > 0.95 * limit
    assert torch.allclose(st.expression.sum(1), torch.ones(4000), atol=1e-5)
    assert (st.expression >= 0).all() and (st.expression <= 1).all()
    dominant = st.expression[:, 1:].argmax(1)[st.expression[:, 0] < 0.5]
    assert torch.bincount(dominant, minlength=5).min() > 400, "every expression is sampled"
    assert S.sample_structure(500, gen(0), max_yaw=90.0).yaw.abs().max() > 85
    lm = S.landmarks(S.sample_appearance(4000, gen(1)), st, 64)
    assert ((lm > 0) & (lm < 63)).all(), "landmarks stay inside the image over the default ranges"


def test_factor_vectors_round_trip():
    app, st = S.sample_appearance(5, gen(2)), S.sample_structure(5, gen(3))
    assert app.to_vector().shape == (5, len(S.appearance_columns())) == (5, 63)
    assert st.to_vector().shape == (5, len(S.structure_columns())) == (5, 9)
    app2, st2 = S.Appearance.from_vector(app.to_vector()), S.Structure.from_vector(st.to_vector())
    assert torch.equal(S.render(app, st, 32)[0], S.render(app2, st2, 32)[0])


def test_dataset_splits_by_identity_ninety_ten():
    kw = dict(size=32, n_identities=20, images_per_identity=3, seed=4)
    train, test = SyntheticFaces(split="train", **kw), SyntheticFaces(split="test", **kw)
    ids_train, ids_test = set(train.identity.tolist()), set(test.identity.tolist())
    assert not ids_train & ids_test and len(ids_train | ids_test) == 20 and len(ids_test) == 2
    assert len(train) == 54 and len(test) == 6
    item = train[4]
    assert item["x"].shape == (3, 32, 32) and item["c"].shape == (13, 32, 32) and item["landmarks"].shape == (68, 2)
    assert item["identity"].dtype == torch.int64 and item["appearance"].shape == (63,)
    assert item["c"].min() >= 0 and item["c"].max() <= 1 and item["c"].max() > 0.5
    same = train.identity == train.identity[0]
    assert (train.factors["appearance"][same] == train.factors["appearance"][0]).all()
    batch = collate(train, torch.tensor([4, 5]))
    assert torch.equal(batch["x"][0], item["x"]) and torch.equal(batch["c"][0], item["c"])
    truth = train.true_target(torch.tensor([4, 5]), train.structure.index([4, 5]))
    assert torch.equal(truth["x"], batch["x"]) and torch.allclose(truth["landmarks"], batch["landmarks"])
    pair = train.render_pair(4, 7)  # item 4's identity under item 7's structure
    assert torch.allclose(pair["landmarks_target"], S.landmarks(train.appearance_of(train.identity[4]),
                                                                train.structure.index([7]), 32))



def test_train_images_gives_each_training_image_its_own_identity_never_a_test_one(tmp_path):
    from afvae.config import DataConfig
    from afvae.data.datasets import build_dataset, training_identities
    from afvae.features import factor_net_path, landmark_net_path
    from afvae.scorer import scorer_data

    data = DataConfig(size=32, n_identities=20, images_per_identity=3, seed=4)
    fresh = DataConfig(size=32, n_identities=20, images_per_identity=3, seed=4, train_images=25)
    test_ids = set(build_dataset(data, "test").identity.tolist())
    ids = training_identities(fresh)
    assert len(ids) == len(set(ids)) == 25 and not test_ids & set(ids)
    assert ids[:18] == sorted(set(build_dataset(data, "train").identity.tolist()))  # the population's own first
    assert ids[18:] == list(range(20, 27))  # then new identities, outside the population
    train = build_dataset(fresh, "train")
    assert len(train) == 25 and train.identity.tolist() == ids
    own = build_dataset(data, "train")  # the population's identities keep their appearance
    assert torch.equal(train.factors["appearance"][:18], own.factors["appearance"][::3])
    assert torch.equal(build_dataset(fresh, "test").images, build_dataset(data, "test").images)
    # the nets that score and feature-match are the population's, whatever the training set
    assert fresh.population() == data
    assert factor_net_path(fresh, tmp_path) == factor_net_path(data, tmp_path)
    assert landmark_net_path(fresh, tmp_path) == landmark_net_path(data, tmp_path)
    assert scorer_data(fresh) == scorer_data(data)
    with pytest.raises(ValueError, match="only the synthetic sources"):
        build_dataset(DataConfig(source=str(tmp_path), train_images=5), "train")

def test_export_round_trips_through_folder_faces(tmp_path):
    out = export_synthetic(tmp_path / "synthetic", size=32, n_identities=10, images_per_identity=2, seed=3)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["schema"] == "face68" and meta["source"] == "synthetic" and meta["size"] == 32
    assert meta["n_images"] == 20 and meta["n_test"] == 2 and meta["seed"] == 3
    ref = SyntheticFaces(size=32, n_identities=10, images_per_identity=2, split="test", seed=3)
    folder = FolderFaces(out, "test")
    assert torch.equal(folder.images[torch.arange(len(folder))], ref.images) and torch.equal(folder.identity, ref.identity)
    assert torch.allclose(folder.landmarks, ref.landmarks, atol=1e-4)
    assert torch.allclose(folder.factors["structure"], ref.factors["structure"], atol=1e-5)
    app = S.Appearance.from_vector(folder.factors["appearance"])
    x, _ = S.render(app, S.Structure.from_vector(folder.factors["structure"]), 32)
    assert (to_uint8(x).int() - ref.images.int()).abs().max() <= 2, "factors.csv reproduces the images"
    assert set(folder[0]) == set(ref[0]) and len(FolderFaces(out, "all")) == 20
    big = FolderFaces(out, "test", size=64)
    assert big.images.shape[-1] == 64 and torch.allclose(big.landmarks, (ref.landmarks + 0.5) * 2 - 0.5, atol=1e-4)
    export_synthetic(out, size=32, n_identities=4, images_per_identity=1, seed=3)  # replaces the folder
    assert json.loads((out / "meta.json").read_text())["n_images"] == 4
    assert len(list(out.glob("images/*.png"))) == 4 and not list(tmp_path.glob(".synthetic*"))


def test_export_is_one_render_of_all_identities_in_identity_order(tmp_path):
    """export_synthetic renders split by split (for the render cache) and matches rendering every id at once."""
    out = export_synthetic(tmp_path / "f", size=32, n_identities=30, images_per_identity=3, seed=0)
    whole = S.make_faces(32, range(30), 3, 0)
    folder = FolderFaces(out, "all")
    assert torch.equal(folder.identity, whole.identity) and torch.equal(folder.images[torch.arange(90)], whole.images)


def test_render_cache_serves_a_second_render_and_keys_on_code_and_factors(tmp_path, monkeypatch, caplog):
    calls = []

    def counted(*args, **kw):
        calls.append(1)
        return S.FACES.render(*args, **kw)

    subject = S.FACES._replace(render=counted)
    monkeypatch.delenv(render_cache.ENV, raising=False)
    first = S.make_faces(32, [3, 7], 2, 0, subject=subject)
    assert len(calls) == 1 and not list(tmp_path.iterdir()), "no variable, no disk cache"
    monkeypatch.setenv(render_cache.ENV, str(tmp_path))
    S.make_faces(32, [3, 7], 2, 0, subject=subject)
    again = S.make_faces(32, [3, 7], 2, 0, subject=subject)
    assert len(calls) == 2 and len(list(tmp_path.glob("*.safetensors"))) == 1
    assert torch.equal(again.images, first.images) and torch.equal(again.landmarks, first.landmarks)
    S.make_faces(32, [3, 8], 2, 0, subject=subject)  # other factors: another entry
    assert len(calls) == 3
    monkeypatch.setattr(render_cache, "code_digest", lambda: "changed renderer")
    S.make_faces(32, [3, 7], 2, 0, subject=subject)  # changed code: never the old pixels
    assert len(calls) == 4 and len(list(tmp_path.glob("*.safetensors"))) == 3
    for f in tmp_path.glob("*.safetensors"):
        f.write_bytes(b"torn")
    with caplog.at_level("WARNING"):
        torn = S.make_faces(32, [3, 7], 2, 0, subject=subject)
    assert len(calls) == 5 and torch.equal(torn.images, first.images) and "unreadable render cache" in caplog.text
    monkeypatch.setattr(render_cache, "MAX_BYTES", 10)  # too large to keep: rendered, not written
    S.make_faces(32, [1], 2, 0, subject=subject)
    assert len(list(tmp_path.glob("*.safetensors"))) == 3


def test_camera_rays_through_landmarks_hit_the_surface_at_them():
    """Exactness: the ray through each visible landmark's pixel meets the drawn face at that landmark's (X, Y)."""
    size = 64
    app = identities(6, seed=21)
    st = S.Structure.create(yaw=[0.0, 25.0, -40.0, 55.0, 10.0, -20.0], pitch=[0.0, 10.0, -15.0, 5.0, 20.0, -20.0],
                            roll=[0.0, -10.0, 5.0, 15.0, -15.0, 0.0],
                            expression=["neutral", "smile", "surprise", "anger", "disgust", "eyes_closed"])
    scene = raster._scene(app, st)
    lm = S.Camera.for_size(size).project(scene.points)  # (B, 68, 2)
    cam = S.Camera.for_size(size)
    u, v = ((lm[..., 0] - cam.cx) / cam.f)[:, None], ((cam.cy - lm[..., 1]) / cam.f)[:, None]  # (B, 1, 68)
    rays = shading.Rays(u, v, 1 / cam.f)
    skin, p = raster._skin_hits(scene, rays, S.FACE_SURFACES)  # (B, 3, 1, 68) head-frame hit points
    hit_xy = p[:, :2, 0].transpose(1, 2)  # (B, 68, 2)
    depth = scene.points @ S.head_rotation(st)  # back to the head frame
    visible = (p[:, 2, 0] - depth[..., 2]).abs() < 1e-3  # the ray's first hit is the landmark itself
    assert visible[:, 36:68].float().mean() > 0.8 and visible[0, 17:].all(), "inner-face landmarks are visible"
    err = (hit_xy - scene.xy).norm(dim=-1)[visible]
    assert err.max() < 1e-3, f"texture coordinates drift from the landmarks by {err.max():.4f} head units"


def test_package_names_resolve_to_their_modules():
    """Each re-exported name is loaded on first use from the module that defines it."""
    modules = [importlib.import_module(f"afvae.data.synthetic.{m}") for m in
               ("sampling", "camera", "shading", "factors", "geometry", "raster", "hands", "cats", "subjects", "faceset")]
    assert all(any(getattr(m, n, None) is getattr(S, n) for m in modules) for n in S.__all__)
    assert {"render", "landmarks", "Appearance", "make_faces"} <= set(dir(S)) and "_scene" not in S.__all__
    with pytest.raises(AttributeError):
        S.no_such_name
