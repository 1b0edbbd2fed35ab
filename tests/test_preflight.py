"""The pipeline's pre-flight: every notebook's data needs checked before the first one runs, all shortfalls
listed at once, notebooks that cannot run skipped with their reason (no notebook is executed here)."""
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from afvae import pipeline, preflight
from afvae.data.datasets import landmark_table
from afvae.data.real.prepare import identity_split


def _folder(root: Path, photos_per_person: list[int]) -> Path:
    """A prepared folder's tables (no images: the pre-flight reads only meta.json and landmarks.csv), split
    like ``afvae.data.real.prepare`` splits people."""
    names = [f"person{i}" for i, n in enumerate(photos_per_person) for _ in range(n)]
    split = identity_split(names)
    ids = {n: i for i, n in enumerate(dict.fromkeys(names))}
    root.mkdir(parents=True)
    table = landmark_table([f"images/{i:06d}.png" for i in range(len(names))], [ids[n] for n in names],
                           [split[n] for n in names], np.zeros((len(names), 68, 2)))
    table.to_csv(root / "landmarks.csv", index=False)
    (root / "meta.json").write_text(json.dumps({"size": 64, "schema": "face68", "n_images": len(names)}))
    return root


@pytest.fixture
def executed(monkeypatch, tmp_path):
    """Record the notebooks the pipeline would execute instead of executing them."""
    ran = []
    monkeypatch.setattr(pipeline, "execute", lambda nb, params, *echo: ran.append(nb.stem) or 0.0)
    monkeypatch.setattr(pipeline, "manifest", lambda *a, **k: {"wall_seconds": {}})
    monkeypatch.setattr(pipeline, "pooled_runs", lambda stems, *a: (stems, []))  # the notebooks, not their runs
    monkeypatch.setattr(pipeline, "train_up_front",  # the training pool: recorded as one step, trains nothing
                        lambda stems, *a: ran.append("train_pool") or {"seconds": 0.0, "runs": {"stems": stems}})
    return ran


def test_thirteen_photos_list_every_shortfall_at_once_and_skip(tmp_path, executed, capsys):
    data = _folder(tmp_path / "thirteen", [1] * 13)  # 13 photos, one person each: 12 train, 1 test
    t0 = time.perf_counter()
    result = pipeline.run("smoke", str(data), out=tmp_path / "out")
    out = capsys.readouterr().out
    assert time.perf_counter() - t0 < 1.0
    assert executed == ["00_data", "01_focal_points"]  # k-means of 8 focal points fits on 12 faces
    skipped = result["skipped"]
    assert set(skipped) == {p.stem for p in pipeline.notebooks()} - {"00_data", "01_focal_points"}
    assert "16 training images" in skipped["02_train"] and "has 12" in skipped["02_train"]
    assert "2 test identities" in skipped["03_ablation"] and "has 1" in skipped["03_ablation"]
    assert "6 test images" in skipped["11_cvae_tutorial"]
    assert "synthetic" in skipped["07_manipulation"]
    head = out[:out.index("00_data ...")]  # all of it printed before the first notebook starts
    assert all(f"{stem} skipped" in head for stem in skipped)
    assert "15 people" in head  # the minimum folder, in photos of people


def test_seven_people_train_but_skip_what_needs_more_test_faces(tmp_path, executed):
    data = _folder(tmp_path / "seven", [4] * 7)  # 7 people x 4 photos: 24 train, 1 test person with 4
    result = pipeline.run("smoke", str(data), out=tmp_path / "out")
    assert executed == ["00_data", "01_focal_points", "train_pool", *["02_train"] * 7, "04_pixel_shuffle",
                        "05_weight_norm"]
    assert result["train_pool"] == {"stems": ["00_data", "01_focal_points", "02_train", "04_pixel_shuffle",
                                              "05_weight_norm"]}  # what runs, skipped notebooks left out
    assert set(result["skipped"]) == {"03_ablation", "06_interpolation", "07_manipulation", "08_identity",
                                      "09_comparison", "10_explorer", "11_cvae_tutorial", "12_hands_cats",
                                      "13_failures", "14_prior_beta"}
    assert "test images of other identities" in result["skipped"]["09_comparison"]


def test_the_documented_minimum_runs_everything(tmp_path, executed):
    data = _folder(tmp_path / "fifteen", [3] * 15)  # the README's minimum: 15 people, 3 photos each
    for scale in ("smoke", "default"):
        executed.clear()
        result = pipeline.run(scale, str(data), out=tmp_path / scale)
        assert set(result["skipped"]) == pipeline.SYNTHETIC_ONLY, scale
    counts = preflight.folder_counts(data)
    assert (counts.train_images, counts.test_images, counts.test_identities) == (39, 6, 2)
    short = _folder(tmp_path / "fourteen", [3] * 14)
    assert preflight.folder_counts(short).test_identities == 1  # 10 % of 14 people rounds to one


def test_nothing_runnable_exits_2_listing_everything(tmp_path, executed, capsys):
    data = _folder(tmp_path / "alone", [5])  # one person, 5 photos: no test split, less than K = 8 faces
    with pytest.raises(SystemExit) as e:
        pipeline.main(["--scale", "smoke", "--data", str(data), "--out", str(tmp_path / "out")])
    assert e.value.code == 2 and executed == []
    err = capsys.readouterr().err
    assert "00_data skipped" in err and "11_cvae_tutorial skipped" in err and "no notebook can run" in err


def test_synthetic_data_skips_nothing(tmp_path, executed):
    result = pipeline.run("smoke", "synthetic", only=["00_data", "07_manipulation"], out=tmp_path)
    assert executed == ["00_data", "07_manipulation"] and result["skipped"] == {}


def test_needs_follow_the_notebooks_own_numbers():
    """The pre-flight's counts are those the notebooks use (a changed notebook must change them too)."""
    def code(stem):
        nb = json.loads((pipeline.NOTEBOOKS / f"{stem}.ipynb").read_text())
        return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")

    assert re.search(r"^N_SAMPLES = (\d+)", code("11_cvae_tutorial"), re.M)[1] == str(preflight.POSTERIOR_SWAPS)
    targets = re.search(r"^TARGET_EXPRESSIONS = (\(.*?\))", code("09_comparison"), re.M)[1]
    assert len(eval(targets)) == preflight.FIG4_TARGETS
    from afvae.tutorial import tiny_config

    for scale in ("smoke", "default"):
        assert preflight.needs(scale)["11_cvae_tutorial"]["train_images"] == \
            tiny_config(scale, "standard", 1e-5).train.batch_size


def test_the_long_scale_skips_notebooks_whose_runs_are_not_shipped(tmp_path, executed, capsys, monkeypatch):
    """At SCALE=long (the shipped models) nothing trains: the beta sweep, which weights/ does not ship, is
    skipped with what is missing; RETRAIN=1 runs it. Several seeds at long need training: refused."""
    stems = ["02_train", "14_prior_beta"]
    result = pipeline.run("long", only=stems, out=tmp_path / "out")
    assert "14_prior_beta" in result["skipped"] and "14_prior_beta" not in executed and "02_train" in executed
    assert "14_prior_beta skipped: weights/ ships no long-preset model for 9 of its runs" in capsys.readouterr().out
    executed.clear()
    monkeypatch.setenv("AFVAE_RETRAIN", "0")  # run() sets it for the notebooks' kernels; restored after the test
    assert pipeline.run("long", only=stems, out=tmp_path / "again", retrain=True)["skipped"] == {}
    assert "14_prior_beta" in executed
    with pytest.raises(SystemExit, match="one training seed per model"):
        pipeline.main(["--scale", "long", "--seeds", "3"])
