"""Edit quality against the truth: a fixed set of manipulations of unseen faces and the scores of one model.

Every edit of a synthetic face has a true target render (the source identity under the target structure), so
a manipulation can be scored directly, beside the two references that frame it:

* **source unchanged** (``*_copy``): returning the input as it is. An edit that does not beat it has not
  manipulated anything useful.
* **the truth** (``*_truth`` / ``*_floor``): what the scorer gives the true target itself.

and, on request (``oracle=True``), the ceiling of the model itself: **the oracle** (``*_oracle``), the true
target through the model's own encoders and decoder with its own structure. No edit can be expected to score
better than the model reconstructs the very image it should produce.

Three kinds of edit, each a pure function of ``seed``:

* ``yaw``: the source's pitch, roll and expression at a new yaw, at least ``min_yaw`` degrees away;
* ``pose``: the source's yaw and expression at a new pitch and roll, uniform over the training ranges;
* ``expression``: the source's pose with another dominant expression. Most pixels of such a pair do not
  change, so it is scored on the **changed region** only: pixels where source and truth differ by more than
  ``CHANGED`` (``afvae.metrics``; any channel, [0, 1] units). There, doing nothing scores the whole change.

Any synthetic subject (faces, hands, cats) also has ``swap_set``: each source takes the whole structure of a
test item of another identity. ``truth_scores`` scores images against the truth (changed-region L1, L1, SSIM)
and ``score_table`` gives each method's means with 95 % bootstrap intervals (``interval``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import bootstrap
from torch import Tensor

from afvae.data.synthetic import EXPRESSIONS, Factors, Structure
from afvae.metrics import (CHANGED, changed_region_l1, identity_similarity, l1_error, landmark_error, speckle,
                           ssim)
from afvae.model import edit_and_reconstruction

BENCHMARK = {"n_yaw": 200, "n_expression": 200, "seed": 0}  # the quality benchmark's draw of edits (``edit_set``)
MAX_YAW = 60.0  # the training range of the synthetic faces (degrees)
MAX_PITCH, MAX_ROLL = 20.0, 15.0  # ... and of their pitch and roll (afvae.data.synthetic.sample_structure)


@dataclass(frozen=True)
class EditSet:
    """N source images, the structures to give them, and the true results. Images (N, 3, H, W) in [-1, 1]."""

    kind: tuple[str, ...]  # (N,) "yaw" | "expression" | "pose" | "swap"
    items: Tensor  # (N,) source items of the test split
    x: Tensor  # sources
    c: Tensor  # (N, C_b, H, W) source boundary maps
    c_target: Tensor  # target boundary maps
    x_truth: Tensor  # the source identities rendered under the target structures
    landmarks_target: Tensor  # (N, P, 2) pixels, P = the subject's keypoints (68 for faces)
    structure_target: Factors  # N target structures

    def mask(self, kind: str) -> Tensor:
        """(N,) bool: the pairs of one kind of edit."""
        return torch.tensor([k == kind for k in self.kind])


def _yaw_targets(source: Structure, min_yaw: float, g: torch.Generator) -> Structure:
    """Each structure at a uniformly drawn yaw in [-MAX_YAW, MAX_YAW] at least ``min_yaw`` from its own."""
    n = len(source)
    # Draw uniformly from the allowed set: [-MAX, yaw - min] U [yaw + min, MAX], by its total length.
    lo = (source.yaw - min_yaw + MAX_YAW).clamp(min=0)  # length of the part below
    hi = (MAX_YAW - source.yaw - min_yaw).clamp(min=0)  # length of the part above
    u = torch.rand(n, generator=g) * (lo + hi)
    yaw = torch.where(u < lo, -MAX_YAW + u, source.yaw + min_yaw + (u - lo))
    return source.replace(yaw=yaw)


def _pose_targets(source: Structure, g: torch.Generator) -> Structure:
    """Each structure at a pitch and roll drawn uniformly from the training ranges (yaw and expression kept)."""
    n = len(source)
    return source.replace(pitch=(2 * torch.rand(n, generator=g) - 1) * MAX_PITCH,
                          roll=(2 * torch.rand(n, generator=g) - 1) * MAX_ROLL)


def _expression_targets(source: Structure, g: torch.Generator) -> Structure:
    """Each structure's pose with a new dominant expression (not its current one) at intensity in [0.7, 1]."""
    n, k = len(source), len(EXPRESSIONS)
    current = source.expression.argmax(1)  # (n,)
    new = (current + 1 + torch.randint(k - 1, (n,), generator=g)) % k  # any other expression, uniform
    weights = torch.nn.functional.one_hot(new, k).float() * (0.7 + 0.3 * torch.rand(n, 1, generator=g))
    return Structure.create(yaw=source.yaw, pitch=source.pitch, roll=source.roll, expression=weights)


