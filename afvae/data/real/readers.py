"""Real datasets on disk -> ``Source``: one reader per layout, each finding the images, identities and keypoints.

Nothing here downloads anything: you obtain each dataset yourself, under its own licence, and point
``python -m afvae.data.real.prepare SOURCE --root DIR`` at it. Each reader returns a ``Source``: one ``Item``
per image (or per annotated face), with an identity name and, where the dataset ships them, the keypoints
(then no detector runs). A missing or mis-laid dataset raises ``DatasetNotFound`` naming the file that
was expected and where; a single unusable entry (a file name that does not parse, a malformed annotation)
is listed in ``Source.rejects`` and never stops the run.

Keypoints are in pixels of the original image with pixel (row i, column j) centred at (x=j, y=i).
The layout each reader expects, and each dataset's licence, are listed in ``afvae.data.real`` (what
``--help`` shows); ``READERS`` has one reader per name of ``afvae.data.real.SOURCES``.
"""
from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError

from afvae.boundaries import CAT9, FACE68, SCHEMAS, Schema

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
EXIF_ORIENTATION = 0x0112

# WFLW's 98 points -> iBUG 68: every second contour point, the upper edge of each eyebrow, the nose, six of
# each eye's eight points (corners and the two lids' points nearest the corners' thirds), the whole mouth.
WFLW_TO_68: tuple[int, ...] = (
    *range(0, 33, 2),  # contour 0-16
    33, 34, 35, 36, 37,  # left eyebrow 17-21
    42, 43, 44, 45, 46,  # right eyebrow 22-26
    *range(51, 60),  # nose 27-35
    60, 61, 63, 64, 65, 67,  # left eye 36-41
    68, 69, 71, 72, 73, 75,  # right eye 42-47
    *range(76, 96),  # mouth 48-67
)


class DatasetNotFound(FileNotFoundError):
    """A dataset (or one of its files) is not where its layout says it should be."""


@dataclass(frozen=True)
class Item:
    """One image (or one annotated face in it): its file, identity name and optionally given keypoints (N, 2)."""

    path: Path
    identity: str
    landmarks: np.ndarray | None = field(default=None, compare=False)
    attributes: tuple[tuple[str, str], ...] = ()
    key: str = ""  # tells several annotated faces of one image apart (WFLW)


@dataclass
class Source:
    """What a reader found: the items, their keypoint schema, and the entries it had to reject (file, reason)."""

    name: str
    schema: Schema
    root: Path
    items: list[Item]
    rejects: list[tuple[str, str]] = field(default_factory=list)


def _require(path: Path, source: str, hint: str) -> Path:
    if not path.exists():
        raise DatasetNotFound(f"{source}: expected {path} ({hint}). Obtain the dataset yourself under its "
                              f"licence and lay it out as `python -m afvae.data.real.prepare --help` describes.")
    return path


def _first_existing(candidates: Iterable[Path]) -> Path | None:
    return next((p for p in candidates if p.exists()), None)


