"""Prepare a real dataset: ``python -m afvae.data.real.prepare SOURCE --root DIR --out DIR [--size 256] ...``.

Every source goes through the same steps: read each image (sha1 of its bytes), get its keypoints (the
dataset's own, or 68 landmarks from a detector, ``landmarks``), align it to the canonical template (``align``),
and write the folder format shared with the synthetic export (``afvae.data.datasets``):

``OUT/images/000000.png ...``  aligned crops, size x size RGB
``OUT/landmarks.csv``          file, identity, split, x0, y0, ..., x{N-1}, y{N-1} (pixels of the crop)
``OUT/meta.json``              size, schema, source, landmark backend, counts, seed, alignment
``OUT/sources.csv``            file, source (relative to ROOT), identity name, sha1, dataset attributes
``OUT/rejects.csv``            source, reason: every input that did not make it, and why
``OUT/cache/detections.jsonl`` one line per detected image, keyed by sha1 and backend
``OUT/cache/images-*.u8``      the crops again as one raw uint8 file, what training streams (``afvae.data.store``)

Identity names become ids 0..K-1 (natural order); about 10 % of identities (at least one, those of
lowest sha1(seed:name)) form the test split: disjoint from train, independent of file order, and unchanged
when images of known identities are added.

Resuming: detections are appended to the cache and flushed image by image, so an interrupted run loses
at most the image in flight, and a re-run detects only what is new (alignment and writing are redone:
they are cheap). Unreadable images are cached as such too. The outputs replace the previous ones only at
the end (images swapped in, each table written to a temporary file and renamed). An unreadable, too
small, face-less or multi-face image (face68 sources need one face per image) is a line in rejects.csv,
never an error. In a photo of several faces the one clear face is kept (weak candidates logged, and
``sources.csv`` says which face was kept and how many were found); ``--largest`` keeps the largest face
instead and ``--reject-multiple`` rejects any photo with more than one (``choose_face``).
"""
from __future__ import annotations

import argparse

from afvae.cli import add_debug, fail
from afvae.data import real

PROG = "python -m afvae.data.real.prepare"


def parser() -> argparse.ArgumentParser:
    """``python -m afvae.data.real.prepare``'s arguments (the layouts of ``afvae.data.real`` as epilog)."""
    layouts = real.__doc__.split("Layouts (``ROOT`` is ``--root``):", 1)[1]
    p = argparse.ArgumentParser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Align a real dataset into afvae's folder format.",
                                epilog="Expected layouts and licences:" + layouts.replace("``", ""))
    p.add_argument("source", choices=sorted(real.SOURCES))
    p.add_argument("--root", required=True, help="where the dataset lies (see the layouts below)")
    p.add_argument("--out", required=True, help="output folder (re-running resumes from OUT/cache)")
    p.add_argument("--size", type=int, default=256, help="crop side in pixels (default 256)")
    p.add_argument("--landmarks", default="auto", choices=["auto", "fan", "dlib"],
                   help="detector for sources without keypoints (auto: FAN if its weights are local, else dlib)")
    p.add_argument("--schema", help="keypoint schema (face68 | cat9 | hand21); default: the source's own")
    p.add_argument("--table", help="keypoints source: the CSV / JSON table (default ROOT/keypoints.csv|json)")
    p.add_argument("--anchors", default="auto", choices=["auto", "eyes_mouth", "eyes", "all", "box"])
    p.add_argument("--seed", type=int, default=0, help="seed of the identity split")
    p.add_argument("--fan-weights", help="the FAN file (else $AFVAE_FAN_WEIGHTS or torch hub's checkpoints/)")
    p.add_argument("--dlib-predictor", help="shape_predictor_68_face_landmarks.dat (else $AFVAE_DLIB_WEIGHTS ...)")
    p.add_argument("--device", default="cpu", help="FAN device: cpu | cuda")
    p.add_argument("--no-download", action="store_true", help="never download FAN / S3FD weights")
    several = p.add_mutually_exclusive_group()
    several.add_argument("--largest", dest="faces", action="store_const", const="largest",
                         help="in a photo of several faces, keep the largest (default: the one clear face, "
                              "rejecting photos of several clear faces; sources.csv says which was kept)")
    several.add_argument("--reject-multiple", dest="faces", action="store_const", const="reject-multiple",
                         help="reject every photo in which more than one face is detected, however faint")
    p.set_defaults(faces="clearest")
    return add_debug(p)


if __name__ == "__main__":  # parse before numpy and torch are imported: --help and bad arguments answer at once
    ARGS = parser().parse_args()