def edit_set(dataset: Any, *, n_yaw: int = 200, n_expression: int = 200, min_yaw: float = 20.0,
             seed: int = 0, n_pose: int = 0) -> EditSet:
    """Seeded yaw, expression and pose edits of test items (``dataset``: a SyntheticFaces test split of the
    faces), in that order; every item is used once before any is used again. ``n_pose`` = 0 gives the set of
    earlier versions."""
    _check_truth(dataset)
    g = torch.Generator().manual_seed(seed)
    n = n_yaw + n_expression + n_pose
    items = _sources(len(dataset), n, g)[:n]
    yaw_items, expr_items, pose_items = items.split([n_yaw, n_expression, n_pose])
    targets = Structure.cat([_yaw_targets(dataset.structure.index(yaw_items), min_yaw, g),
                             _expression_targets(dataset.structure.index(expr_items), g),
                             _pose_targets(dataset.structure.index(pose_items), g)])
    return _edits(dataset, ("yaw",) * n_yaw + ("expression",) * n_expression + ("pose",) * n_pose, items, targets)


def swap_set(dataset: Any, n: int = 200, seed: int = 0) -> EditSet:
    """``n`` seeded structure swaps of test items (``dataset``: a SyntheticFaces test split of any subject):
    each source gets the structure of a uniformly drawn item of another identity; the truth is the source's
    identity under it."""
    _check_truth(dataset)
    if dataset.identity.unique().numel() < 2:
        raise ValueError(f"swap_set needs test items of at least two identities; the {dataset.split!r} split has one")
    g = torch.Generator().manual_seed(seed)
    items = _sources(len(dataset), n, g)[:n]
    donor = torch.randint(len(dataset), (n,), generator=g)
    same = dataset.identity[donor] == dataset.identity[items]
    while same.any():  # redraw the donors of the source's own identity
        donor[same] = torch.randint(len(dataset), (int(same.sum()),), generator=g)
        same = dataset.identity[donor] == dataset.identity[items]
    return _edits(dataset, ("swap",) * n, items, dataset.structure.index(donor))


def _check_truth(dataset: Any) -> None:
    if not hasattr(dataset, "true_target"):
        raise ValueError(f"{type(dataset).__name__} cannot render true targets: edit quality needs the synthetic data")


def _sources(n_items: int, n: int, g: torch.Generator) -> Tensor:
    """At least ``n`` source items: shuffled passes over all ``n_items`` (each item once per pass)."""
    return torch.cat([torch.randperm(n_items, generator=g) for _ in range(math.ceil(n / n_items))])


def _edits(dataset: Any, kind: tuple[str, ...], items: Tensor, targets: Factors) -> EditSet:
    """The EditSet of source ``items`` (N,) of ``dataset`` given the structures ``targets`` (N)."""
    truth = dataset.true_target(items, targets)
    source = dataset.get_batch(items, ["x", "c"])
    return EditSet(kind=kind, items=items, x=source["x"], c=source["c"], c_target=truth["c"], x_truth=truth["x"],
                   landmarks_target=truth["landmarks"], structure_target=targets)