def _images_under(folder: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files under ``folder`` (sorted), and the image-named symlinks that lead nowhere, with why."""
    images, broken = [], []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if p.is_file():
            images.append(p)
        elif p.is_symlink():
            broken.append((str(p), _broken_link(p)))
    return images, broken


def _broken_link(path: Path) -> str:
    """Why the symlink ``path`` does not lead to a file (a reject reason)."""
    target = os.readlink(path)
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"symlink loop: {target} leads back round to itself"
        return f"dangling symlink to {target} ({e.strerror.lower()}): restore the file or remove the link"
    return f"symlink to {target}, which is not a file"


def _nonempty(source: str, root: Path, items: list[Item], what: str) -> None:
    if not items:
        raise DatasetNotFound(f"{source}: no {what} found under {root}")


def decode_image(data: bytes, background: str = "white", exif_orientation: bool = False) -> np.ndarray:
    """Encoded image bytes -> (H, W, 3) uint8 RGB.

    Grayscale, palette, 16-bit and CMYK images are converted; transparency (RGBA, LA, palette with
    transparency) is composited over ``background`` ("white" or "black"). ``exif_orientation``: turn the
    pixels upright as the EXIF Orientation tag says (phone photos); leave it False where annotations refer
    to the stored pixels. Raises ``ValueError`` for an unreadable or truncated file, and for one over
    Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS`` x 2, about 179 MP).
    """
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Image.DecompressionBombError as e:
        pixels = [int(n) for n in re.findall(r"\d+", str(e))[:2]]
        raise ValueError(f"image too large: {pixels[0] / 1e6:.0f} MP, over Pillow's {pixels[1] / 1e6:.0f} MP "
                         f"decompression-bomb limit; downscale it if it is a real photograph") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        detail = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(e))  # no memory addresses in logs
        raise ValueError(f"unreadable image ({type(e).__name__}: {detail})") from e
    if exif_orientation and orientation(img) != 1:
        img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray((255 * arr / max(arr.max(), 1)).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        fill = (255, 255, 255) if background == "white" else (0, 0, 0)
        canvas = Image.new("RGB", img.size, fill)
        canvas.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        img = canvas
    return np.asarray(img.convert("RGB"))


def orientation(img: Image.Image | bytes) -> int:
    """The EXIF Orientation tag of an image (or its encoded bytes): 1 (upright, or no tag) to 8."""
    if isinstance(img, bytes):
        try:
            img = Image.open(io.BytesIO(img))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            return 1
    value = img.getexif().get(EXIF_ORIENTATION, 1)
    return value if value in range(1, 9) else 1


# ---------------------------------------------------------------------------------------------------------
# Face datasets whose landmarks are detected
# ---------------------------------------------------------------------------------------------------------

def celeba(root: str | Path) -> Source:
    """CelebA in torchvision's layout (see the module docstring): aligned images with their identity ids."""
    root = Path(root)
    base = root / "celeba" if (root / "celeba").is_dir() or not (root / "identity_CelebA.txt").exists() else root
    ids = _require(base / "identity_CelebA.txt", "celeba", "one '000001.jpg 2880' line per image")
    images = _require(base / "img_align_celeba", "celeba", "the aligned images 000001.jpg ... (unzip "
                      "img_align_celeba.zip there)")
    table = pd.read_csv(ids, sep=r"\s+", header=None, names=["file", "identity"], dtype=str)
    items, rejects = [], []
    for f, ident in zip(table["file"], table["identity"]):
        path = images / f
        if path.is_file():
            items.append(Item(path, ident))
        else:
            rejects.append((str(path), "listed in identity_CelebA.txt but missing"))
    _nonempty("celeba", images, items, "images listed in identity_CelebA.txt")
    return Source("celeba", FACE68, base, items, rejects)


RAFD_NAME = re.compile(r"Rafd(?P<angle>\d{3})_(?P<subject>\d+)_(?P<ethnicity>[A-Za-z]+)_(?P<gender>[A-Za-z]+)_"
                       r"(?P<expression>[A-Za-z]+)_(?P<gaze>[A-Za-z]+)$")


def rafd(root: str | Path) -> Source:
    """The Radboud Faces Database: identity and expression from each file name (see the module docstring)."""
    root = _require(Path(root), "rafd", "a folder of Rafd090_01_Caucasian_female_angry_frontal.jpg files")
    images, rejects = _images_under(root)
    items = []
    for path in images:
        m = RAFD_NAME.match(path.stem)
        if m is None:
            rejects.append((str(path), "file name does not follow Rafd{angle}_{subject}_{ethnicity}_{gender}_"
                                       "{expression}_{gaze}"))
            continue
        attrs = tuple((k, m[k]) for k in ("angle", "expression", "gaze", "gender", "ethnicity"))
        items.append(Item(path, f"{int(m['subject']):02d}", attributes=attrs))
    _nonempty("rafd", root, items, "Rafd*.jpg images")
    return Source("rafd", FACE68, root, items, rejects)


