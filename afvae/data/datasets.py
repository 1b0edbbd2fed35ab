"""Datasets that training reads, whatever the source: the embedded synthetic faces, hands or cats, or a prepared
folder.

``DataConfig.source`` names it: "synthetic" (faces), "synthetic-hands", "synthetic-cats" (``SYNTHETIC``), or a
folder's path. Every item is a dict: ``x`` (3, H, W) float32 in [-1, 1], ``c`` (C, H, W) boundary map in [0, 1]
(C = the schema's curves: 13 for faces, 5 for hands, 4 for cats; or 1 for the merged map), ``landmarks`` (P, 2)
pixels (P = 68 for faces, 21 for hands, 9 for cats),
``identity`` int64, and for synthetic data also the generative factors ``appearance`` (A,) and ``structure``
(S,). ``collate(dataset, idx)`` gives the same keys batched. Images are uint8: in memory for the synthetic
faces, read from disk per batch for folders (``afvae.data.store``).

The folder format (what ``export_synthetic`` writes and real-data preparation also produces):
``images/000000.png ...``, ``landmarks.csv`` (file, identity, split, x0, y0, ..., x{P-1}, y{P-1}),
``meta.json`` (size, schema "face68" | "hand21" | "cat9", source, counts ...) and, for synthetic data only,
``factors.csv`` (file, then the appearance and structure columns of ``afvae.data.synthetic``).
"""
from __future__ import annotations

import functools
import json
import logging
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from afvae.atomic import replace_dir
from afvae.boundaries import FACE68, SCHEMAS, Schema, boundary_map, drop_hidden_curves, merged_map
from afvae.config import Config, DataConfig
from afvae.data import synthetic as syn
from afvae.data.store import open_images
from afvae.images import from_uint8, to_uint8

log = logging.getLogger(__name__)
SPLITS = ("train", "test", "all")
SYNTHETIC = {"synthetic": "faces", "synthetic-hands": "hands", "synthetic-cats": "cats"}  # source -> subject


def synthetic_subject(source: str) -> syn.Subject | None:
    """The procedural subject a data source names (``SYNTHETIC``), or None for a folder."""
    return syn.SUBJECTS[SYNTHETIC[source]] if source in SYNTHETIC else None


def _boundaries(landmarks: Tensor, size: int, channels: int, schema: Schema = FACE68,
                visible: Tensor | None = None) -> Tensor:
    """(B, P, 2) pixels -> (B, channels, size, size): the schema's curves, or 1 merged channel; with ``visible``
    (B, P) bool, the hidden eye and brow curves dropped (``drop_hidden_curves``)."""
    c = boundary_map(landmarks, size, schema=schema)
    c = c if visible is None else drop_hidden_curves(c, visible, schema)
    return merged_map(c) if channels == 1 else c


def _check_channels(what: str, schema: Schema, channels: int) -> None:
    """Raise ValueError unless ``channels`` is the schema's curve count or 1 (the merged map)."""
    if channels not in (1, schema.n_curves):
        raise ValueError(f"{what}: schema {schema.name} draws {schema.n_curves} curves, but {channels} boundary "
                         "channels were asked for; build the config with afvae.data.datasets.for_data(cfg, source), "
                         "which sets them")


