"""Real-data preparation: alignment geometry, landmark backends, sources, caching / resuming, export format."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from afvae.boundaries import CAT9, HAND21, boundary_map, mean_face_landmarks
from afvae.data import real
from afvae.data.real import readers
from afvae.data.real.align import align_face, similarity_transform, template, transform_points, warp_image
from afvae.data.real.landmarks import FanLandmarker, _fa_file, detect_landmarks, resolve_backend
from afvae.data.real.prepare import PROG, Options, identity_split, main, prepare
from afvae import weights as afvae_weights
from afvae.weights import WeightsUnavailable

skdata = pytest.importorskip("skimage.data")


def _eyes(pts: np.ndarray) -> np.ndarray:
    """(68, 2) -> the two eye centres (2, 2)."""
    return np.stack([pts[36:42].mean(0), pts[42:48].mean(0)])


def _similarity(angle: float, scale: float, t: tuple[float, float]) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[scale * c, -scale * s, t[0]], [scale * s, scale * c, t[1]]])


@pytest.fixture(scope="module")
def dlib_lm():
    pytest.importorskip("dlib")
    from afvae.data.real.landmarks import DlibLandmarker

    try:
        return DlibLandmarker()
    except WeightsUnavailable as e:
        pytest.skip(str(e))


class Counting:
    """A landmarker wrapper that counts its calls and can fail on the n-th one (an interrupted run)."""

    def __init__(self, inner, fail_at: int | None = None):
        self.inner, self.fail_at, self.calls, self.name = inner, fail_at, 0, inner.name

    def __call__(self, image):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated interruption")
        return self.inner(image)


# ---------------------------------------------------------------------------------------------------------
# Alignment geometry
# ---------------------------------------------------------------------------------------------------------

def test_similarity_transform_is_the_least_squares_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, (6, 2))
    m = _similarity(0.4, 1.7, (12.0, -30.0))
    dst = transform_points(src, m) + rng.normal(0, 2.0, (6, 2))
    # Reference: x' = a x - b y + tx, y' = b x + a y + ty is linear in (a, b, tx, ty).
    rows = [[x, -y, 1, 0] for x, y in src] + [[y, x, 0, 1] for x, y in src]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)[0]
    np.testing.assert_allclose(similarity_transform(src, dst), [[a, -b, tx], [b, a, ty]], atol=1e-9)
    np.testing.assert_allclose(similarity_transform(src, transform_points(src, m)), m, atol=1e-4)
    mirrored = src * [-1, 1]
    assert np.linalg.det(similarity_transform(src, mirrored)[:, :2]) > 0  # never a reflection


@pytest.mark.parametrize("scale", [0.35, 1.6])  # 0.35 takes the box-filter (reduce) path
def test_warp_moves_pixels_where_the_matrix_moves_landmarks(scale):
    """Gaussian blobs at sub-pixel positions: their centroids after the warp = transform_points (pixel centres)."""
    rng = np.random.default_rng(1)
    H = W = 400 if scale < 1 else 80
    sigma = 2.5 / scale
    pts = rng.uniform(0.3 * H, 0.7 * H, (3, 2))
    yy, xx = np.mgrid[0:H, 0:W]
    img = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)) for x, y in pts)
    img = np.repeat((255 * img.clip(0, 1))[..., None], 3, -1).astype(np.uint8)
    m = _similarity(0.3, scale, (20.0, 5.0))
    out = warp_image(img, m, 160).astype(np.float64)[..., 0]
    for p in transform_points(pts, m):
        x0, y0 = np.round(p).astype(int)
        win = out[y0 - 8:y0 + 9, x0 - 8:x0 + 9]
        cy, cx = (np.mgrid[-8:9, -8:9] * win).sum((1, 2)) / win.sum()
        assert abs(x0 + cx - p[0]) < 0.05 and abs(y0 + cy - p[1]) < 0.05, p  # 0.5 px off if wrong


def test_template_scales_by_pixel_centres_and_eyes_fit_exactly():
    np.testing.assert_allclose(template(64), (template(256) + 0.5) / 4 - 0.5)
    face = mean_face_landmarks(256).numpy()
    moved = transform_points(face, _similarity(-0.5, 0.6, (40.0, 70.0)))
    img = np.zeros((300, 300, 3), np.uint8)
    out = align_face(img, moved, 128, anchors="eyes")
    np.testing.assert_allclose(_eyes(out.landmarks), template(128, anchors="eyes"), atol=1e-3)
    # The template is the synthetic face itself: aligning it (any anchors) gives it back at the crop size.
    np.testing.assert_allclose(align_face(img, moved, 256).landmarks, face, atol=1e-3)


def test_astronaut_through_dlib_and_alignment(dlib_lm):
    """A real photograph: one face; after alignment its eye centres are on the template within 1 px."""
    faces, backend = detect_landmarks([skdata.astronaut()], landmarker=dlib_lm)
    assert backend == "dlib" and faces[0].shape == (1, 68, 2)
    eyes = _eyes(faces[0][0])
    assert ((eyes > [170, 80]) & (eyes < [270, 140])).all()
    out = align_face(skdata.astronaut(), faces[0][0], 256, anchors="eyes")
    target = template(256, anchors="eyes")
    assert np.abs(_eyes(out.landmarks) - target).max() < 1e-3
    again = dlib_lm(out.image)  # the pixels moved too: detect again on the aligned crop
    assert again.shape == (1, 68, 2) and np.abs(_eyes(again[0]) - target).max() < 1.0
    # The default (least squares on eyes and mouth corners) trades eye placement for the smile.
    default = align_face(skdata.astronaut(), faces[0][0], 256)
    assert 1.0 < np.abs(_eyes(default.landmarks) - target).max() < 12.0


def test_lfw_crops_upscaled_through_dlib(dlib_lm):
    """skimage's lfw_subset: 25x25 crops (faces 0-99, non-faces 100-199), upscaled 4x so HOG can see them."""
    lfw = skdata.lfw_subset()
    up = lambda a: np.asarray(Image.fromarray((255 * a).astype(np.uint8)).resize((100, 100), Image.BICUBIC))  # noqa: E731
    faces, _ = detect_landmarks([up(lfw[i]) for i in range(8)], landmarker=dlib_lm)
    assert sum(f.shape[0] == 1 for f in faces) >= 6
    others, _ = detect_landmarks([up(lfw[i]) for i in range(100, 108)], landmarker=dlib_lm)
    assert all(f.shape[0] == 0 for f in others)


