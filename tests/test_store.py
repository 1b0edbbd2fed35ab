"""Folder datasets stream their images from disk: memory holds a batch, never a split; pixels are unchanged."""
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from afvae.data import store
from afvae.data.datasets import FolderFaces, export_synthetic


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return export_synthetic(tmp_path_factory.mktemp("faces") / "f", size=64, n_identities=40, images_per_identity=10)


def _pngs(root, files, size=None):
    """The reference: every file decoded (and bicubic-resized) as the in-memory loader used to."""
    images = [Image.open(root / f).convert("RGB") for f in files]
    if size:
        images = [im.resize((size, size), Image.BICUBIC) for im in images]
    return torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2)


@pytest.mark.parametrize("size", [64, 32])
def test_streamed_pixels_are_the_decoded_pngs(folder, size):
    ds = FolderFaces(folder, "train", size=size)
    idx = torch.tensor([5, 0, 17, 5, len(ds) - 1])
    expected = _pngs(folder, [ds.files[i] for i in idx], size if size != 64 else None)
    assert torch.equal(ds.images[idx], expected)
    batch = ds.get_batch(idx)
    assert torch.equal(batch["x"], expected.float() / 127.5 - 1) and batch["x"].shape == (5, 3, size, size)
    assert len(list((folder / "cache").glob(f"images-{size}px-*.u8"))) == 1


def test_a_split_is_not_loaded_into_memory(folder):
    FolderFaces(folder, "all")  # the store exists from here on (its one-off build streams image by image)
    tracemalloc.start()
    ds = FolderFaces(folder, "all")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    whole = len(ds) * 3 * 64 * 64  # what holding the split's images takes
    assert not isinstance(ds.images, torch.Tensor)
    assert peak < whole / 4, f"building the dataset peaked at {peak / 1e6:.1f} MB; the images are {whole / 1e6:.1f} MB"


def test_dataloader_workers_read_the_store(folder):
    ds = FolderFaces(folder, "test")
    loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2, shuffle=False)
    got = torch.cat([b["x"] for b in loader])
    assert torch.equal(got, ds.get_batch(torch.arange(len(ds)))["x"])


def test_a_reprepared_folder_gets_a_new_store_and_the_old_one_goes(tmp_path):
    root = export_synthetic(tmp_path / "f", size=32, n_identities=20, images_per_identity=2, seed=0)
    assert len(FolderFaces(root, "all")) == 40
    old = list((root / "cache").glob("images-32px-*.u8"))
    export_synthetic(tmp_path / "g", size=32, n_identities=20, images_per_identity=3, seed=1)
    for name in ("images", "landmarks.csv", "meta.json", "factors.csv"):  # re-prepared in place, cache kept
        (root / name).rename(tmp_path / f"old-{name}")
        (tmp_path / "g" / name).rename(root / name)
    ds = FolderFaces(root, "all")
    assert len(ds) == 60 and torch.equal(ds.images[[0, 59]], _pngs(root, [ds.files[0], ds.files[59]]))
    assert len(old) == 1 and not old[0].exists() and len(list((root / "cache").glob("images-32px-*.u8"))) == 1


def test_read_only_folder_decodes_each_image(folder, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(store, "build_store", refuse)
    ds = FolderFaces(folder, "test", size=48)
    assert isinstance(ds.images, store.PngImages)
    assert torch.equal(ds.images[[2, 0]], _pngs(folder, [ds.files[2], ds.files[0]], 48))


def test_prepare_writes_the_store_with_the_pngs(tmp_path):
    from afvae.data.real.prepare import prepare

    skdata = pytest.importorskip("skimage.data")

    class OneFace:
        name = "one-face"

        def __call__(self, image):
            from afvae.boundaries import mean_face_landmarks

            s = min(image.shape[:2])
            return (mean_face_landmarks(s).numpy() * 0.8 + 0.1 * s)[None]

    (tmp_path / "in" / "a").mkdir(parents=True)
    Image.fromarray(skdata.astronaut()).save(tmp_path / "in" / "a" / "1.png")
    Image.fromarray(skdata.chelsea()).save(tmp_path / "in" / "a" / "2.png")
    prepare("folder", tmp_path / "in", tmp_path / "out", size=48, landmarker=OneFace())
    (written,) = (tmp_path / "out" / "cache").glob("images-48px-*.u8")
    assert written.name == f"images-48px-{store.table_key(tmp_path / 'out')}.u8"
    files = pd.read_csv(tmp_path / "out" / "landmarks.csv")["file"]
    raw = np.fromfile(written, np.uint8).reshape(-1, 48, 48, 3)
    assert torch.equal(torch.from_numpy(raw).permute(0, 3, 1, 2), _pngs(tmp_path / "out", files))