# The heavy imports, once the command line (if any) has been parsed.
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from afvae.boundaries import FACE68, Schema
from afvae.atomic import replace_dir
from afvae.data.datasets import landmark_table
from afvae.data.real import readers
from afvae.data.real.align import align_face, resolve_anchors
from afvae.data.real.landmarks import clear_faces, make_landmarker, resolve_backend
from afvae.data.store import install_store, table_key

log = logging.getLogger(__name__)
TEST_FRACTION = 0.1
STORE = "images.u8"  # the staged image store (afvae.data.store), renamed into OUT/cache at the end
GIVEN = "given"  # the landmark backend of sources that ship their keypoints


@dataclass
class Options:
    """How images are prepared (identical for every source)."""

    size: int = 256
    anchors: str = "auto"
    min_side: int = 32  # images smaller than this are rejected
    faces: str = "clearest"  # several faces: "clearest" | "largest" | "reject-multiple" (see choose_face)
    background: str = "white"  # what transparent pixels become
    png_compression: int = 1  # zlib level: 1 prepares ~3x faster than PIL's default 6 for ~6 % more bytes


@dataclass
class PrepareResult:
    """What a run did: the folder, its meta.json, and run statistics (not written to meta)."""

    out: Path
    meta: dict[str, Any]
    n_detected: int  # detector calls in this run
    n_cached: int  # detections reused from OUT/cache
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.meta["n_images"] / max(self.seconds, 1e-9)


# ---------------------------------------------------------------------------------------------------------
# Detection cache
# ---------------------------------------------------------------------------------------------------------

ANY_BACKEND = "*"  # cache entries that do not depend on the detector (unreadable files)


class DetectionCache:
    """An append-only JSONL file: {"sha1", "backend", "faces": (n, 68, 2) lists, "scores": (n,) (when the
    detector gives them)} or {..., "reject": reason}."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[tuple[str, str], dict] = {}
        if path.exists():
            self._load()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")
        if path.stat().st_size and not self._ends_with_newline():
            self._file.write("\n")  # a line cut by an interruption must not swallow the next one

    def _load(self) -> None:
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines()):
            try:
                entry = json.loads(line)
                self.entries[entry["sha1"], entry["backend"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError):
                log.warning("%s:%d: skipping an unreadable cache line (interrupted write?)", self.path, n + 1)

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def get(self, sha1: str, backend: str) -> dict | None:
        return self.entries.get((sha1, backend)) or self.entries.get((sha1, ANY_BACKEND))

    def put(self, sha1: str, backend: str, **fields: Any) -> None:
        entry = {"sha1": sha1, "backend": backend, **fields}
        self.entries[sha1, backend] = entry
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


# ---------------------------------------------------------------------------------------------------------
# One item
# ---------------------------------------------------------------------------------------------------------

class Reject(Exception):
    """An input that cannot be used; the message is the reason logged in rejects.csv."""


@dataclass
class _Run:
    """State shared by the items of one run."""

    schema: Schema
    backend: str
    opts: Options
    cache: DetectionCache
    build_landmarker: Callable[[], Callable]
    landmarker: Callable | None = None
    n_detected: int = 0
    n_cached: int = 0

    def detect(self, sha1: str, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Every face candidate of image, (n, 68, 2) landmarks and (n,) scores (None when the detector gives
        none), from the cache or the detector (then cached)."""
        hit = self.cache.get(sha1, self.backend)
        if hit is not None and "faces" in hit:
            self.n_cached += 1
            scores = hit.get("scores")
            return (np.asarray(hit["faces"], np.float32).reshape(-1, 68, 2),
                    None if scores is None else np.asarray(scores, np.float32))
        if self.landmarker is None:
            self.landmarker = self.build_landmarker()
        if hasattr(self.landmarker, "candidates"):
            faces, scores = self.landmarker.candidates(image)
        else:
            faces, scores = self.landmarker(image), None
        faces = np.asarray(faces, np.float32).reshape(-1, 68, 2)
        self.n_detected += 1
        extra = {} if scores is None else {"scores": np.round(np.asarray(scores, np.float64), 4).tolist()}
        self.cache.put(sha1, self.backend, faces=np.round(faces, 3).tolist(), **extra)
        return faces, None if scores is None else np.asarray(scores, np.float32)