class _FaceDataset(Dataset):
    """Shared item access over in-memory uint8 images, landmarks, identities and optional factors."""

    images: Tensor  # (N, 3, H, W) uint8
    landmarks: Tensor  # (N, P, 2) pixels, P = schema.n_points
    identity: Tensor  # (N,) int64
    factors: dict[str, Tensor]  # "appearance" (N, A), "structure" (N, S), or empty
    size: int
    boundary_channels: int
    schema: Schema = FACE68

    def __len__(self) -> int:
        return self.images.shape[0]

    def get_batch(self, idx: Tensor | Sequence[int], keys: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Items idx batched: x (B, 3, H, W), c (B, C, H, W), landmarks, identity and the factors."""
        idx = torch.as_tensor(idx, dtype=torch.int64)
        want = set(keys) if keys is not None else None
        out: dict[str, Tensor] = {}
        if want is None or "x" in want:
            out["x"] = from_uint8(self.images[idx])
        if want is None or "c" in want:
            out["c"] = self.boundaries(self.landmarks[idx])
        out["landmarks"], out["identity"] = self.landmarks[idx], self.identity[idx]
        out.update({k: v[idx] for k, v in self.factors.items()})
        return out if want is None else {k: v for k, v in out.items() if k in want}

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[0] for k, v in self.get_batch([int(i)]).items()}

    def boundaries(self, landmarks: Tensor, visible: Tensor | None = None) -> Tensor:
        """Boundary maps as this dataset draws them: (B, P, 2) pixels -> (B, C, size, size); ``visible`` (B, P)
        drops the curves of hidden eyes and brows."""
        return _boundaries(landmarks, self.size, self.boundary_channels, self.schema, visible)


class SyntheticFaces(_FaceDataset):
    """An embedded procedural subject (faces unless ``subject`` says hands or cats): identities split 90 / 10
    (disjoint), each under many structures."""

    def __init__(self, size: int = 64, n_identities: int = 200, images_per_identity: int = 40, split: str = "train",
                 seed: int = 0, boundary_channels: int = 13, progress: bool | None = None,
                 subject: syn.Subject | None = None, identities: Sequence[int] | None = None):
        """``identities``: ids to draw instead of the split's; ids from ``n_identities`` up lie outside the
        population, so no model trained on it has seen them (``afvae.failures``)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.subject = syn.FACES if subject is None else subject
        self.schema = self.subject.schema
        _check_channels(f"synthetic {self.subject.name}", self.schema, boundary_channels)
        self.size, self.seed, self.boundary_channels = size, seed, boundary_channels
        self.n_identities, self.images_per_identity, self.split = n_identities, images_per_identity, split
        test = syn.held_out_identities(n_identities, seed)
        keep = {"train": ~test, "test": test, "all": torch.ones_like(test)}[split]
        self.identities = (keep.nonzero()[:, 0] if identities is None  # (n,) ids of this split's identities
                           else torch.as_tensor(list(identities), dtype=torch.int64).unique())  # sorted
        n_images = len(self.identities) * images_per_identity
        progress = n_images >= 2000 if progress is None else progress
        faces = syn.make_faces(size, self.identities, images_per_identity, seed, progress=progress,
                               subject=self.subject)
        self.images, self.landmarks, self.identity = faces.images, faces.landmarks, faces.identity
        self.structure = faces.structure
        self.factors = {"appearance": faces.appearance.to_vector(), "structure": faces.structure.to_vector()}
        self._appearance = faces.appearance.index(slice(None, None, images_per_identity))  # one per identity

    def appearance_of(self, identity: int | Tensor) -> syn.Factors:
        """Appearance of identity id(s) of this split (B,) -> batch of B."""
        ids = torch.as_tensor(identity, dtype=torch.int64).reshape(-1)
        pos = torch.searchsorted(self.identities, ids).clamp(max=len(self.identities) - 1)
        if (self.identities[pos] != ids).any():
            raise KeyError(f"identities {ids.tolist()} are not all in the {self.split!r} split")
        return self._appearance.index(pos)

    def render_identity(self, identity: int | Tensor, structure: syn.Factors, quantize: bool = True,
                        occlusion: str = "none") -> dict[str, Tensor]:
        """Identity id(s) under structure(s) of this subject (batches broadcast): x, c, landmarks like get_batch.

        ``occlusion`` "profile" (faces only): landmarks in the profile convention (``syn.render``), a ``visible``
        (B, 68) mask from the geometry, and the hidden eye and brow curves dropped from ``c``. The data sets
        themselves are drawn with "none", the 3-D points.
        """
        app = self.appearance_of(identity)
        if occlusion == "none":
            x, lm = self.subject.render(app, structure, self.size)
            visible = None
        elif self.subject is syn.FACES:
            x, lm = syn.render(app, structure, self.size, occlusion=occlusion)
            visible = syn.landmark_visibility(app, structure)
        else:
            raise ValueError(f"occlusion {occlusion!r} is for faces; synthetic {self.subject.name} take 'none'")
        x = from_uint8(to_uint8(x)) if quantize else x  # quantized like the stored images
        out = {"x": x, "c": self.boundaries(lm, visible), "landmarks": lm}
        return out if visible is None else out | {"visible": visible}

    def true_target(self, index: int | Tensor, structure: syn.Factors, quantize: bool = True,
                    occlusion: str = "none") -> dict[str, Tensor]:
        """The ground truth of a manipulation: the identity of item(s) ``index`` under ``structure`` (the subject's
        Structure, e.g. ``syn.HandStructure.create(...)`` for hands); ``occlusion`` as in ``render_identity``."""
        return self.render_identity(self.identity[torch.as_tensor(index).reshape(-1)], structure, quantize, occlusion)

    def render_pair(self, index: int | Tensor, target_index: int | Tensor) -> dict[str, Tensor]:
        """Source items and their identities under the structures of target items.

        Returns x (source images), c_target (the targets' boundary maps) and x_target (the truth).
        """
        index = torch.as_tensor(index).reshape(-1)
        target_index = torch.as_tensor(target_index).reshape(-1)
        truth = self.true_target(index, self.structure.index(target_index))
        return {"x": from_uint8(self.images[index]), "c_target": truth["c"], "x_target": truth["x"],
                "landmarks_target": truth["landmarks"]}


# ---------------------------------------------------------------------------------------------------------
# The folder format
# ---------------------------------------------------------------------------------------------------------

def _landmark_columns(n_points: int = 68) -> list[str]:
    return [f"{a}{i}" for i in range(n_points) for a in ("x", "y")]


def landmark_table(files: Sequence[str], identity: Sequence[int], split: Sequence[str],
                   landmarks: np.ndarray) -> pd.DataFrame:
    """The folder format's landmarks.csv: file, identity, split, x0, y0, ... from landmarks (N, P, 2) pixels."""
    N, P = landmarks.shape[:2]
    table = pd.DataFrame(np.asarray(landmarks, np.float64).reshape(N, 2 * P), columns=_landmark_columns(P))
    table.insert(0, "split", list(split))
    table.insert(0, "identity", list(identity))
    table.insert(0, "file", list(files))
    return table


def write_folder(out_dir: str | Path, images: Tensor, landmarks: Tensor, identity: Tensor, split: Sequence[str],
                 meta: dict[str, Any], factors: pd.DataFrame | None = None) -> Path:
    """Write a face folder atomically (a temporary sibling renamed into place); replaces out_dir.

    images (N, 3, H, W) uint8, landmarks (N, P, 2) pixels, identity (N,), split N strings; ``meta["schema"]``
    names the keypoint schema (default "face68") and must have P points.
    """
    schema = SCHEMAS[meta.get("schema", FACE68.name)]
    if landmarks.shape[1] != schema.n_points:
        raise ValueError(f"schema {schema.name} has {schema.n_points} points, landmarks have {landmarks.shape[1]}")
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    (tmp / "images").mkdir(parents=True)
    files = [f"images/{i:06d}.png" for i in range(images.shape[0])]
    for f, img in zip(files, images.permute(0, 2, 3, 1).numpy()):
        Image.fromarray(img).save(tmp / f)
    table = landmark_table(files, identity.tolist(), split, landmarks.numpy())
    table.to_csv(tmp / "landmarks.csv", index=False, float_format="%.4f")
    if factors is not None:
        factors.insert(0, "file", files)
        factors.to_csv(tmp / "factors.csv", index=False, float_format="%.6g")
    meta = {"size": int(images.shape[-1]), "schema": schema.name, "n_images": int(images.shape[0]), **meta}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return replace_dir(tmp, out)


def export_synthetic(out_dir: str | Path, size: int = 64, n_identities: int = 200, images_per_identity: int = 40,
                     seed: int = 0, progress: bool = False) -> Path:
    """Render the whole synthetic dataset (all identities) and write it as a face folder.

    Rendered split by split, as ``SyntheticFaces`` renders them, so that a render cache (``$AFVAE_RENDER_CACHE``)
    serves the export from the training and test sets' renders; then put back in identity order."""
    test = syn.held_out_identities(n_identities, seed)
    ids = torch.arange(n_identities)
    parts = [syn.make_faces(size, ids[keep], images_per_identity, seed, progress=progress)
             for keep in (~test, test) if keep.any()]
    faces = syn.FaceSet.cat(parts)
    faces = faces.index(torch.argsort(faces.identity, stable=True))  # identity-major, as one render of all
    split = ["test" if test[i] else "train" for i in faces.identity.tolist()]
    factors = pd.DataFrame(torch.cat([faces.appearance.to_vector(), faces.structure.to_vector()], 1).numpy(),
                           columns=syn.appearance_columns() + syn.structure_columns())
    meta = {"source": "synthetic", "seed": seed, "n_identities": n_identities,
            "images_per_identity": images_per_identity, "n_train": split.count("train"),
            "n_test": split.count("test"), "pixel_centres": "pixel (row i, col j) is centred at (x=j, y=i)"}
    path = write_folder(out_dir, faces.images, faces.landmarks, faces.identity, split, meta, factors)
    log.info("wrote %d faces to %s", len(split), path)
    return path


def read_meta(root: str | Path) -> dict[str, Any]:
    """A prepared folder's meta.json, with a clear error when ``root`` is not such a folder."""
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {root} is not a prepared data folder; make one with "
                                f"'python -m afvae.data.real.prepare SOURCE --root DIR --out {root}' "
                                "(see README, Real data)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); prepare the folder again") from None