# Multi-PIE's 13 head-height cameras -> yaw in degrees, 15 degrees apart, in the order of the database paper's camera
# layout: 11_0 at -90, frontal 05_1 at 0, 24_0 at +90. The sign is this ordering's (the cameras 01_0, 24_0 ... on
# the positive side), not a measured head pose: check one image per sign against the synthetic faces' (yaw > 0
# turns the face to the image right) before mixing the two. The two raised cameras 08_1 and 19_1 have no yaw label.
MULTIPIE_YAW: dict[str, int] = {camera: 15 * i - 90 for i, camera in enumerate(
    ("11_0", "12_0", "09_0", "08_0", "13_0", "14_0", "05_1", "05_0", "04_1", "19_0", "20_0", "01_0", "24_0"))}


def multipie(root: str | Path, cameras: tuple[str, ...] | None = ("05_1",)) -> Source:
    """CMU Multi-PIE, ``data/sessionNN/multiview/subject/recording/camera/*.png``; identity = subject.

    ``cameras``: the camera folders to take (default the frontal ``05_1``; None: every camera). Each item's
    attributes hold session, recording, camera, flash and ``yaw`` (degrees, ``MULTIPIE_YAW``; "" for the raised
    cameras).
    """
    root = Path(root)
    data = _first_existing([root / "Multi-Pie" / "data", root / "data", root])
    if data is None or not any(data.glob("session*/multiview")):
        raise DatasetNotFound(f"multipie: expected {root / 'Multi-Pie' / 'data' / 'session01' / 'multiview'} "
                              f"(session/multiview/subject/recording/camera/*.png)")
    items = []
    for path in sorted(data.glob("session*/multiview/*/*/*/*.png")):
        subject, recording, camera = path.parts[-4], path.parts[-3], path.parts[-2]
        if cameras is None or camera in cameras:
            yaw = str(MULTIPIE_YAW[camera]) if camera in MULTIPIE_YAW else ""
            items.append(Item(path, subject, attributes=(("session", path.parts[-6]), ("recording", recording),
                                                         ("camera", camera), ("flash", path.stem.split("_")[-1]),
                                                         ("yaw", yaw))))
    _nonempty("multipie", data, items, "images" if cameras is None else f"images from cameras {cameras}")
    return Source("multipie", FACE68, data, items)


def folder(root: str | Path) -> Source:
    """Any folder of images: identity = first sub-folder under root, or the file stem for top-level images."""
    root = _require(Path(root), "folder", "a folder of images")
    images, rejects = _images_under(root)
    items = []
    for path in images:
        rel = path.relative_to(root)
        items.append(Item(path, rel.parts[0] if len(rel.parts) > 1 else path.stem))
    _nonempty("folder", root, items, f"images ({', '.join(IMAGE_EXTENSIONS)})")
    return Source("folder", FACE68, root, items, rejects)


# ---------------------------------------------------------------------------------------------------------
# Datasets that ship their keypoints
# ---------------------------------------------------------------------------------------------------------

def _wflw_line(line: str, images: Path, n: int, split: str) -> Item:
    """One WFLW annotation line of ``split`` -> an Item with 68 landmarks (raises ValueError if malformed)."""
    parts = line.split()
    if len(parts) != 196 + 4 + 6 + 1:
        raise ValueError(f"expected 207 fields, got {len(parts)}")
    pts98 = np.asarray(parts[:196], dtype=np.float64).reshape(98, 2)
    flags = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
    attrs = (*zip(flags, parts[200:206]), ("wflw_split", split))
    return Item(images / parts[206], f"{parts[206]}#{n}", pts98[list(WFLW_TO_68)], attrs, key=str(n))