# ---------------------------------------------------------------------------------------------------------
# FAN backend
# ---------------------------------------------------------------------------------------------------------

def test_fan_missing_weights_says_which_file_and_where(tmp_path, monkeypatch):
    pytest.importorskip("face_alignment")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("AFVAE_FAN_WEIGHTS", raising=False)
    name = _fa_file()[0]
    assert name == "2DFAN4-11f355bf06.pth.tar"
    with pytest.raises(WeightsUnavailable) as e:
        FanLandmarker(download=False)
    msg = str(e.value)
    assert name in msg and "AFVAE_FAN_WEIGHTS" in msg and str(tmp_path / "torch" / "hub" / "checkpoints") in msg
    assert resolve_backend("auto") == "dlib"
    monkeypatch.setenv("AFVAE_FAN_WEIGHTS", str(tmp_path / "nowhere.pth.tar"))
    with pytest.raises(WeightsUnavailable, match="nowhere.pth.tar"):
        FanLandmarker(download=False)


def test_fan_builds_offline_from_a_local_file(tmp_path, monkeypatch):
    """FaceAlignment built with compile=False from a local FAN file (random weights) and an empty hub cache."""
    fa_models = pytest.importorskip("face_alignment.models")
    torch.manual_seed(0)
    weights = tmp_path / "mine" / _fa_file()[0]
    weights.parent.mkdir()
    torch.save(fa_models.FAN(4).state_dict(), weights)
    monkeypatch.setitem(afvae_weights.SHA256, weights.name, hashlib.sha256(weights.read_bytes()).hexdigest())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("AFVAE_FAN_WEIGHTS", str(weights))
    assert resolve_backend("auto") == "fan"
    lm = FanLandmarker(detector="folder", flip=False, download=False)
    assert torch.hub.get_dir() == str(tmp_path / "torch" / "hub")  # the lent hub folder is given back
    assert not (tmp_path / "torch" / "hub" / "checkpoints").exists()  # nothing was downloaded
    lm.fa.face_alignment_net = fa_models.FAN(1).eval()  # shapes only: a 1-stack forward is 4x cheaper on CPU
    box = [176.0, 80.0, 266.0, 170.0]
    pts = lm(skdata.astronaut(), boxes=[box])
    assert pts.shape == (1, 68, 2) and pts.dtype == np.float32 and np.isfinite(pts).all()
    assert (pts[0, :, 0] > box[0] - 60).all() and (pts[0, :, 0] < box[2] + 60).all()
    with pytest.raises(ValueError, match="needs boxes"):
        lm(skdata.astronaut())