def folder_schema(root: str | Path, meta: dict[str, Any] | None = None) -> Schema:
    """The keypoint schema a prepared folder declares in meta.json (face68 when it names none); ``meta``: its
    already-read meta.json."""
    name = (read_meta(root) if meta is None else meta).get("schema", FACE68.name)
    if name not in SCHEMAS:
        raise ValueError(f"{Path(root) / 'meta.json'}: unknown schema {name!r}; known: {sorted(SCHEMAS)}")
    return SCHEMAS[name]


def for_data(cfg: Config, source: str) -> Config:
    """``cfg`` reading ``source`` (a ``SYNTHETIC`` name or a prepared folder), its boundary channels set to the
    source's schema (13 for faces, 5 for hands, 4 for cats; a merged single-channel map stays merged)."""
    cfg = cfg.replace(data={"source": source})
    if cfg.data.boundary_channels == 1:
        return cfg
    subject = synthetic_subject(source)
    n = (subject.schema if subject is not None else folder_schema(source)).n_curves
    return cfg.replace(data={"boundary_channels": n}, model={"boundary_channels": n})


class FolderFaces(_FaceDataset):
    """A prepared folder (see the module docstring) split by its ``split`` column; resized to ``size`` if given.

    Any keypoint schema: ``meta.json`` names it, and ``boundary_channels`` must be its curve count or 1.
    Images stay on disk (``afvae.data.store``): each batch reads its items, so a split of any size trains
    within a fixed memory; landmarks, identities and factors are in memory.
    """

    def __init__(self, root: str | Path, split: str = "train", size: int | None = None, boundary_channels: int = 13):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root = Path(root)
        self.meta = read_meta(self.root)
        self.schema = folder_schema(self.root, self.meta)
        _check_channels(str(self.root), self.schema, boundary_channels)
        table = pd.read_csv(self.root / "landmarks.csv", dtype={c: np.float32 for c in
                                                               _landmark_columns(self.schema.n_points)})
        files = table["file"].tolist()  # every row: the store holds them all, in this order
        rows = np.ones(len(table), bool) if split == "all" else (table["split"] == split).to_numpy()
        table = table[rows]
        if table.empty:
            raise ValueError(f"{self.root / 'landmarks.csv'} has no {split!r} rows; prepare more images")
        native = int(self.meta["size"])
        self.size, self.boundary_channels = size or native, boundary_channels
        self.images = open_images(self.root, files, np.flatnonzero(rows), self.size)  # (N, 3, S, S) on disk
        scale = self.size / native  # pixel centres: x' = (x + 0.5) * scale - 0.5
        P = self.schema.n_points
        marks = torch.tensor(table[_landmark_columns(P)].to_numpy(np.float32)).view(-1, P, 2)
        self.landmarks = (marks + 0.5) * scale - 0.5
        self.identity = torch.tensor(table["identity"].to_numpy(), dtype=torch.int64)
        self.files = table["file"].tolist()
        self.factors = self._read_factors(rows)

    def _read_factors(self, rows: np.ndarray) -> dict[str, Tensor]:
        path = self.root / "factors.csv"
        if not path.exists():
            return {}
        table = pd.read_csv(path)[rows]
        as_tensor = lambda cols: torch.tensor(table[cols].to_numpy(), dtype=torch.float32)  # noqa: E731
        return {"appearance": as_tensor(syn.appearance_columns()), "structure": as_tensor(syn.structure_columns())}