def wflw(root: str | Path) -> Source:
    """WFLW with its 98-point annotations mapped to 68 (see the module docstring); no detection."""
    root = Path(root)
    base = root / "WFLW" if (root / "WFLW").is_dir() else root
    images = _require(base / "WFLW_images", "wflw", "the WIDER FACE images of WFLW")
    ann = _require(base / "WFLW_annotations" / "list_98pt_rect_attr_train_test", "wflw",
                   "list_98pt_rect_attr_train.txt and list_98pt_rect_attr_test.txt")
    items, rejects = [], []
    for split in ("train", "test"):
        path = _require(ann / f"list_98pt_rect_attr_{split}.txt", "wflw", "WFLW's annotation file")
        for i, line in enumerate(path.read_text().splitlines()):
            if not line.strip():
                continue
            try:
                items.append(_wflw_line(line, images, len(items), split))
            except ValueError as e:
                rejects.append((f"{path}:{i + 1}", f"malformed annotation: {e}"))
    _nonempty("wflw", ann, items, "annotations")
    return Source("wflw", FACE68, base, items, rejects)


def read_pts(path: str | Path) -> np.ndarray:
    """An iBUG .pts file -> (n_points, 2) as written (1-based for 300-W). Raises ValueError if malformed."""
    text = Path(path).read_text()
    m = re.search(r"n_points:\s*(\d+)\s*\{(.*?)\}", text, re.S)
    if m is None:
        raise ValueError("no 'n_points: N { ... }' block")
    pts = np.asarray(m[2].split(), dtype=np.float64).reshape(-1, 2)
    if len(pts) != int(m[1]):
        raise ValueError(f"n_points says {m[1]} but {len(pts)} points follow")
    return pts


def w300(root: str | Path) -> Source:
    """300-W (and its afw / helen / lfpw / ibug parts): .pts files beside their images; no detection."""
    root = _require(Path(root), "300w", "folders of NAME.png / NAME.jpg / ... with NAME.pts beside each")
    items, rejects = [], []
    for pts_path in sorted(root.rglob("*.pts")):
        image = _first_existing(pts_path.with_suffix(e) for e in IMAGE_EXTENSIONS)
        if image is None:
            rejects.append((str(pts_path), f"no image NAME{{{','.join(IMAGE_EXTENSIONS)}}} beside it"))
            continue
        try:
            pts = read_pts(pts_path) - 1.0  # Matlab's 1-based pixels -> ours
        except ValueError as e:
            rejects.append((str(pts_path), f"malformed .pts: {e}"))
            continue
        if pts.shape != (68, 2):
            rejects.append((str(pts_path), f"{len(pts)} points, face68 needs 68"))
            continue
        items.append(Item(image, str(image.relative_to(root).with_suffix("")), pts))
    _nonempty("300w", root, items, "NAME.pts files with their images")
    return Source("300w", FACE68, root, items, rejects)


def read_cat(path: str | Path) -> np.ndarray:
    """A CAT dataset .cat file ("9 x1 y1 ... x9 y9") -> (9, 2). Raises ValueError if malformed."""
    values = Path(path).read_text().split()
    if not values or values[0] != "9" or len(values) < 19:
        raise ValueError(f"expected '9' then 18 numbers, got {len(values)} values starting {values[:1]}")
    return np.asarray(values[1:19], dtype=np.float64).reshape(9, 2)


def cats(root: str | Path) -> Source:
    """The CAT dataset: NAME.jpg with NAME.jpg.cat beside it (9 keypoints) -> schema cat9; no detection."""
    root = _require(Path(root), "cats", "CAT_00/ ... folders of NAME.jpg and NAME.jpg.cat")
    items, rejects = [], []
    for cat in sorted(root.rglob("*.cat")):
        image = cat.with_suffix("")  # NAME.jpg.cat -> NAME.jpg
        if not image.is_file():
            rejects.append((str(cat), f"no image {image.name} beside it"))
            continue
        try:
            items.append(Item(image, image.stem, read_cat(cat)))
        except ValueError as e:
            rejects.append((str(cat), f"malformed .cat: {e}"))
    _nonempty("cats", root, items, "NAME.jpg.cat files with their images")
    return Source("cats", CAT9, root, items, rejects)