# ---------------------------------------------------------------------------------------------------------
# A messy folder: caching, rejects, resuming
# ---------------------------------------------------------------------------------------------------------

def test_decode_image_modes():
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:20, :, 3] = 255  # top half opaque red, bottom half transparent
    buf = __import__("io").BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    white = readers.decode_image(buf.getvalue(), "white")
    black = readers.decode_image(buf.getvalue(), "black")
    assert white.shape == (40, 40, 3) and tuple(white[5, 5]) == (200, 0, 0)
    assert tuple(white[30, 5]) == (255, 255, 255) and tuple(black[30, 5]) == (0, 0, 0)
    buf = __import__("io").BytesIO()
    Image.fromarray(np.full((40, 40), 77, np.uint8)).save(buf, format="PNG")
    assert (readers.decode_image(buf.getvalue()) == 77).all()
    with pytest.raises(ValueError, match="unreadable"):
        readers.decode_image(b"\xff\xd8\xff\xe0 not really a jpeg")


def _messy_folder(root: Path) -> dict[str, str]:
    """Images in identity sub-folders -> {relative path: expected outcome}."""
    astro = skdata.astronaut()
    lfw = skdata.lfw_subset()
    (root / "eileen").mkdir(parents=True)
    (root / "lfw0").mkdir()
    Image.fromarray(astro).save(root / "eileen" / "colour.jpg", quality=95)
    rgba = np.dstack([astro, np.full(astro.shape[:2], 255, np.uint8)])
    rgba[:, :60, 3] = 0  # a transparent strip
    Image.fromarray(rgba).save(root / "eileen" / "alpha.png")
    face = Image.fromarray((255 * lfw[0]).astype(np.uint8)).resize((100, 100), Image.BICUBIC)
    face.save(root / "lfw0" / "gray.png")  # mode L
    Image.fromarray(astro[:20, :20]).save(root / "tiny.png")
    Image.fromarray(skdata.coffee()).save(root / "coffee.jpg")
    data = (root / "eileen" / "colour.jpg").read_bytes()
    (root / "broken.jpg").write_bytes(data[: len(data) // 3])  # truncated
    (root / "notes.png").write_bytes(b"this is not an image")
    return {"eileen/colour.jpg": "ok", "eileen/alpha.png": "ok", "lfw0/gray.png": "ok", "tiny.png": "too small",
            "coffee.jpg": "no face", "broken.jpg": "unreadable", "notes.png": "unreadable"}


def test_messy_folder_rejects_caches_and_resumes(tmp_path, dlib_lm):
    expected = _messy_folder(tmp_path / "in")
    detectable = 4  # colour, alpha, gray, coffee: readable and large enough

    first = Counting(dlib_lm)
    r1 = prepare("folder", tmp_path / "in", tmp_path / "out", size=64, landmarker=first)
    assert first.calls == detectable and r1.n_detected == detectable
    out = tmp_path / "out"
    table, rejects = pd.read_csv(out / "landmarks.csv"), pd.read_csv(out / "rejects.csv")
    sources = pd.read_csv(out / "sources.csv")
    assert set(sources["source"]) == {k for k, v in expected.items() if v == "ok"}
    assert len(table) + len(rejects) == len(expected)  # nothing lost
    for src, reason in zip(rejects["source"], rejects["reason"]):
        assert expected[src] in reason, (src, reason)
    assert list(table.columns[:5]) == ["file", "identity", "split", "x0", "y0"] and table.columns[-1] == "y67"
    for f in table["file"]:
        im = Image.open(out / f)
        assert im.mode == "RGB" and im.size == (64, 64)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["landmark_backend"] == "dlib" and meta["schema"] == "face68" and meta["n_images"] == 3
    assert meta["n_identities"] == 2 and meta["n_rejected"] == 4

    second = Counting(dlib_lm)
    r2 = prepare("folder", tmp_path / "in", out, size=64, landmarker=second)
    assert second.calls == 0 and r2.n_cached == detectable  # every detection (and the unreadable files) cached
    pd.testing.assert_frame_equal(pd.read_csv(out / "landmarks.csv"), table)

    # An interrupted run (the 3rd detection never returns), then a resume that detects only the rest.
    fresh = tmp_path / "out2"
    with pytest.raises(KeyboardInterrupt):
        prepare("folder", tmp_path / "in", fresh, size=64, landmarker=Counting(dlib_lm, fail_at=3))
    assert not (fresh / "landmarks.csv").exists()  # nothing half-written in place
    with open(fresh / "cache" / "detections.jsonl", "a") as f:
        f.write('{"sha1": "0123')  # and a line cut mid-write
    resumed = Counting(dlib_lm)
    r3 = prepare("folder", tmp_path / "in", fresh, size=64, landmarker=resumed)
    assert resumed.calls == detectable - 2
    pd.testing.assert_frame_equal(pd.read_csv(fresh / "landmarks.csv"), table)
    assert not list(fresh.glob(".staging-*")) and r3.meta["n_images"] == 3


def test_prepared_folder_reads_as_folderfaces(tmp_path, dlib_lm):
    from afvae.data.datasets import FolderFaces

    _messy_folder(tmp_path / "in")
    prepare("folder", tmp_path / "in", tmp_path / "out", size=64, landmarker=dlib_lm)
    ds = FolderFaces(tmp_path / "out", split="all")
    table = pd.read_csv(tmp_path / "out" / "landmarks.csv")
    assert len(ds) == len(table) == 3
    np.testing.assert_allclose(ds.landmarks[0].numpy().ravel(), table.iloc[0, 3:].to_numpy(float), atol=1e-4)


def test_identity_split_is_disjoint_deterministic_and_ten_percent():
    names = [f"id{i}" for i in range(200)]
    split = identity_split(names, seed=3)
    assert sum(v == "test" for v in split.values()) == 20
    assert split == identity_split(list(reversed(names)), seed=3)
    assert split != identity_split(names, seed=4)
    assert list(identity_split(["a", "b"]).values()).count("test") == 1


# ---------------------------------------------------------------------------------------------------------
# Keypoint sources (no detection)
# ---------------------------------------------------------------------------------------------------------

_CAT = np.array([[0, 0], [1, 0], [0.5, 0.75], [-0.5, -0.6], [-0.4, -1.4], [0.0, -0.8], [1.0, -0.8], [1.4, -1.4],
                 [1.5, -0.6]])  # eyes, mouth, left ear, right ear in eye-distance units


def _cat_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    (root / "CAT_00").mkdir(parents=True)
    for i, (angle, scale) in enumerate([(0.0, 40.0), (0.3, 55.0), (-0.2, 30.0)]):
        img = rng.integers(0, 255, (160, 200, 3), dtype=np.uint8)
        name = root / "CAT_00" / f"0000000{i}_000.jpg"
        Image.fromarray(img).save(name)
        pts = transform_points(_CAT, _similarity(angle, scale, (80.0, 90.0)))
        name.with_name(name.name + ".cat").write_text("9 " + " ".join(f"{v:.0f}" for v in pts.ravel()) + " ")
    (root / "CAT_00" / "00000009_000.jpg.cat").write_text("9 1 2 3")  # no image, malformed
    Image.fromarray(rng.integers(0, 255, (50, 50, 3), dtype=np.uint8)).save(root / "CAT_00" / "00000008_000.jpg")
    (root / "CAT_00" / "00000008_000.jpg.cat").write_text("9 1 2 3")  # malformed


def test_cats_prepare_with_cat9_and_render_boundaries(tmp_path):
    _cat_folder(tmp_path / "cats")
    r = prepare("cats", tmp_path / "cats", tmp_path / "out", size=64)
    assert r.meta["schema"] == "cat9" and r.meta["landmark_backend"] == "given" and r.n_detected == 0
    table = pd.read_csv(tmp_path / "out" / "landmarks.csv")
    assert len(table) == 3 and table.columns[-1] == "y8" and "x9" not in table.columns
    assert len(pd.read_csv(tmp_path / "out" / "rejects.csv")) == 2
    pts = table.iloc[:, 3:].to_numpy(float).reshape(-1, 9, 2)
    # Every cat is the same shape up to a similarity (and rounding): all land on one another after alignment.
    assert np.abs(pts - pts[0]).max() < 1.0
    c = boundary_map(torch.tensor(pts, dtype=torch.float32), 64, schema=CAT9)
    assert c.shape == (3, CAT9.n_curves, 64, 64) and (c.amax((2, 3)) > 0.9).all()


def test_keypoints_csv_with_hand21(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)).save(tmp_path / f"hand{i}.png")
        pts = rng.uniform(10, 80, (21, 2))
        rows.append({"file": f"hand{i}.png", "identity": f"person{i % 2}",
                     **{f"{a}{k}": pts[k, j] for k in range(21) for j, a in enumerate("xy")}})
    rows[3]["x5"] = np.nan
    pd.DataFrame(rows).to_csv(tmp_path / "keypoints.csv", index=False)
    r = prepare("keypoints", tmp_path, tmp_path / "out", size=64, schema="hand21")
    assert r.meta["schema"] == "hand21" and r.meta["n_images"] == 3 and r.meta["n_identities"] == 2
    assert "NaN" in pd.read_csv(tmp_path / "out" / "rejects.csv")["reason"][0]
    pts = pd.read_csv(tmp_path / "out" / "landmarks.csv").iloc[:, 3:].to_numpy(float).reshape(-1, 21, 2)
    lo, hi = pts.min(1), pts.max(1)  # 'box' alignment: bounding box centred, 80 % of the crop
    np.testing.assert_allclose((lo + hi) / 2, 31.5, atol=1e-3)
    np.testing.assert_allclose((hi - lo).max(1), 0.8 * 64, atol=1e-3)
    assert boundary_map(torch.tensor(pts, dtype=torch.float32), 64, schema=HAND21).shape == (3, 5, 64, 64)


# ---------------------------------------------------------------------------------------------------------
# Layout readers and the CLI
# ---------------------------------------------------------------------------------------------------------

def test_missing_datasets_name_the_expected_file(tmp_path, capsys):
    with pytest.raises(readers.DatasetNotFound, match=r"celeba/identity_CelebA\.txt"):
        readers.celeba(tmp_path)
    with pytest.raises(readers.DatasetNotFound, match="WFLW_images"):
        readers.wflw(tmp_path)
    with pytest.raises(readers.DatasetNotFound, match="keypoints.csv"):
        readers.keypoints(tmp_path, "hand21")
    with pytest.raises(SystemExit) as stop:
        main(["celeba", "--root", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith(f"{PROG}: celeba: expected") and "identity_CelebA" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_every_source_the_command_line_offers_has_a_reader():
    assert sorted(real.SOURCES) == sorted(readers.READERS)
    layouts = real.__doc__.split("Layouts (``ROOT`` is ``--root``):", 1)[1]  # what --help shows
    assert [name for name in real.SOURCES if f"\n``{name}``" not in layouts] == []


def test_layout_parsers(tmp_path):
    ann = tmp_path / "WFLW" / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    ann.mkdir(parents=True)
    (tmp_path / "WFLW" / "WFLW_images" / "0--Parade").mkdir(parents=True)
    pts98 = np.stack([np.arange(98), 1000 + np.arange(98)], 1).ravel()
    line = " ".join(map(str, [*pts98, 1, 2, 3, 4, 0, 1, 0, 0, 0, 0, "0--Parade/x.jpg"]))
    (ann / "list_98pt_rect_attr_train.txt").write_text(line + "\n" + "1 2 3\n")
    (ann / "list_98pt_rect_attr_test.txt").write_text("")
    src = readers.wflw(tmp_path)
    assert len(src.items) == 1 and len(src.rejects) == 1
    np.testing.assert_array_equal(src.items[0].landmarks[:, 0], readers.WFLW_TO_68)
    assert src.items[0].landmarks[36:48, 0].tolist() == [60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75]

    (tmp_path / "300w").mkdir()
    (tmp_path / "300w" / "a.png").write_bytes(b"")
    body = "\n".join(f"{i + 1} {i + 101}" for i in range(68))
    (tmp_path / "300w" / "a.pts").write_text(f"version: 1\nn_points:  68\n{{\n{body}\n}}\n")
    pts = readers.w300(tmp_path / "300w").items[0].landmarks
    assert pts[0].tolist() == [0.0, 100.0] and pts.shape == (68, 2)  # 1-based -> 0-based

    (tmp_path / "rafd").mkdir()
    for name in ("Rafd090_01_Caucasian_female_angry_frontal.jpg", "Rafd090_12_Moroccan_male_happy_left.jpg",
                 "holiday.jpg"):
        (tmp_path / "rafd" / name).write_bytes(b"")
    src = readers.rafd(tmp_path / "rafd")
    assert [(i.identity, dict(i.attributes)["expression"]) for i in src.items] == [("01", "angry"), ("12", "happy")]
    assert len(src.rejects) == 1


def test_multipie_takes_the_frontal_camera_or_all_with_their_yaw(tmp_path):
    cameras = [*readers.MULTIPIE_YAW, "08_1", "19_1"]
    for subject in ("001", "002"):
        for camera in cameras:
            d = tmp_path / "Multi-Pie" / "data" / "session01" / "multiview" / subject / "01" / camera
            d.mkdir(parents=True)
            (d / f"{subject}_01_01_{camera.replace('_', '')}_07.png").write_bytes(b"")
    frontal = readers.multipie(tmp_path)
    assert [(i.identity, dict(i.attributes)["camera"]) for i in frontal.items] == [("001", "05_1"), ("002", "05_1")]
    assert dict(frontal.items[0].attributes)["yaw"] == "0"
    every = readers.multipie(tmp_path, cameras=None)
    assert len(every.items) == 2 * 15
    yaw = {dict(i.attributes)["camera"]: dict(i.attributes)["yaw"] for i in every.items}
    assert [int(yaw[c]) for c in ("11_0", "12_0", "09_0", "08_0", "13_0", "14_0", "05_1", "05_0", "04_1",
                                  "19_0", "20_0", "01_0", "24_0")] == list(range(-90, 91, 15))
    assert yaw["08_1"] == yaw["19_1"] == ""
    assert len(readers.multipie(tmp_path, cameras=("11_0", "24_0")).items) == 4
    with pytest.raises(readers.DatasetNotFound, match="multipie"):
        readers.multipie(tmp_path / "elsewhere")


def test_cli_prepares_cats(tmp_path, capsys):
    _cat_folder(tmp_path / "cats")
    main(["cats", "--root", str(tmp_path / "cats"), "--out", str(tmp_path / "out"), "--size", "32"])
    assert "3 images" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["size"] == 32


def test_for_data_follows_the_folder_schema_and_rejects_unprepared_folders(tmp_path):
    from afvae import pipeline
    from afvae.data.datasets import FolderFaces, for_data
    from afvae.config import get_config

    _cat_folder(tmp_path / "cats")
    prepare("cats", tmp_path / "cats", tmp_path / "out", size=64)
    cfg = for_data(get_config("smoke"), str(tmp_path / "out"))
    assert cfg.data.boundary_channels == cfg.model.boundary_channels == CAT9.n_curves
    assert for_data(get_config("smoke"), "synthetic") == get_config("smoke")  # cached synthetic runs keep their hash
    merged = for_data(get_config("smoke").replace(data={"boundary_channels": 1}, model={"boundary_channels": 1}),
                      str(tmp_path / "out"))
    assert merged.data.boundary_channels == 1
    ds = FolderFaces(tmp_path / "out", "all", size=32, boundary_channels=CAT9.n_curves)
    assert ds.get_batch([0, 1])["c"].shape == (2, CAT9.n_curves, 32, 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="meta.json is missing"):
        pipeline.main(["--scale", "smoke", "--data", str(tmp_path / "empty")])


# ---------------------------------------------------------------------------------------------------------
# Hostile and awkward inputs: decompression bombs, EXIF orientation, broken links, other formats
# ---------------------------------------------------------------------------------------------------------

class OneFace:
    """A stand-in detector: one face, the mean face fitted to the image's shorter side."""

    name = "one-face"

    def __call__(self, image):
        s = min(image.shape[:2])
        return (mean_face_landmarks(s).numpy() * 0.8 + 0.1 * s)[None]


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming width x height RGB, then an empty IDAT and IEND (~70 bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_decompression_bomb_is_a_reject_not_a_crash(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bomb.png").write_bytes(_png_header(20000, 20000))
    Image.fromarray(skdata.astronaut()).save(tmp_path / "in" / "astronaut.png")
    with pytest.raises(ValueError, match="too large"):
        readers.decode_image(_png_header(20000, 20000))
    for _ in range(2):  # and the rerun, which reads it from the cache
        r = prepare("folder", tmp_path / "in", tmp_path / "out", size=64, landmarker=OneFace())
        rejects = pd.read_csv(tmp_path / "out" / "rejects.csv")
        assert r.meta["n_images"] == 1 and list(rejects["source"]) == ["bomb.png"]
        assert "too large: 400 MP" in rejects.loc[0, "reason"]


def _stored_sideways(upright: np.ndarray, path: Path, orientation: int = 6) -> None:
    """Save ``upright`` as a phone does: pixels rotated, EXIF Orientation saying how to display them."""
    turns = {6: 1, 8: 3, 3: 2}[orientation]  # np.rot90 turns counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, turns))).save(path, exif=exif, quality=95)


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_exif_orientation_is_applied_where_detection_runs(tmp_path, orientation):
    astro = skdata.astronaut()
    _stored_sideways(astro, tmp_path / "phone.jpg", orientation)
    data = (tmp_path / "phone.jpg").read_bytes()
    upright = readers.decode_image(data, exif_orientation=True)
    stored = readers.decode_image(data)
    assert upright.shape == astro.shape and np.abs(upright.astype(float) - astro).mean() < 6
    assert stored.shape == np.rot90(astro, {6: 1, 8: 3, 3: 2}[orientation]).shape and not np.array_equal(stored,
                                                                                                          upright)


def test_sideways_phone_photo_is_prepared_upright(tmp_path, dlib_lm):
    (tmp_path / "in" / "eileen").mkdir(parents=True)
    _stored_sideways(skdata.astronaut(), tmp_path / "in" / "eileen" / "phone.jpg")
    r = prepare("folder", tmp_path / "in", tmp_path / "out", size=64, landmarker=dlib_lm)
    assert r.meta["n_images"] == 1, pd.read_csv(tmp_path / "out" / "rejects.csv").to_dict("records")
    table = pd.read_csv(tmp_path / "out" / "landmarks.csv")
    pts = table.iloc[0, 3:].to_numpy(float).reshape(68, 2)
    assert _eyes(pts)[0, 1] == pytest.approx(_eyes(pts)[1, 1], abs=3) and pts[8, 1] > pts[27, 1]  # chin below


def test_dangling_and_looping_symlinks_are_listed_in_rejects(tmp_path):
    root = tmp_path / "in"
    (root / "bob").mkdir(parents=True)
    Image.fromarray(skdata.astronaut()).save(root / "bob" / "a.png")
    (root / "bob" / "gone.jpg").symlink_to(root / "bob" / "deleted.jpg")
    (root / "loop.png").symlink_to(root / "loop2.png")
    (root / "loop2.png").symlink_to(root / "loop.png")
    (root / "bob" / "alias.png").symlink_to(root / "bob" / "a.png")  # a working link is an image like any other
    src = readers.folder(root)
    assert sorted(p.name for p in (i.path for i in src.items)) == ["a.png", "alias.png"]
    reasons = {Path(f).name: why for f, why in src.rejects}
    assert set(reasons) == {"gone.jpg", "loop.png", "loop2.png"}
    assert "dangling symlink" in reasons["gone.jpg"] and "deleted.jpg" in reasons["gone.jpg"]
    assert "symlink loop" in reasons["loop.png"]
    prepare("folder", root, tmp_path / "out", size=64, landmarker=OneFace())
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv")
    assert set(rejects["source"]) == {"bob/gone.jpg", "loop.png", "loop2.png"}


def test_300w_reads_ppm_images_as_folder_does(tmp_path):
    body = "\n".join(f"{i + 1} {i + 101}" for i in range(68))
    (tmp_path / "afw").mkdir()
    Image.fromarray(skdata.astronaut()).save(tmp_path / "afw" / "a.ppm")
    (tmp_path / "afw" / "a.pts").write_text(f"version: 1\nn_points:  68\n{{\n{body}\n}}\n")
    src = readers.w300(tmp_path)
    assert [i.path.name for i in src.items] == ["a.ppm"] and not src.rejects
    assert ".ppm" in readers.IMAGE_EXTENSIONS


def _group_photo(path: Path) -> None:
    """Two copies of the astronaut's face on a plain background, one at 60 %: dlib's HOG scores the small one
    far lower (0.08 vs 1.65), under its 'weak echo' cut, so without a look at every candidate the photo
    passes as a one-face image."""
    face = Image.fromarray(skdata.astronaut()[20:240, 120:330])
    canvas = Image.new("RGB", (640, 400), (90, 110, 130))
    canvas.paste(face, (20, 40))
    canvas.paste(face.resize((126, 132), Image.BICUBIC), (400, 120))
    canvas.save(path)


class TwoFaces:
    """A stand-in detector seeing a small clear face and a large faint one (landmark boxes 40 and 120 px)."""

    name = "two-faces"

    def candidates(self, image):
        base = mean_face_landmarks(100).numpy()
        small, large = base * 0.4 + 20, base * 1.2 + 200
        return np.stack([small, large]).astype(np.float32), np.array([2.0, 0.3], np.float32)

    def __call__(self, image):
        return self.candidates(image)[0][:1]  # what the detector itself calls a face


def test_group_photo_says_which_face_was_kept(tmp_path, dlib_lm, caplog):
    (tmp_path / "in").mkdir()
    _group_photo(tmp_path / "in" / "group.png")
    with caplog.at_level("INFO", logger="afvae.data.real.prepare"):
        r = prepare("folder", tmp_path / "in", tmp_path / "out", size=64, landmarker=dlib_lm)
    assert r.meta["n_images"] == 1 and r.meta["faces"] == "clearest"
    sources = pd.read_csv(tmp_path / "out" / "sources.csv")
    assert sources.loc[0, "faces_detected"] == 2 and "clearest" in sources.loc[0, "face_kept"]
    assert "group.png: 2 faces detected" in caplog.text
    r = prepare("folder", tmp_path / "in", tmp_path / "rejecting", size=64, landmarker=dlib_lm,
                options=Options(size=64, faces="reject-multiple"))
    reason = pd.read_csv(tmp_path / "rejecting" / "rejects.csv").loc[0, "reason"]
    assert r.meta["n_images"] == 0 and "2 faces detected" in reason and "--reject-multiple" in reason


def test_largest_and_clearest_choose_different_faces(tmp_path):
    (tmp_path / "in").mkdir()
    Image.fromarray(np.full((400, 400, 3), 128, np.uint8)).save(tmp_path / "in" / "a.png")
    kept = {}
    for policy in ("clearest", "largest"):
        prepare("folder", tmp_path / "in", tmp_path / policy, size=64, landmarker=TwoFaces(),
                options=Options(size=64, faces=policy, min_side=8))
        kept[policy] = pd.read_csv(tmp_path / policy / "sources.csv").loc[0, "face_kept"]
    assert "clearest" in kept["clearest"] and "score 2" in kept["clearest"]
    assert "largest" in kept["largest"] and "score 0.3" in kept["largest"]


def test_cli_face_choice_flags(tmp_path, dlib_lm, capsys):
    (tmp_path / "in").mkdir()
    _group_photo(tmp_path / "in" / "group.png")
    main(["folder", "--root", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--size", "64",
          "--landmarks", "dlib", "--reject-multiple"])
    assert "0 images" in capsys.readouterr().out
    main(["folder", "--root", str(tmp_path / "in"), "--out", str(tmp_path / "out2"), "--size", "64",
          "--landmarks", "dlib", "--largest"])
    assert pd.read_csv(tmp_path / "out2" / "sources.csv").loc[0, "face_kept"].startswith("largest")
    with pytest.raises(SystemExit):
        main(["folder", "--root", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--largest",
              "--reject-multiple"])