def _read(item: readers.Item, run: _Run) -> tuple[str, str, np.ndarray]:
    """(sha1, detection key, image (H, W, 3) uint8) of an item, or Reject.

    Images whose landmarks are detected are turned upright by their EXIF orientation (no annotation refers
    to their stored pixels); the detection key then names the orientation, so detections on the stored
    pixels cached by older runs are not reused. Unreadable files are cached when detection is needed.
    """
    try:
        data = item.path.read_bytes()
    except OSError as e:
        raise Reject(f"cannot read file ({e.strerror or e})") from e
    sha1 = hashlib.sha1(data).hexdigest()
    detect = item.landmarks is None
    hit = run.cache.get(sha1, run.backend) if detect else None
    if hit is not None and "reject" in hit:
        raise Reject(hit["reject"])
    try:
        image = readers.decode_image(data, run.opts.background, exif_orientation=detect)
    except ValueError as e:
        if detect:
            run.cache.put(sha1, ANY_BACKEND, reject=str(e))
        raise Reject(str(e)) from e
    h, w = image.shape[:2]
    if min(h, w) < run.opts.min_side:
        raise Reject(f"too small: {w}x{h} px (< {run.opts.min_side})")
    turned = readers.orientation(data) if detect else 1
    return sha1, sha1 if turned == 1 else f"{sha1}:exif{turned}", image


FACE_CHOICES = ("clearest", "largest", "reject-multiple")


def choose_face(faces: np.ndarray, scores: np.ndarray | None, policy: str = "clearest") -> tuple[int, str]:
    """Which detected face an image gives, and a note saying so: (index into faces, note), or Reject.

    faces (n, 68, 2), scores (n,) (None: every face counts as clear). A face is clear when it scores at
    least ``RELATIVE_SCORE`` times the best; weaker ones are candidates. ``clearest``: the one clear face
    (several clear faces: Reject); ``largest``: the face with the largest landmark box, clear or not;
    ``reject-multiple``: Reject any image with more than one candidate.
    """
    n = len(faces)
    if n == 0:
        raise Reject("no face detected")
    scores = np.ones(n, np.float32) if scores is None else np.asarray(scores, np.float32)
    if n == 1:
        return 0, f"the only face (score {scores[0]:.3g}, box {_box(faces[0])})"
    clear = clear_faces(scores)
    if policy == "reject-multiple":
        raise Reject(f"{n} faces detected ({int(clear.sum())} clear); --reject-multiple keeps single faces only")
    if policy == "largest":
        extent = faces.max(axis=1) - faces.min(axis=1)  # (n, 2) landmark box sides
        i = int(np.argmax(extent.prod(axis=1)))
        return i, f"largest of {n} (score {scores[i]:.3g}, box {_box(faces[i])})"
    if clear.sum() > 1:
        raise Reject(f"{int(clear.sum())} faces detected; use --largest to keep the largest")
    i = int(np.argmax(scores))
    return i, f"clearest of {n} (score {scores[i]:.3g}, box {_box(faces[i])})"


def _box(pts: np.ndarray) -> str:
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    return f"{x0:.0f},{y0:.0f}-{x1:.0f},{y1:.0f}"


def _keypoints(item: readers.Item, key: str, image: np.ndarray, run: _Run) -> tuple[np.ndarray, dict[str, Any]]:
    """The item's keypoints (N, 2) and what detection found: given keypoints, or the face ``choose_face``
    picks (else Reject); ``key``: the image's detection-cache key."""
    if item.landmarks is not None:
        pts = np.asarray(item.landmarks, np.float64)
        if not np.isfinite(pts).all():
            raise Reject("keypoints contain NaN or inf")
        return pts, {}
    faces, scores = run.detect(key, image)
    try:
        i, note = choose_face(faces, scores, run.opts.faces)
    except Reject as e:
        raise Reject(f"{e} ({run.backend}); {run.schema.name} sources need one face per image") from None
    return faces[i], {"faces_detected": len(faces), "face_kept": note}


def _prepare_item(item: readers.Item, run: _Run) -> tuple[str, np.ndarray, np.ndarray, dict[str, Any]]:
    """(sha1, aligned image (S, S, 3) uint8, its keypoints (N, 2), detection notes) or Reject."""
    sha1, key, image = _read(item, run)
    pts, found = _keypoints(item, key, image, run)
    aligned = align_face(image, pts, run.opts.size, schema=run.schema, anchors=run.opts.anchors)
    size = run.opts.size
    if ((aligned.landmarks < -0.5 * size) | (aligned.landmarks > 1.5 * size - 1)).any():
        raise Reject("keypoints land more than half a crop outside the aligned image")
    return sha1, aligned.image, aligned.landmarks, found


# ---------------------------------------------------------------------------------------------------------
# Identities, splits, tables
# ---------------------------------------------------------------------------------------------------------