def _keypoint_rows(table: Path) -> tuple[list[dict], str | None]:
    """keypoints.csv / .json -> rows {"file", "identity"?, "keypoints" (N, 2)} and the schema the file names."""
    if table.suffix.lower() == ".json":
        doc = json.loads(table.read_text())
        rows = doc["items"] if isinstance(doc, dict) else doc
        return [{**r, "keypoints": np.asarray(r["keypoints"], np.float64)} for r in rows], \
            doc.get("schema") if isinstance(doc, dict) else None
    df = pd.read_csv(table)
    xs = sorted((c for c in df.columns if re.fullmatch(r"x\d+", c)), key=lambda c: int(c[1:]))
    cols = [c for x in xs for c in (x, "y" + x[1:])]
    missing = [c for c in ["file", "x0", *cols] if c not in df.columns]
    if missing:
        raise DatasetNotFound(f"keypoints: {table} needs columns file, [identity,] x0, y0, ..., x{{N-1}}, "
                              f"y{{N-1}}; missing {missing}")
    pts = df[cols].to_numpy(np.float64).reshape(len(df), -1, 2)
    ident = [None if pd.isna(i) else str(i) for i in df["identity"]] if "identity" in df.columns else [None] * len(df)
    return [{"file": f, "identity": i, "keypoints": p} for f, i, p in zip(df["file"], ident, pts)], None


def keypoints(root: str | Path, schema: str | Schema | None = None, table: str | Path | None = None) -> Source:
    """Images with a keypoint table (CSV or JSON, see the module docstring) for any schema; no detection."""
    root = Path(root)
    path = Path(table) if table else _first_existing([root / "keypoints.csv", root / "keypoints.json"])
    if path is None or not path.exists():
        raise DatasetNotFound(f"keypoints: expected {path or root / 'keypoints.csv'} (or keypoints.json): "
                              f"columns file, [identity,] x0, y0, ..., x{{N-1}}, y{{N-1}}")
    rows, named = _keypoint_rows(path)
    name = schema.name if isinstance(schema, Schema) else schema or named
    if name not in SCHEMAS:
        raise ValueError(f"keypoints: schema {name!r} unknown; give --schema one of {sorted(SCHEMAS)}")
    sch = SCHEMAS[name]
    items, rejects = [], []
    for row in rows:
        image, pts = root / row["file"], row["keypoints"]
        if pts.shape != (sch.n_points, 2):
            rejects.append((str(image), f"{pts.size // 2} keypoints, {sch.name} needs {sch.n_points}"))
        elif not image.is_file():
            rejects.append((str(image), f"listed in {path.name} but missing"))
        else:
            items.append(Item(image, str(row.get("identity") or Path(row["file"]).stem), pts))
    _nonempty("keypoints", root, items, f"images listed in {path.name}")
    return Source("keypoints", sch, root, items, rejects)


READERS: dict[str, Callable[..., Source]] = {
    "celeba": celeba, "rafd": rafd, "multipie": multipie, "wflw": wflw, "300w": w300, "folder": folder,
    "cats": cats, "keypoints": keypoints,
}


def open_source(name: str, root: str | Path, *, schema: str | None = None, table: str | Path | None = None
                ) -> Source:
    """The reader for ``name`` (one of ``READERS``) applied to root; checks the requested schema matches."""
    if name not in READERS:
        raise ValueError(f"unknown source {name!r}; choose one of {sorted(READERS)}")
    src = keypoints(root, schema, table) if name == "keypoints" else READERS[name](root)
    if schema is not None and schema != src.schema.name:
        raise ValueError(f"source {name!r} provides schema {src.schema.name!r}, not {schema!r}")
    return src
