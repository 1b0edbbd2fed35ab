"""One face, one new structure: ``python -m afvae.manipulate SOURCE TARGET... [-o OUT.png] [--run DIR]``.

The source is a face the model can read: ``synthetic:N`` (face N of the synthetic test split), ``FOLDER:N``
(item N of a prepared folder's test split) or an aligned face image of the model's size. The target structure
is one of: new pose or expression values (``--yaw/--pitch/--roll/--expression``, synthetic faces only; the
true render is then shown too), a landmarks file (``--landmarks``, 68 points in the model's pixels), or
another photo (``--like``), whose landmarks are detected and aligned into the model's frame. The PNG shows
source | target boundary | result (| truth). The model is the shipped full AF-VAE (``weights/``), or
another shipped one (``--model full_fresh``: trained on 54,400 people), or ``--run DIR`` for one you trained.
"""
from __future__ import annotations

import argparse

from afvae.cli import add_debug, fail

PROG = "python -m afvae.manipulate"


def parser() -> argparse.ArgumentParser:
    """``python -m afvae.manipulate``'s arguments."""
    p = argparse.ArgumentParser(prog=PROG, description="Give one face a new structure with AF-VAE.")
    p.add_argument("source", help="synthetic:N | FOLDER:N (a prepared folder's test item) | an aligned face image")
    pose = p.add_argument_group("target: new pose or expression of a synthetic face (unset values keep the source's)")
    for name in ("yaw", "pitch", "roll"):
        pose.add_argument(f"--{name}", type=float, help="degrees")
    pose.add_argument("--expression", help="neutral | smile | surprise | anger | disgust | eyes_closed")
    target = p.add_argument_group("target: another structure")
    target.add_argument("--landmarks", help="68 points (x, y) in the model's pixels: .npy, .json or text (68 rows)")
    target.add_argument("--like", help="a photo whose face's landmarks are detected and aligned")
    p.add_argument("--source-landmarks", help="landmarks of an image SOURCE (default: detected)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--run", help="a run folder you trained (default: the shipped full model)")
    which.add_argument("--model", help="a shipped AF-VAE model (weights/manifest.json), e.g. "
                       "full_fresh, the full model trained on 54,400 people (default: full)")
    p.add_argument("-o", "--out", default="manipulated.png", help="output PNG (default manipulated.png)")
    return add_debug(p)


if __name__ == "__main__":  # parse before torch is imported
    ARGS = parser().parse_args()

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from afvae.boundaries import FACE68, boundary_map, merged_map
from afvae.config import Config
from afvae.images import from_uint8


@dataclass
class Face:
    """A source face as the model reads it: x (3, R, R) in [-1, 1], c (C_b, R, R), and how to re-render it."""

    x: Tensor
    c: Tensor
    landmarks: Tensor  # (68, 2) pixels
    synthetic: tuple[object, int] | None = None  # (test split, item) of a synthetic face


def load_network(run: str | None, model: str | None = None) -> tuple[torch.nn.Module, Config]:
    """The model to use: ``run``'s, or the shipped model ``model`` (default: the full model)."""
    if run:
        from afvae.checkpoint import load_model

        return load_model(run)
    from afvae.shipped import load

    return load(model or "full")


def boundary(landmarks: Tensor, cfg: Config) -> Tensor:
    """(68, 2) pixels -> the model's boundary map (C_b, R, R)."""
    c = boundary_map(landmarks, cfg.data.size)
    return merged_map(c[None])[0] if cfg.model.boundary_channels == 1 else c


