"""The notebooks on prepared folders: real photographs through detection, and a non-face keypoint schema.

Done-when of the real-data work: ``python -m afvae.data.real.prepare folder --root PHOTOS --out DIR`` then the pipeline
at smoke scale on ``DIR`` runs end to end; the manipulation figures rerun on drawn hands (hand21).
"""
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from afvae import pipeline
from afvae.boundaries import HAND21
from afvae.data.datasets import FolderFaces, folder_schema
from afvae.data.real import prepare
from afvae.experiment import config
from skeletons import write_hands

pytestmark = pytest.mark.notebooks
skdata = pytest.importorskip("skimage.data")


def _photo_folder(root):
    """skimage's real photographs: the astronaut and lfw_subset's 100 faces (25 px, upscaled 4x), one person each."""
    root.mkdir(parents=True)
    Image.fromarray(skdata.astronaut()).save(root / "astronaut.png")
    for i, face in enumerate(skdata.lfw_subset()[:100]):
        img = Image.fromarray((255 * face).astype(np.uint8)).resize((100, 100), Image.BICUBIC)
        img.save(root / f"lfw_{i:03d}.png")
    return root


def _blank(path):
    img = np.asarray(Image.open(path).convert("L"), dtype=float)
    return img.std() < 5


@pytest.fixture(scope="module")
def photos_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("photos")
    prepare.main(["folder", "--root", str(_photo_folder(tmp / "photos")), "--out", str(tmp / "prepared"),
                  "--size", "64", "--landmarks", "dlib"])
    manifest = pipeline.run("smoke", data=str(tmp / "prepared"), out=tmp / "out")
    return tmp, manifest


def test_photos_prepare_into_a_face_folder(photos_run):
    tmp, _ = photos_run
    meta = (tmp / "prepared" / "meta.json").read_text()
    table = pd.read_csv(tmp / "prepared" / "landmarks.csv")
    assert '"landmark_backend": "dlib"' in meta and len(table) >= 60  # most upscaled LFW crops are detected
    assert set(table["split"]) == {"train", "test"}


def test_every_notebook_runs_on_the_prepared_photos(photos_run):
    tmp, manifest = photos_run
    ran = pipeline.notebooks_ran(manifest)
    expected = {p.stem for p in pipeline.notebooks()} - pipeline.SYNTHETIC_ONLY
    assert ran == expected and manifest["data"].endswith("prepared")
    figures = sorted((tmp / "out" / "figures").glob("*.png"))
    assert len(figures) >= 8 and not [f.name for f in figures if _blank(f)]


def test_table3_on_photos_has_no_ground_truth_but_real_metrics(photos_run):
    tmp, _ = photos_run
    table = pd.read_csv(tmp / "out" / "results" / "table3_ablation.csv")
    assert len(table) == 8 and table["gt_l1"].isna().all()  # 7 variants and "source unchanged"; no oracle without truth
    assert table["rec_l1"].map(math.isfinite).all() and table["landmark_nme_factor"].map(math.isfinite).all()


@pytest.fixture(scope="module")
def hands_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hands")
    write_hands(tmp / "drawn", n_identities=24, per_identity=8)
    prepare.main(["keypoints", "--root", str(tmp / "drawn"), "--out", str(tmp / "prepared"), "--schema", "hand21",
                  "--size", "64"])
    only = ["00_data", "01_focal_points", "02_train", "03_ablation", "06_interpolation"]
    manifest = pipeline.run("smoke", data=str(tmp / "prepared"), only=only, out=tmp / "out")
    return tmp, manifest


def test_hand_folder_sets_the_boundary_channels(hands_run):
    tmp, _ = hands_run
    assert folder_schema(tmp / "prepared") == HAND21
    cfg = config("smoke", data=str(tmp / "prepared"))
    assert cfg.data.boundary_channels == cfg.model.boundary_channels == HAND21.n_curves == 5
    ds = FolderFaces(tmp / "prepared", "test", size=32, boundary_channels=5)
    assert ds.landmarks.shape[1:] == (21, 2) and ds.get_batch([0])["c"].shape == (1, 5, 32, 32)
    with pytest.raises(ValueError, match="5 curves"):
        FolderFaces(tmp / "prepared", "test", boundary_channels=13)


def test_manipulation_figures_rerun_on_hands(hands_run):
    tmp, manifest = hands_run
    assert pipeline.notebooks_ran(manifest) == {
        "00_data", "01_focal_points", "02_train", "03_ablation", "06_interpolation"}
    for name in ("data_samples", "boundary_channels", "train_samples", "fig8_ablation", "fig9_interpolation"):
        assert not _blank(tmp / "out" / "figures" / f"{name}.png"), name
    table = pd.read_csv(tmp / "out" / "results" / "table3_ablation.csv")
    assert table["landmark_nme_factor"].map(math.isfinite).all()  # normalised by the palm length (wrist to middle base)
