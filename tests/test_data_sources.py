"""The notebooks on a prepared folder of real photographs, through detection (drawn hands: test_data_hands.py).

Done-when of the real-data work: ``python -m afvae.data.real.prepare folder --root PHOTOS --out DIR`` then the pipeline
at smoke scale on ``DIR`` runs end to end.
"""
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from afvae import pipeline
from afvae.data.real import prepare
from skeletons import blank

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
    assert len(figures) >= 8 and not [f.name for f in figures if blank(f)]


def test_table3_on_photos_has_no_ground_truth_but_real_metrics(photos_run):
    tmp, _ = photos_run
    table = pd.read_csv(tmp / "out" / "results" / "table3_ablation.csv")
    assert len(table) == 8 and table["gt_l1"].isna().all()  # 7 variants and "source unchanged"; no oracle without truth
    assert table["rec_l1"].map(math.isfinite).all() and table["landmark_nme_factor"].map(math.isfinite).all()
