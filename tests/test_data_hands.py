"""The notebooks on a prepared folder of a non-face keypoint schema: the manipulation figures rerun on drawn hands
(hand21), the real-data work's second done-when."""
import math

import pandas as pd
import pytest

from afvae import pipeline
from afvae.boundaries import HAND21
from afvae.data.datasets import FolderFaces, folder_schema
from afvae.data.real import prepare
from afvae.experiment import config
from skeletons import blank, write_hands

pytestmark = pytest.mark.notebooks


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
        assert not blank(tmp / "out" / "figures" / f"{name}.png"), name
    table = pd.read_csv(tmp / "out" / "results" / "table3_ablation.csv")
    assert table["landmark_nme_factor"].map(math.isfinite).all()  # normalised by the palm length (wrist to middle base)