def truth_scores(pred: Tensor, edits: EditSet) -> dict[str, Tensor]:
    """Images ``pred`` (N, 3, H, W) in [-1, 1] against the true targets of ``edits``, (N,) each: ``changed_l1``
    (``changed_region_l1``, NaN where the region is empty), ``l1`` over the whole image, ``ssim``."""
    return {"changed_l1": changed_region_l1(pred, edits.x, edits.x_truth), "l1": l1_error(pred, edits.x_truth),
            "ssim": ssim(pred, edits.x_truth)}


def interval(values: Tensor) -> tuple[float, float]:
    """95 % bootstrap interval (BCa, 2,000 resamples, seed 0) of the mean of per-pair ``values`` (NaN dropped);
    a constant sample's interval is its value."""
    v = values.float().numpy()
    v = v[~np.isnan(v)]
    if v.size and (v == v[0]).all():  # every resample has this mean (BCa itself is undefined here)
        return float(v[0]), float(v[0])
    ci = bootstrap((v,), np.mean, n_resamples=2000, random_state=0).confidence_interval
    return float(ci.low), float(ci.high)


def score_table(outputs: dict[str, Tensor], edits: EditSet) -> pd.DataFrame:
    """Each method's images (name -> (N, 3, H, W)) and "source unchanged" scored against the truth: one row per
    method with ``n`` pairs, ``n_changed`` (pairs with a changed region), and per ``truth_scores`` metric its mean
    and 95 % bootstrap interval (``*_lo``, ``*_hi``)."""
    rows = []
    for method, pred in {**outputs, "source unchanged": edits.x}.items():
        scores = truth_scores(pred, edits)
        n_changed = int(scores["changed_l1"].isfinite().sum())
        row: dict[str, Any] = {"method": method, "n": len(pred), "n_changed": n_changed}
        for k, v in scores.items():
            lo, hi = interval(v)
            row |= {k: float(v.nanmean()), f"{k}_lo": lo, f"{k}_hi": hi}
        rows.append(row)
    return pd.DataFrame(rows)


@torch.no_grad()
def run_edits(model: torch.nn.Module, edits: EditSet, batch_size: int = 200, oracle: bool = False
              ) -> dict[str, Tensor]:
    """The model's edits and reconstructions of an EditSet: ``x_out``, ``x_rec`` (N, 3, H, W), on the CPU;
    ``oracle``: also ``x_oracle`` (N, 3, H, W), the truth reconstructed with its own structure."""
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    out: dict[str, list[Tensor]] = {"x_out": [], "x_rec": []} | ({"x_oracle": []} if oracle else {})
    for i in range(0, len(edits.kind), batch_size):
        x, c, ct, xt = (t[i:i + batch_size].to(device) for t in (edits.x, edits.c, edits.c_target, edits.x_truth))
        x_out, x_rec = edit_and_reconstruction(model, x, c, ct)
        out["x_out"].append(x_out.float().cpu())
        out["x_rec"].append(x_rec.float().cpu())
        if oracle:
            out["x_oracle"].append(model.translate(xt, ct, ct).float().cpu())
    model.train(was_training)
    return {k: torch.cat(v) for k, v in out.items()}