def _natural(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def identity_split(names: Sequence[str], seed: int = 0, test_fraction: float = TEST_FRACTION) -> dict[str, str]:
    """Identity name -> 'train' | 'test': the round(fraction * K) names (min 1 if K > 1) of lowest sha1(seed:name)."""
    unique = sorted(set(names))
    n_test = max(1, round(test_fraction * len(unique))) if len(unique) > 1 else 0
    ranked = sorted(unique, key=lambda n: hashlib.sha1(f"{seed}:{n}".encode()).hexdigest())
    test = set(ranked[:n_test])
    return {n: "test" if n in test else "train" for n in unique}


def _tables(rows: list[dict], schema: Schema, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accepted rows -> landmarks.csv (file, identity, split, x0, y0, ...) and sources.csv tables."""
    names = [r["identity"] for r in rows]
    ids = {n: i for i, n in enumerate(sorted(set(names), key=_natural))}
    split = identity_split(names, seed)
    marks = np.array([r["landmarks"] for r in rows], np.float64).reshape(len(rows), schema.n_points, 2)
    table = landmark_table([r["file"] for r in rows], [ids[n] for n in names], [split[n] for n in names], marks)
    sources = pd.DataFrame([{"file": r["file"], "source": r["source"], "identity_name": r["identity"],
                             "sha1": r["sha1"], **r["attributes"]} for r in rows],
                           columns=None if rows else ["file", "source", "identity_name", "sha1"])
    return table, sources


def _relative(path: Path | str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _commit(out: Path, staging: Path, tables: dict[str, pd.DataFrame], meta: dict[str, Any]) -> None:
    """Swap the staged images in and rename each table into place (each written complete first); the image
    store goes to OUT/cache under the key of the new landmarks.csv."""
    for name, df in tables.items():
        df.to_csv(staging / name, index=False, float_format="%.4f")
    (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    install_store(staging / STORE, out, meta["size"], table_key(staging))
    replace_dir(staging / "images", out / "images")
    for name in [*tables, "meta.json"]:
        os.replace(staging / name, out / name)
    shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------

def _start(out: Path) -> Path:
    """Create OUT, drop staging folders left by interrupted runs, return a fresh staging folder."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob(".staging-*"), *out.glob(".images-old-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    staging = out / f".staging-{uuid.uuid4().hex[:8]}"
    (staging / "images").mkdir(parents=True)
    return staging


def _process(src: readers.Source, run: _Run, staging: Path, progress: bool) -> tuple[list[dict], list[dict]]:
    """Every item -> accepted rows (image written to staging) and rejects."""
    rows: list[dict] = []
    rejects = [{"source": _relative(f, src.root), "reason": why} for f, why in src.rejects]
    bar = tqdm(src.items, desc=f"prepare {src.name}", unit="img", disable=not progress)
    with open(staging / STORE, "wb") as raw:  # the image store, (N, S, S, 3) uint8 in row order
        for item in bar:
            rel = _relative(item.path, src.root) + (f"#{item.key}" if item.key else "")
            try:
                rows.append(_accept(item, rel, run, staging, f"images/{len(rows):06d}.png", raw))
            except Reject as e:
                rejects.append({"source": rel, "reason": str(e)})
    return rows, rejects


def _accept(item: readers.Item, rel: str, run: _Run, staging: Path, file: str, raw: Any) -> dict:
    """One prepared item's row, its PNG written as ``file`` and its pixels appended to the store; or Reject."""
    sha1, image, pts, found = _prepare_item(item, run)
    if found.get("faces_detected", 1) > 1:
        log.info("%s: %d faces detected, kept the %s", rel, found["faces_detected"], found["face_kept"])
    Image.fromarray(image).save(staging / file, compress_level=run.opts.png_compression)
    raw.write(np.ascontiguousarray(image).tobytes())  # (S, S, 3) uint8, the PNG's pixels
    return {"file": file, "source": rel, "identity": item.identity, "sha1": sha1, "landmarks": pts,
            "attributes": {**dict(item.attributes), **found}}


def prepare(source: str | readers.Source, root: str | Path | None, out: str | Path, *, size: int = 256,
            landmarks: str = "auto", schema: str | None = None, table: str | Path | None = None, seed: int = 0,
            anchors: str = "auto", landmarker: Callable | None = None, progress: bool | None = None,
            options: Options | None = None, **landmarker_kwargs: Any) -> PrepareResult:
    """Prepare ``source`` (a name of ``readers.READERS`` read from ``root``, or a built Source) into ``out``.

    ``landmarks``: auto | fan | dlib, used only for images without given keypoints; ``landmarker``: a
    built one (image -> (n_faces, 68, 2), with a ``name``) instead. Returns the meta and run statistics.
    """
    t0 = time.perf_counter()
    src = source if isinstance(source, readers.Source) else readers.open_source(source, root, schema=schema,
                                                                                   table=table)
    opts = options or Options(size=size, anchors=anchors)
    if opts.faces not in FACE_CHOICES:
        raise ValueError(f"faces={opts.faces!r}: choose one of {FACE_CHOICES}")
    resolve_anchors(src.schema, opts.anchors)  # a wrong choice fails here, not on the first image
    out = Path(out)
    out_abs = out.resolve()
    keep = [it for it in src.items if out_abs not in it.path.resolve().parents]
    if len(keep) < len(src.items):  # an OUT under ROOT must not feed its own images back in
        src = readers.Source(src.name, src.schema, src.root, keep, src.rejects)
    needs_detection = any(it.landmarks is None for it in src.items)
    if needs_detection and src.schema != FACE68:
        raise ValueError(f"{src.name}: detection gives face68 landmarks; {src.schema.name} needs given keypoints")
    backend = GIVEN if not needs_detection else getattr(landmarker, "name", None) or resolve_backend(
        landmarks, landmarker_kwargs.get("fan_weights"))
    staging = _start(out)
    cache = DetectionCache(out / "cache" / "detections.jsonl")
    run = _Run(src.schema, backend, opts, cache, lambda: landmarker or make_landmarker(backend, **landmarker_kwargs))
    try:
        rows, rejects = _process(src, run, staging, progress if progress is not None else len(src.items) > 50)
    finally:
        cache.close()
    landmark_table, sources = _tables(rows, src.schema, seed)
    meta = _meta(src, opts, backend, seed, landmark_table, rejects)
    _commit(out, staging, {"landmarks.csv": landmark_table, "sources.csv": sources,
                           "rejects.csv": pd.DataFrame(rejects, columns=["source", "reason"])}, meta)
    result = PrepareResult(out, meta, run.n_detected, run.n_cached, time.perf_counter() - t0)
    log.info("%s: %d images (%d identities), %d rejected, %d detections (%d cached) in %.1f s -> %s", src.name,
             meta["n_images"], meta["n_identities"], meta["n_rejected"], run.n_detected, run.n_cached,
             result.seconds, out)
    return result


def _meta(src: readers.Source, opts: Options, backend: str, seed: int, table: pd.DataFrame, rejects: list) -> dict:
    split = table["split"].value_counts()
    return {"size": opts.size, "schema": src.schema.name, "n_images": len(table), "source": src.name,
            "root": str(src.root.resolve()), "landmark_backend": backend, "seed": seed,
            "n_identities": int(table["identity"].nunique()), "n_train": int(split.get("train", 0)),
            "n_test": int(split.get("test", 0)), "n_rejected": len(rejects),
            "n_inputs": len(src.items) + len(src.rejects), "faces": opts.faces,
            "alignment": {"anchors": resolve_anchors(src.schema, opts.anchors), "method": "similarity, least squares"},
            "split_rule": f"identity-disjoint; {TEST_FRACTION:.0%} of identities (min 1) by sha1(seed:identity)",
            "pixel_centres": "pixel (row i, col j) is centred at (x=j, y=i)"}


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------

def run(a: argparse.Namespace) -> None:
    """Prepare what the parsed command line asks; bad input is one line on stderr and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        r = prepare(a.source, a.root, a.out, landmarks=a.landmarks, schema=a.schema, table=a.table,
                    seed=a.seed, progress=True, options=Options(size=a.size, anchors=a.anchors, faces=a.faces),
                    fan_weights=a.fan_weights, dlib_predictor=a.dlib_predictor, device=a.device,
                    download=not a.no_download)
    except (readers.DatasetNotFound, FileNotFoundError, ImportError, ValueError) as e:
        fail(PROG, e, a.debug)
    m = r.meta
    print(f"{m['n_images']} images, {m['n_identities']} identities ({m['n_train']} train / {m['n_test']} test), "
          f"{m['n_rejected']} rejected (see {r.out / 'rejects.csv'}); landmarks: {m['landmark_backend']}; "
          f"{r.images_per_s:.1f} images/s -> {r.out}")


def main(argv: list[str] | None = None) -> None:
    """``python -m afvae.data.real.prepare ...`` (see ``parser``)."""
    run(parser().parse_args(argv))


if __name__ == "__main__":
    run(ARGS)