def read_landmarks(path: str | Path, size: int) -> Tensor:
    """68 (x, y) points of a file (.npy, .json, or text with 68 rows) -> (68, 2), checked against the schema
    and the model's ``size`` x ``size`` frame."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such landmarks file")
    try:
        if path.suffix == ".npy":
            pts = np.load(path, allow_pickle=False)
        elif path.suffix == ".json":
            pts = np.asarray(json.loads(path.read_text()), np.float32)
        else:
            pts = np.loadtxt(path, delimiter="," if "," in path.read_text() else None, ndmin=2)
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a landmarks file ({e})") from None
    pts = np.asarray(pts, np.float32)
    if pts.size % 2 == 0:
        pts = pts.reshape(-1, 2)  # (P, 2), whatever the file's layout
    if pts.shape != (FACE68.n_points, 2):
        raise ValueError(f"{path}: {pts.size / 2:g} points, but the model reads the {FACE68.name} schema "
                         f"({FACE68.n_points} (x, y) points)")
    if pts.min() < 0 or pts.max() > size - 1:
        raise ValueError(f"{path}: points outside the model's {size} x {size} frame (range {pts.min():.1f} to "
                         f"{pts.max():.1f}); give them in the aligned {size}-px crop's pixels")
    return torch.from_numpy(pts)


def detected(image: np.ndarray, what: str) -> np.ndarray:
    """The 68 landmarks (68, 2) of the largest face in ``image`` (H, W, 3) uint8; ``what`` names it in errors."""
    from afvae.data.real.landmarks import detect_landmarks

    (faces,), _ = detect_landmarks([image], progress=False)
    if len(faces) == 0:
        raise ValueError(f"{what}: no face found; use a larger, frontal photo, or pass its landmarks")
    spans = np.ptp(faces, axis=1).prod(axis=1)  # (n_faces,) landmark box areas
    return faces[int(spans.argmax())]


def read_image(path: str | Path) -> np.ndarray:
    try:
        return np.asarray(Image.open(path).convert("RGB"))
    except OSError as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None


def source_face(spec: str, cfg: Config, landmarks: str | None) -> Face:
    """The face ``spec`` names (see the module docstring), at the model's size."""
    size, head, _, tail = cfg.data.size, *spec.rpartition(":")
    if head and tail.isdigit():
        from afvae.data.datasets import build_dataset

        data = cfg.data if head == "synthetic" else dataclasses.replace(cfg.data, source=head)
        test = build_dataset(data, "test")
        item = int(tail)
        if not 0 <= item < len(test):
            raise ValueError(f"{spec}: the test split has {len(test)} faces (0 to {len(test) - 1})")
        b = test.get_batch([item], ["x", "c", "landmarks"])
        return Face(b["x"][0], b["c"][0], b["landmarks"][0], (test, item) if head == "synthetic" else None)
    if not Path(spec).is_file():
        raise ValueError(f"{spec}: neither synthetic:N, FOLDER:N nor an image file")
    image = read_image(spec)
    if image.shape[:2] != (size, size):
        raise ValueError(f"{spec} is {image.shape[1]} x {image.shape[0]} px; the model reads aligned {size} x {size} "
                         f"faces: align it with python -m afvae.data.real.prepare (--size {size}), then pass FOLDER:N")
    pts = read_landmarks(landmarks, size) if landmarks else torch.from_numpy(detected(image, spec))
    x = from_uint8(torch.from_numpy(image).permute(2, 0, 1))
    return Face(x, boundary(pts, cfg), pts)


def target_of(a: argparse.Namespace, face: Face, cfg: Config) -> tuple[Tensor, Tensor | None]:
    """The target boundary map (C_b, R, R) the arguments ask for, and the true render when one exists."""
    size = cfg.data.size
    pose = {k: getattr(a, k) for k in ("yaw", "pitch", "roll", "expression") if getattr(a, k) is not None}
    asked = [n for n, on in (("pose/expression", pose), ("--landmarks", a.landmarks), ("--like", a.like)) if on]
    if len(asked) != 1:
        raise ValueError(f"give one target: --yaw/--pitch/--roll/--expression, --landmarks or --like "
                         f"(got {', '.join(asked) or 'none'})")
    if a.landmarks:
        return boundary(read_landmarks(a.landmarks, size), cfg), None
    if a.like:
        from afvae.data.real.align import alignment_matrix, transform_points

        pts = detected(read_image(a.like), a.like)
        aligned = transform_points(pts, alignment_matrix(pts, size)).astype(np.float32)
        return boundary(torch.from_numpy(aligned).clamp(0, size - 1), cfg), None
    if face.synthetic is None:
        raise ValueError("--yaw/--pitch/--roll/--expression re-pose synthetic faces only; for others give "
                         "--landmarks or --like")
    return synthetic_target(face, pose)


def synthetic_target(face: Face, pose: dict) -> tuple[Tensor, Tensor]:
    """A synthetic face's target map and true render under its structure with ``pose`` changed."""
    from afvae.data.synthetic import EXPRESSIONS, Structure

    test, item = face.synthetic
    s = test.structure.index(torch.tensor([item]))
    if "expression" in pose and pose["expression"] not in EXPRESSIONS:
        raise ValueError(f"--expression {pose['expression']!r}: choose one of {', '.join(EXPRESSIONS)}")
    expression = pose.get("expression", s.expression)
    new = Structure.create(yaw=pose.get("yaw", s.yaw), pitch=pose.get("pitch", s.pitch),
                           roll=pose.get("roll", s.roll), expression=expression)
    truth = test.true_target(torch.tensor([item]), new)
    return truth["c"][0], truth["x"][0]


def run(a: argparse.Namespace) -> None:
    """Do what the parsed arguments ``a`` say; errors as one line, exit code 2."""
    from afvae.plotting import image_grid, save_figure

    try:
        model, cfg = load_network(a.run, a.model)
        face = source_face(a.source, cfg, a.source_landmarks)
        c_target, truth = target_of(a, face, cfg)
    except (ValueError, OSError) as e:
        fail(PROG, e, a.debug)
    with torch.no_grad():
        out = model.translate(face.x[None], face.c[None], c_target[None])[0]
    row = [face.x, c_target, out] + ([truth] if truth is not None else [])
    labels = ["source", "target boundary", "AF-VAE"] + (["truth"] if truth is not None else [])
    path = Path(a.out)
    save_figure(image_grid([row], col_labels=labels, cell=1.6), path.name, path.parent)
    print(f"wrote {path}")


if __name__ == "__main__":
    run(ARGS)