def edit_scores(model: torch.nn.Module, edits: EditSet, scorer: Any | None, heldout: Any | None = None,
                oracle: bool = False) -> dict[str, Tensor]:
    """The quality benchmark's scores per pair for one model on ``edits``; ``scorer``: the FactorNet of the data
    (None: the pixel scores only); ``heldout``: the held-out scorer (``afvae.scorer``), whose identity and
    landmark scores are added as ``identity_sim_heldout``, ``landmark_nme_heldout`` ... (``*_truth_heldout``,
    ``*_floor_heldout``).

    ``yaw_ssim`` / ``yaw_ssim_copy`` (N_yaw,): SSIM against the truth on the yaw edits, model vs source
    unchanged; ``expr_changed_l1`` / ``expr_changed_l1_copy`` (N_expr,): changed-region L1 on the expression
    edits; ``identity_sim`` (source vs edit) / ``identity_sim_truth`` (source vs truth) (N,): cosine of the
    scorer's appearance predictions, all edits; ``landmark_nme`` / ``landmark_nme_floor`` (N,): the scorer's
    landmarks on the edit / on the truth vs the target's; ``rec_ssim`` (N,): reconstructions vs sources;
    ``speckle`` / ``speckle_copy`` / ``speckle_truth`` (N,): colour noise where the truth is smooth
    (``afvae.metrics.speckle``), of the edit, the unchanged source and the truth itself;
    ``swap_changed_l1`` / ``swap_changed_l1_copy`` (N_swap,): changed-region L1 on structure swaps. A kind of
    edit the set lacks has no keys. ``oracle``: each edit score and the scorers' ``identity_sim`` and
    ``landmark_nme`` also for the oracle (``yaw_ssim_oracle``, ``identity_sim_oracle``, ...): the ceiling.
    """
    g = run_edits(model, edits, oracle=oracle)
    outputs = {"": g["x_out"]} | ({"_oracle": g["x_oracle"]} if oracle else {})  # key suffix -> images
    scores: dict[str, Tensor] = {}
    for kind, (metric, key) in EDIT_METRICS.items():
        m = edits.mask(kind)
        if m.any():
            scores |= {f"{key}{tail}": metric(out[m], edits.x[m], edits.x_truth[m]) for tail, out in outputs.items()}
            scores[f"{key}_copy"] = metric(edits.x[m], edits.x[m], edits.x_truth[m])
    scores["rec_ssim"] = ssim(g["x_rec"], edits.x)
    scores |= {f"speckle{tail}": speckle(out, edits.x_truth) for tail, out in outputs.items()}
    scores["speckle_copy"] = speckle(edits.x, edits.x_truth)
    scores["speckle_truth"] = speckle(edits.x_truth, edits.x_truth)  # a clean render's own shading
    for net, net_tail in ((scorer, ""), (heldout, "_heldout")):
        if net is None:
            continue
        for tail, out in outputs.items():
            read = scorer_scores(out, edits, net)
            if tail:  # the oracle: its identity and landmarks only (the truth's own scores are the same)
                read = {k: read[k] for k in ("identity_sim", "landmark_nme")}
            scores |= {f"{k}{tail}{net_tail}": v for k, v in read.items()}
    return scores


def _ssim_to_truth(pred: Tensor, source: Tensor, truth: Tensor) -> Tensor:
    return ssim(pred, truth)


# kind of edit -> (its per-pair score from (pred, source, truth), the score's key): a kind absent from a set is
# not scored. Swaps (hands, cats: another identity's structure) change most pixels, so they are scored on the
# changed region.
EDIT_METRICS = {"yaw": (_ssim_to_truth, "yaw_ssim"), "expression": (changed_region_l1, "expr_changed_l1"),
                "swap": (changed_region_l1, "swap_changed_l1")}


def scorer_scores(x_out: Tensor, edits: EditSet, scorer: Any) -> dict[str, Tensor]:
    """``edit_scores``' identity and landmark scores (N,) of the edits ``x_out`` (N, 3, H, W)."""
    from afvae.evaluate import factor_columns, predict_factors, predicted_landmarks  # the scorer's read-out

    preds = {k: predict_factors(scorer, v) for k, v in (("x", edits.x), ("out", x_out), ("truth", edits.x_truth))}
    app = factor_columns(preds["x"].shape[1])["appearance"]
    nme = lambda k: landmark_error(predicted_landmarks(scorer, preds[k], x_out.shape[-1]),  # noqa: E731
                                   edits.landmarks_target)
    ident = lambda k: identity_similarity(preds["x"][:, app], preds[k][:, app])  # noqa: E731
    return {"identity_sim": ident("out"), "identity_sim_truth": ident("truth"),
            "landmark_nme": nme("out"), "landmark_nme_floor": nme("truth")}


def edit_quality(model: torch.nn.Module, edits: EditSet, scorer: Any, heldout: Any | None = None,
                 oracle: bool = False) -> dict[str, float]:
    """The means over pairs of ``edit_scores`` (pairs with an empty changed region left out)."""
    return {k: float(v.float().nanmean()) for k, v in edit_scores(model, edits, scorer, heldout, oracle).items()}