@functools.lru_cache(maxsize=4)
def build_dataset(data: DataConfig, split: str) -> _FaceDataset:
    """The dataset a DataConfig names: a synthetic subject (``SYNTHETIC``), or a prepared folder at ``data.source``.

    Cached per process (datasets are read-only after construction): training, the factor net and the
    evaluation share one render of the same faces.
    """
    subject = synthetic_subject(data.source)
    if subject is not None and split == "train" and data.train_images:
        return SyntheticFaces(data.size, data.n_identities, 1, split, data.seed, data.boundary_channels,
                              subject=subject, identities=training_identities(data))
    if subject is not None:
        return SyntheticFaces(data.size, data.n_identities, data.images_per_identity, split, data.seed,
                              data.boundary_channels, subject=subject)
    if data.train_images:
        raise ValueError(f"data.train_images ({data.train_images}) renders new identities, which only the synthetic "
                         f"sources ({', '.join(SYNTHETIC)}) can do; set it to 0 for the folder {data.source!r}")
    return FolderFaces(data.source, split, data.size, data.boundary_channels)


def training_identities(data: DataConfig) -> list[int]:
    """The ``data.train_images`` identities of a one-image-per-identity train split: the population's training
    identities, then new ones from ``n_identities`` up (outside the population: never a test identity)."""
    own = (~syn.held_out_identities(data.n_identities, data.seed)).nonzero()[:, 0].tolist()
    return (own + list(range(data.n_identities, data.n_identities + data.train_images)))[:data.train_images]


def unseen_identities(data: DataConfig, n: int) -> range:
    """``n`` identities outside the population of ``data`` and past every new identity its train split renders
    (``training_identities``): people no model of ``data`` was trained on or tested with."""
    start = data.n_identities + data.train_images
    return range(start, start + n)


def collate(dataset: Dataset, idx: Tensor | Sequence[int], keys: Sequence[str] | None = None) -> dict[str, Tensor]:
    """Items idx of dataset as one batch dict (keys: optionally only these, e.g. skip the boundary maps)."""
    if isinstance(dataset, _FaceDataset):
        return dataset.get_batch(idx, keys)
    items = [dataset[int(i)] for i in idx]
    return {k: torch.stack([it[k] for it in items]) for k in items[0] if keys is None or k in keys}
