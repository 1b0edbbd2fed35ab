"""The computations behind the figure notebooks 04-08 (no plotting: that is ``afvae.plotting``).

Grouped by notebook:

* shared: ``reconstruct``, ``manipulation_examples``, ``items_per_identity``, ``appearance_embedding``
* 04 pixel shuffle (Fig. 3): colour histograms, their entropy and Jensen-Shannon divergence, ``colour_table``;
  per-channel entropies with paired bootstrap intervals over images and seeds, ``entropy_by_seed``
* 05 weight norm: ``convergence_curves``, ``convergence_summary``
* 06 interpolation (Fig. 9): ``pick_contrasting_pair``, ``lerp_landmarks``
* 07 manipulation (Figs. 1, 5, 6): ``expression_structures``, ``yaw_structures``, ``edit_sweep``, ``sweep_errors``;
  Fig. 6, rotation to profile: ``frontal_items``, ``rotation_errors``, ``rotation_summary``
* 08 identity (Fig. 10): ``contour_distance``, ``contour_donors``, ``edited_expression``

Images are ``(N, 3, H, W)`` in [-1, 1], landmarks ``(N, P, 2)`` in pixels (P = 68 for faces),
as everywhere in afvae.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from afvae import claims
from afvae.config import Config
from afvae.data.synthetic import EXPRESSIONS, Structure
from afvae.evaluate import has_ground_truth
from afvae.images import to_uint8
from afvae.metrics import batched, ground_truth_errors, identity_similarity, l1_error
from afvae.model import AFVAE, translate_all
from afvae.quality import MAX_YAW, changed_region_l1

N_LANDMARK_TARGETS = 136  # FactorNet targets start with the 68 (x, y) landmarks / size
N_APPEARANCE_TARGETS = 63  # ... then the synthetic appearance vector (Appearance.to_vector)
PSNR_CAP_DB = 60.0  # identical 8-bit images have PSNR = inf; capped so that means stay finite
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 luminance weights
CHANNELS = ("R", "G", "B", "luminance")
RGB_MEAN = "mean of R, G, B"  # the three colour channels' entropy gaps averaged: one number per comparison
CI_LEVEL = 0.95
# Fig. 3 of the paper: the entropy (bits) of the colour histogram of each image set, one value per set. The paper
# does not say which histogram (one channel, grey, or the three pooled); we read the three values as deconvolution
# output, pixel-shuffle output and real images, in that order.
PAPER_FIG3_ENTROPY = {"deconv": 7.6405, "pixel shuffle (full)": 7.6794, "source": 7.8267}
JAW = slice(0, 17)  # iBUG 68: points 0-16 are the face contour


# ---------------------------------------------------------------------------------------------------------
# Shared

@torch.no_grad()
def reconstruct(model: AFVAE, x: Tensor, c: Tensor, batch_size: int = 128) -> Tensor:
    """Posterior-mean reconstructions D(E[z | x, y], y): x (N, 3, H, W), c (N, C_b, H, W) -> (N, 3, H, W)."""
    return torch.cat([model.translate(x[i:i + batch_size], c[i:i + batch_size], c[i:i + batch_size])
                      for i in range(0, x.shape[0], batch_size)])


def manipulation_examples(dataset: Any, src: Tensor, tgt: Tensor) -> dict[str, Tensor | bool]:
    """Sources, their own and their targets' boundary maps, and what the output should look like.

    ``x_target`` is the true target render on synthetic data (``truth`` True), else the target item's own
    image (another identity: only its structure is the goal). src, tgt (N,) item indices; images (N, 3, H, W).
    """
    source = dataset.get_batch(src, ["x", "c"])
    if has_ground_truth(dataset):
        pair = dataset.render_pair(src, tgt)
        return {"x": source["x"], "c_source": source["c"], "c_target": pair["c_target"],
                "x_target": pair["x_target"], "truth": True}
    target = dataset.get_batch(tgt, ["x", "c"])
    return {"x": source["x"], "c_source": source["c"], "c_target": target["c"], "x_target": target["x"],
            "truth": False}


def items_per_identity(identity: Tensor, n: int, seed: int) -> Tensor:
    """Up to ``n`` item indices, one per identity, identities and items chosen by ``seed``: (N,) -> (min(n, I),)."""
    g = torch.Generator().manual_seed(seed)
    ids = identity.unique()
    ids = ids[torch.randperm(len(ids), generator=g)][:n]
    picks = []
    for i in ids:
        members = (identity == i).nonzero()[:, 0]
        picks.append(members[torch.randint(len(members), (1,), generator=g)])
    return torch.cat(picks)


def subset(n_items: int, n: int, seed: int) -> Tensor:
    """``min(n, n_items)`` sorted item indices drawn without replacement by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_items, generator=g)[:n].sort().values


@torch.no_grad()
def appearance_embedding(factor_net: Any, x: Tensor, batch_size: int = 256) -> Tensor:
    """Standardised appearance predictions: (N, 3, H, W) in [-1, 1] -> (N, 63).

    ``factor_net`` is a FeatureNet with the factor targets (``afvae.features.load_factor_net`` or the held-out
    ``afvae.scorer.load_scorer``), trained on synthetic factors
    (targets: 136 landmark coordinates, then the 63 appearance factors, then 9 structure factors).
    """
    net = getattr(factor_net, "net", factor_net)
    preds = batched(net.predict, x, batch_size)  # (N, targets)
    if preds.shape[1] < N_LANDMARK_TARGETS + N_APPEARANCE_TARGETS:
        raise ValueError("this net predicts landmarks only (no appearance factors: not synthetic data)")
    return preds[:, N_LANDMARK_TARGETS:N_LANDMARK_TARGETS + N_APPEARANCE_TARGETS]


# ---------------------------------------------------------------------------------------------------------
# 04 pixel shuffle vs deconvolution: colour distributions (Fig. 3)

def channel_values(x: Tensor) -> Tensor:
    """8-bit values per channel: (N, 3, H, W) in [-1, 1] -> (4, N*H*W) int64 rows R, G, B, luminance."""
    u = to_uint8(x).long()  # (N, 3, H, W)
    luma = (u.double() * torch.tensor(LUMA, dtype=torch.float64)[:, None, None]).sum(1).round().long()  # (N, H, W)
    return torch.cat([u.transpose(0, 1).reshape(3, -1), luma.reshape(1, -1)])


def image_channel_counts(x: Tensor, bins: int = 256) -> Tensor:
    """Each image's counts of its R, G, B and luminance values: (N, 3, H, W) in [-1, 1] -> (N, 4, bins) float64.

    ``bins`` divides 256: bin k holds the 8-bit values [k * 256 / bins, (k + 1) * 256 / bins).
    """
    if 256 % bins:
        raise ValueError(f"bins must divide 256, got {bins}")
    n = x.shape[0]
    v = (channel_values(x) // (256 // bins)).view(4, n, -1)  # (4, N, H*W)
    counts = torch.zeros(4, n, bins, dtype=torch.float64).scatter_add_(2, v, torch.ones_like(v, dtype=torch.float64))
    return counts.transpose(0, 1)  # (N, 4, bins)


def colour_histograms(x: Tensor, bins: int = 256) -> Tensor:
    """Pooled probability histograms of R, G, B and luminance over all images: (N, 3, H, W) -> (4, bins).

    ``bins`` divides 256: bin k holds the 8-bit values [k * 256 / bins, (k + 1) * 256 / bins).
    """
    counts = image_channel_counts(x, bins).sum(0)  # (4, bins)
    return counts / counts.sum(1, keepdim=True)


def entropy_bits(p: Tensor) -> Tensor:
    """Shannon entropy in bits of probability vectors along the last dimension: (..., K) -> (...), 0 log 0 = 0."""
    p = p.double()
    return -torch.special.xlogy(p, p).sum(-1) / torch.log(torch.tensor(2.0, dtype=torch.float64))


def js_divergence_bits(p: Tensor, q: Tensor) -> Tensor:
    """Jensen-Shannon divergence in bits (0 = same distribution, 1 = disjoint): (..., K) twice -> (...)."""
    m = (p.double() + q.double()) / 2
    return entropy_bits(m) - (entropy_bits(p) + entropy_bits(q)) / 2


def joint_colour_entropy(x: Tensor, bits: int = 5) -> float:
    """Entropy in bits of the joint RGB distribution with each channel quantised to ``bits`` bits (all images).

    (N, 3, H, W) in [-1, 1] -> float in [0, 3 * bits]. A plug-in estimate: it is biased low when the pixel
    count is small next to 2^(3 bits) cells, so compare only sets of the same size.
    """
    q = to_uint8(x).long() >> (8 - bits)  # (N, 3, H, W)
    code = ((q[:, 0] << (2 * bits)) | (q[:, 1] << bits) | q[:, 2]).reshape(-1)  # (N*H*W,)
    p = torch.bincount(code, minlength=1 << (3 * bits)).double()
    return float(entropy_bits(p / p.sum()))


def per_image_luma_entropy(x: Tensor) -> Tensor:
    """Entropy in bits of each image's own 256-bin luminance histogram: (N, 3, H, W) -> (N,)."""
    counts = image_channel_counts(x)[:, 3]  # (N, 256)
    return entropy_bits(counts / counts.sum(-1, keepdim=True))


def colour_table(images: dict[str, Tensor], reference: str) -> pd.DataFrame:
    """One row per image set: pooled entropies (bits) of R, G, B, luminance and joint RGB (5 bits per channel),
    the mean per-image luminance entropy, and the JS divergence of each channel's histogram to ``reference``'s.

    images: name -> (N, 3, H, W) in [-1, 1], all the same N (entropy estimates depend on the sample size).
    """
    ref = colour_histograms(images[reference])  # (4, 256)
    rows = []
    for name, x in images.items():
        h = colour_histograms(x)
        row: dict[str, Any] = {"images": name, "n": x.shape[0]}
        row.update({f"H_{ch}": float(v) for ch, v in zip(CHANNELS, entropy_bits(h))})
        row["H_rgb_joint"] = joint_colour_entropy(x)
        row["H_luminance_per_image"] = float(per_image_luma_entropy(x).mean())
        row.update({f"JS_{ch}": float(v) for ch, v in zip(CHANNELS, js_divergence_bits(h, ref))})
        rows.append(row)
    return pd.DataFrame(rows)


def bootstrap_weights(n: int, n_boot: int, seed: int) -> Tensor:
    """How often each of ``n`` items is drawn in each of ``n_boot`` resamples with replacement (seeded):
    -> (n_boot, n) float64, every row summing to n."""
    g = torch.Generator().manual_seed(seed)
    picks = torch.randint(n, (n_boot, n), generator=g)  # (B, n)
    ones = torch.ones(n_boot, n, dtype=torch.float64)
    return torch.zeros(n_boot, n, dtype=torch.float64).scatter_add_(1, picks, ones)


def pooled_entropy(counts: Tensor, weights: Tensor | None = None) -> Tensor:
    """Entropy in bits of histograms pooled over items: counts (N, C, K) -> (C,); with resampling ``weights``
    (B, N) from ``bootstrap_weights`` -> (B, C), one pooled histogram per resample."""
    counts = counts.double()
    pooled = counts.sum(0) if weights is None else torch.einsum("bn,nck->bck", weights.double(), counts)
    return entropy_bits(pooled / pooled.sum(-1, keepdim=True))


def basic_interval(draws: Tensor, point: Tensor, level: float = CI_LEVEL) -> tuple[Tensor, Tensor]:
    """The basic (reverse-percentile) bootstrap interval: draws (B, ...) of a statistic whose full-sample value is
    ``point`` (...) -> lo, hi (...) = 2 point - the upper and lower quantiles of the draws.

    Unlike the percentile interval it corrects for the bias the resampling adds: a plug-in entropy is biased low,
    and more so in a resample, whose repeated items make the pooled histogram lumpier.
    """
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    q_lo, q_hi = torch.quantile(draws.double(), q, dim=0)
    return 2 * point.double() - q_hi, 2 * point.double() - q_lo


def entropy_gaps(h: dict[str, Tensor], reference: str, method: str, baseline: str) -> tuple[Tensor, Tensor, Tensor]:
    """|H - H_reference| of ``method`` and of ``baseline``, and baseline's minus method's (positive: ``method``
    closer to the reference): h maps image set -> (..., 4) entropies of R, G, B, luminance; each output
    (..., 5), the last entry (``RGB_MEAN``) the mean of the three colour channels' gaps."""
    def gap(name: str) -> Tensor:
        g = (h[name] - h[reference]).abs()  # (..., 4)
        return torch.cat([g, g[..., :3].mean(-1, keepdim=True)], -1)

    g_method, g_baseline = gap(method), gap(baseline)
    return g_method, g_baseline, g_baseline - g_method


def entropy_comparison(counts: dict[str, Tensor], reference: str, method: str, baseline: str, *,
                       n_boot: int = 2000, seed: int = 0, level: float = CI_LEVEL
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pooled R, G, B and luminance entropies with bootstrap intervals over items (``basic_interval``), and how
    much closer ``method``'s entropies are to ``reference``'s than ``baseline``'s.

    counts: image set -> (N, 4, K) per-item counts (``image_channel_counts``); item i of every set comes from the
    same source image, so every set is resampled with the same weights (a paired bootstrap).
    Returns ``entropies`` (images, channel, H, lo, hi; bits) and ``advantage`` (channel, gap_method, gap_baseline,
    diff, lo, hi; ``entropy_gaps``, for R, G, B, luminance and ``RGB_MEAN``).
    """
    sizes = {c.shape[0] for c in counts.values()}
    if len(sizes) != 1:
        raise ValueError(f"every image set needs the same number of items (paired resampling), got {sorted(sizes)}")
    w = bootstrap_weights(sizes.pop(), n_boot, seed)  # (B, N)
    point = {k: pooled_entropy(c) for k, c in counts.items()}  # name -> (4,)
    draws = {k: pooled_entropy(c, w) for k, c in counts.items()}  # name -> (B, 4)
    rows = []
    for name in counts:
        lo, hi = basic_interval(draws[name], point[name], level)
        rows += [{"images": name, "channel": ch, "H": float(point[name][i]), "lo": float(lo[i]), "hi": float(hi[i])}
                 for i, ch in enumerate(CHANNELS)]
    g_method, g_baseline, diff = entropy_gaps(point, reference, method, baseline)
    lo, hi = basic_interval(entropy_gaps(draws, reference, method, baseline)[2], diff, level)
    advantage = pd.DataFrame({"channel": [*CHANNELS, RGB_MEAN], "gap_method": g_method.numpy(),
                              "gap_baseline": g_baseline.numpy(), "diff": diff.numpy(), "lo": lo.numpy(),
                              "hi": hi.numpy()})
    return pd.DataFrame(rows), advantage


def entropy_by_seed(counts: dict[str, Tensor], seeds: Sequence[int], reference: str, method: str, baseline: str,
                    **kwargs: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``entropy_comparison`` for all training seeds pooled (``seeds`` column "pooled"; items of every seed resampled
    together) and, with more than one seed, for each seed alone (``seeds`` "0", "1", ...).

    counts: image set -> (S * N, 4, K), the N items of seed ``seeds[0]`` first, then those of the next seed, ...
    (a set that does not depend on the seed, like the source images, is repeated S times).
    """
    parts = [("pooled", counts)]
    if len(seeds) > 1:
        parts += [(str(s), {k: c.view(len(seeds), -1, *c.shape[1:])[i] for k, c in counts.items()})
                  for i, s in enumerate(seeds)]
    entropies, advantage = [], []
    for label, c in parts:
        e, a = entropy_comparison(c, reference, method, baseline, **kwargs)
        entropies.append(e.assign(seeds=label))
        advantage.append(a.assign(seeds=label))
    return pd.concat(entropies, ignore_index=True), pd.concat(advantage, ignore_index=True)


# ---------------------------------------------------------------------------------------------------------
# 05 weight norm vs batch norm vs none: convergence over seeds

def convergence_curves(histories: dict[str, dict[int, pd.DataFrame]], column: str = "l1",
                       scale: float = 0.5) -> pd.DataFrame:
    """A logged column of several runs as one long frame (label, seed, step, value), times ``scale``.

    histories: label -> training seed -> ``experiment.history`` frame. The default ``scale`` puts the training L1,
    computed on [-1, 1] images, in the [0, 1] image units of ``metrics.l1_error``.
    """
    return pd.concat([h[["step"]].assign(label=label, seed=seed, value=h[column] * scale)
                      for label, runs in histories.items() for seed, h in runs.items()],
                     ignore_index=True)[["label", "seed", "step", "value"]]


def convergence_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Per (label, seed): ``train_l1_mean``, the mean of the logged curve over the whole run (the area under it
    per step: lower = converged sooner), and ``train_l1_last``, its last logged value."""
    last = curves.sort_values("step").groupby(["label", "seed"], sort=False)["value"].last()
    mean = curves.groupby(["label", "seed"], sort=False)["value"].mean()
    return pd.DataFrame({"train_l1_mean": mean, "train_l1_last": last}).reset_index()


# ---------------------------------------------------------------------------------------------------------
# 06 interpolation (Fig. 9)

def _normalised(points: Tensor) -> Tensor:
    """(..., P, 2) -> the same points centred on their mean and divided by their RMS radius (no scale, no shift)."""
    centred = points - points.mean(-2, keepdim=True)
    return centred / centred.square().sum(-1).mean(-1).sqrt()[..., None, None].clamp_min(1e-8)


def landmark_distance(a: Tensor, b: Tensor) -> Tensor:
    """RMS distance between normalised shapes: (P, 2) or (N, P, 2) vs (N, P, 2) -> (N,)."""
    return (_normalised(a) - _normalised(b)).square().sum(-1).mean(-1).sqrt()


def pick_contrasting_pair(identity: Tensor, landmarks: Tensor, seed: int) -> tuple[int, int]:
    """Two items of different identities whose structures differ most, deterministic in ``seed``.

    The first item is drawn by ``seed``; the second is the item of another identity with the largest
    normalised landmark distance to it (so pose and expression differ). identity (N,), landmarks (N, P, 2).
    """
    g = torch.Generator().manual_seed(seed)
    i = int(torch.randint(len(identity), (1,), generator=g))
    d = landmark_distance(landmarks[i], landmarks).masked_fill(identity == identity[i], -1.0)
    if d.max() < 0:
        raise ValueError("the split holds a single identity: no pair of different identities")
    return i, int(d.argmax())


def lerp_landmarks(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Landmarks linearly interpolated: a, b (P, 2), t (S,) in [0, 1] -> (S, P, 2); t = 0 gives a."""
    return torch.lerp(a[None], b[None], t.to(a.dtype)[:, None, None])


# ---------------------------------------------------------------------------------------------------------
# 07 manipulation with ground truth (Figs. 1, 5, 6)

def expression_structures(source: Structure, expressions: Sequence[str] = EXPRESSIONS,
                          intensity: float = 1.0) -> Structure:
    """The source's pose (batch of 1) with each named expression at ``intensity``: a batch of len(expressions)."""
    return Structure.create(yaw=source.yaw, pitch=source.pitch, roll=source.roll, expression=list(expressions),
                            intensity=intensity)


def yaw_structures(source: Structure, yaws: Sequence[float] | Tensor) -> Structure:
    """The source's pitch, roll and expression (batch of 1) at each yaw in degrees: a batch of len(yaws)."""
    yaws = torch.as_tensor(yaws, dtype=torch.float32).reshape(-1)
    return source.repeat_interleave(len(yaws)).replace(yaw=yaws.clone())


@torch.no_grad()
def edit_sweep(model: AFVAE, dataset: Any, items: Tensor, make: Callable[[Structure], Structure],
               occlusion: str = "none") -> dict[str, Tensor]:
    """Each source item re-rendered by the model under the structures ``make(its structure)``, with the truth.

    dataset: a SyntheticFaces split; items (N,); make maps a Structure of 1 to a Structure of S; ``occlusion``:
    the landmark convention of the target boundary maps (``SyntheticFaces.true_target``). The N * S edits run
    through the model together (``translate_all``, in eval mode), not one source at a time.
    Returns x (N, 3, H, W) the sources, output and truth (N, S, 3, H, W), c_target (N, S, C_b, H, W).
    """
    batch = dataset.get_batch(items)
    truths = [dataset.true_target(i, make(dataset.structure.index(i)), occlusion=occlusion)  # identity i, S poses
              for i in items.tolist()]
    truth, c_target = (torch.stack([t[k] for t in truths]) for k in ("x", "c"))  # (N, S, ...)
    S = truth.shape[1]
    output = translate_all(model, batch["x"].repeat_interleave(S, 0), batch["c"].repeat_interleave(S, 0),
                           c_target.flatten(0, 1))
    return {"x": batch["x"], "output": output.unflatten(0, truth.shape[:2]), "truth": truth, "c_target": c_target}


def sweep_errors(sweep: dict[str, Tensor], labels: Sequence[Any], items: Tensor) -> pd.DataFrame:
    """Per-image ground-truth errors of an ``edit_sweep``: the model's output, and the unchanged source as a
    do-nothing baseline. Columns item, target (from ``labels``, one per structure), method, l1, psnr (dB,
    capped at PSNR_CAP_DB), ssim, changed_l1 (``quality.changed_region_l1``; NaN where nothing changed);
    N * S * 2 rows.
    """
    N, S = sweep["output"].shape[:2]
    truth = sweep["truth"].flatten(0, 1)  # (N*S, 3, H, W)
    source = sweep["x"][:, None].expand(-1, S, -1, -1, -1).flatten(0, 1)
    frames = []
    for method, pred in (("AF-VAE", sweep["output"].flatten(0, 1)), ("source unchanged", source)):
        err = ground_truth_errors(pred, truth)
        frames.append(pd.DataFrame({
            "item": items.repeat_interleave(S).numpy(), "target": list(labels) * N, "method": method,
            "l1": err["l1"].numpy(), "psnr": err["psnr"].clamp(max=PSNR_CAP_DB).numpy(), "ssim": err["ssim"].numpy(),
            "changed_l1": changed_region_l1(pred, source, truth).numpy(),
        }))
    return pd.concat(frames, ignore_index=True)


def evaluate_sweep(model: AFVAE, dataset: Any, items: Tensor, make: Callable[[Structure], Structure],
                   labels: Sequence[Any], chunk: int = 32, occlusion: str = "none") -> pd.DataFrame:
    """``sweep_errors`` of ``edit_sweep`` over ``items`` (N,), ``chunk`` sources at a time (bounded memory)."""
    return pd.concat([sweep_errors(edit_sweep(model, dataset, part, make, occlusion), labels, part)
                      for part in items.split(chunk)], ignore_index=True)


# Fig. 6: rotation to profile, from near-frontal sources, against |yaw|

ROTATION_YAWS = tuple(float(y) for y in range(-90, 91, 15))  # degrees: the targets of Fig. 6
ROTATION_METRICS = ("l1", "ssim", "changed_l1")


def frontal_items(dataset: Any, per_identity: int) -> Tensor:
    """The ``per_identity`` items of every identity nearest to frontal (smallest |yaw|): (M,) sorted item indices
    of a SyntheticFaces split, the near-frontal sources of a rotation sweep."""
    yaw = dataset.structure.yaw.abs()
    picks = [m[yaw[m].argsort()[:per_identity]] for m in (
        (dataset.identity == i).nonzero()[:, 0] for i in dataset.identity.unique())]
    return torch.cat(picks).sort().values


def rotation_errors(model: AFVAE, dataset: Any, items: Tensor, yaws: Sequence[float] = ROTATION_YAWS,
                    occlusion: str = "none", method: str = "AF-VAE") -> pd.DataFrame:
    """``sweep_errors`` of each source item (N,) turned to every yaw in ``yaws`` (its pitch, roll and expression
    kept), the model's rows named ``method``, with the columns identity, yaw (degrees) and abs_yaw added."""
    make = lambda source: yaw_structures(source, yaws)  # noqa: E731
    errors = evaluate_sweep(model, dataset, items, make, list(yaws), occlusion=occlusion)
    errors["identity"] = dataset.identity.numpy()[errors["item"].to_numpy()]
    errors["method"] = errors["method"].replace({"AF-VAE": method})
    return errors.rename(columns={"target": "yaw"}).assign(abs_yaw=lambda e: e["yaw"].abs())


def _cluster_bootstrap(values: np.ndarray, groups: np.ndarray, n_boot: int, rng: np.random.Generator
                       ) -> tuple[float, float]:
    """95 % percentile interval of the mean of ``values`` (NaN dropped), resampling whole ``groups``."""
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan"), float("nan")
    _, g = np.unique(groups[keep], return_inverse=True)
    sums, counts = np.bincount(g, values[keep]), np.bincount(g).astype(float)
    draw = rng.integers(0, len(sums), (n_boot, len(sums)))  # (n_boot, G) groups per resample
    means = sums[draw].sum(1) / counts[draw].sum(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def rotation_summary(errors: pd.DataFrame, trained_yaw: float = MAX_YAW, n_boot: int = 2000,
                     seed: int = 0) -> pd.DataFrame:
    """Per |yaw| and method of ``rotation_errors``: mean of each metric with a 95 % bootstrap interval over
    identities (whole identities resampled: sources of one identity are not independent), n pairs, n identities,
    and whether |yaw| lies in the model's training range (<= ``trained_yaw``)."""
    rng = np.random.default_rng(seed)
    rows = []
    for (abs_yaw, method), part in errors.groupby(["abs_yaw", "method"], sort=True):
        row: dict[str, Any] = {"abs_yaw": abs_yaw, "method": method, "in_training_range": abs_yaw <= trained_yaw}
        for m in ROTATION_METRICS:
            v = part[m].to_numpy(dtype=float)
            row[m] = float(np.nanmean(v)) if (~np.isnan(v)).any() else float("nan")
            row[f"{m}_lo"], row[f"{m}_hi"] = _cluster_bootstrap(v, part["identity"].to_numpy(), n_boot, rng)
        rows.append(row | {"n": len(part), "n_identities": part["identity"].nunique()})
    return pd.DataFrame(rows)


def describe_structure(structure: Structure) -> str:
    """One structure (batch of 1) in words: pose in degrees, then the expressions weighing at least 0.1."""
    pose = f"yaw {float(structure.yaw[0]):+.0f}°, pitch {float(structure.pitch[0]):+.0f}°"
    weights = structure.expression[0].tolist()
    expr = ", ".join(f"{e} {w:.2f}" for e, w in zip(EXPRESSIONS, weights) if w >= 0.1)
    return f"{pose}\n{expr}"


def summarise_errors(errors: pd.DataFrame, keys: Sequence[str] = ("edit", "target", "method")) -> pd.DataFrame:
    """Mean and std of l1, psnr, ssim per group of ``keys`` (group order kept), with the count n."""
    g = errors.groupby(list(keys), sort=False)[["l1", "psnr", "ssim"]]
    out = g.mean().join(g.std(ddof=0).add_suffix("_std")).join(g.size().rename("n"))
    return out.reset_index()


# ---------------------------------------------------------------------------------------------------------
# 08 identity under three kinds of boundary (Fig. 10)

def contour_distance(a: Tensor, b: Tensor) -> Tensor:
    """Distance between jaw contours (points 0-16), each centred and scaled to unit RMS radius.

    a: (68, 2) or (N, 68, 2), b: (N, 68, 2) in pixels -> (N,), in units of the contour's RMS radius
    (0 = the same contour shape up to position and size).
    """
    return (_normalised(a[..., JAW, :]) - _normalised(b[..., JAW, :])).square().sum(-1).mean(-1).sqrt()


def contour_donors(identity: Tensor, landmarks: Tensor, source: int) -> tuple[int, int, Tensor]:
    """Items of other identities with the most similar and the most different jaw contour to ``source``.

    identity (N,), landmarks (N, 68, 2) -> (similar item, different item, contour distances (N,)).
    """
    d = contour_distance(landmarks[source], landmarks)
    other = identity != identity[source]
    if not other.any():
        raise ValueError("the split holds a single identity: no donor of another identity")
    similar = int(d.masked_fill(~other, float("inf")).argmin())
    different = int(d.masked_fill(~other, -1.0).argmax())
    return similar, different, d


def edited_expression(source: Structure, edit: str = "surprise", fallback: str = "smile") -> Structure:
    """The source's pose (batch of 1) with expression ``edit`` (mouth opened), or ``fallback`` when ``edit``
    is already its strongest expression: the "own boundary, edited" setting."""
    strongest = EXPRESSIONS[int(source.expression[0].argmax())]
    return expression_structures(source, [fallback if strongest == edit else edit])


SETTINGS = ("a: own boundary, edited", "b: similar contour", "c: different contour")


@torch.no_grad()
def identity_settings(model: AFVAE, dataset: Any, source: int) -> dict[str, Tensor]:
    """The three identity settings of Fig. 10 for one source item of a SyntheticFaces split.

    (a) its own structure with the expression edited (``edited_expression``), (b) the boundary of another
    identity's item with the most similar jaw contour, (c) the one with the most different contour. The truth
    is always the source identity rendered under the target's pose and expression (with its own face shape).
    Returns x (3, H, W) the source, and per setting (first dim 3, in SETTINGS order): donor (item index;
    the source itself for (a)), donor_x, c_target, output, truth (images), contour (jaw-contour distance
    between the source and the boundary the model gets).
    """
    similar, different, dist = contour_donors(dataset.identity, dataset.landmarks, source)
    donors = torch.tensor([source, similar, different])
    own = dataset.true_target(source, edited_expression(dataset.structure.index(source)))
    moved = dataset.true_target(source, dataset.structure.index(donors[1:]))  # (2, ...) source id, donors' poses
    b = dataset.get_batch(donors)
    c_target = torch.cat([own["c"], b["c"][1:]])  # (3, C_b, H, W): (b), (c) use the donors' own boundaries
    x = b["x"][:1].expand(3, -1, -1, -1)
    contour = torch.cat([contour_distance(dataset.landmarks[source], own["landmarks"]), dist[donors[1:]]])
    return {"x": b["x"][0], "donor": donors, "donor_x": b["x"], "c_target": c_target,
            "output": model.translate(x, b["c"][:1].expand(3, -1, -1, -1), c_target),
            "truth": torch.cat([own["x"], moved["x"]]), "contour": contour}


def identity_scores(results: Sequence[dict[str, Tensor]], factor_net: Any, model: AFVAE,
                    dataset: Any) -> pd.DataFrame:
    """Identity similarity (cosine of the appearance predictions of ``factor_net``, a FeatureNet with the factor
    targets: the factor net or the held-out scorer) of each ``identity_settings`` result.

    Columns: source, setting, donor, contour (jaw-contour distance), sim_output (source vs the model's
    output), sim_truth (source vs the true render: the reference), sim_donor (source vs the donor's image:
    another person; NaN for (a), whose donor is the source), sim_reconstruction (source vs its own
    reconstruction: the model's ceiling), l1_output_truth. One row per source and setting.
    """
    x = torch.stack([r["x"] for r in results])  # (N, 3, H, W)
    batch = dataset.get_batch(torch.stack([r["donor"][0] for r in results]))
    e_src = appearance_embedding(factor_net, x).repeat_interleave(3, 0)  # (3N, 63)
    e_rec = appearance_embedding(factor_net, reconstruct(model, x, batch["c"])).repeat_interleave(3, 0)
    cat = {k: torch.cat([r[k] for r in results]) for k in ("output", "truth", "donor_x", "donor", "contour")}
    sim = {k: identity_similarity(e_src, appearance_embedding(factor_net, cat[k]))
           for k in ("output", "truth", "donor_x")}
    own = torch.arange(3 * len(results)) % 3 == 0  # setting (a): the donor is the source itself
    return pd.DataFrame({
        "source": torch.stack([r["donor"][0] for r in results]).repeat_interleave(3).numpy(),
        "setting": list(SETTINGS) * len(results), "donor": cat["donor"].numpy(), "contour": cat["contour"].numpy(),
        "sim_output": sim["output"].numpy(), "sim_truth": sim["truth"].numpy(),
        "sim_donor": sim["donor_x"].masked_fill(own, float("nan")).numpy(),
        "sim_reconstruction": identity_similarity(e_src, e_rec).numpy(),
        "l1_output_truth": l1_error(cat["output"], cat["truth"]).numpy(),
    })


IDENTITY_CLAIMS = {  # claim -> what it compares; the paper's Fig. 10 reading, as tested in notebook 08
    "Fig. 10: identity survives a similar contour (output closer to the source than the donor is)":
        "sim_output - sim_donor",
    "Fig. 10: identity survives a very different contour (output closer to the source than the donor is)":
        "sim_output - sim_donor",
    "Fig. 10: a very different contour costs identity beyond what the pose change costs the true render":
        "gap(c) - gap(b), gap = sim_truth - sim_output",
}


def identity_claims(scores: pd.DataFrame, scorer: str, seed: str = "train_seed") -> pd.DataFrame:
    """The Fig. 10 claims (``IDENTITY_CLAIMS``) as ``claims.claims_table`` rows from ``identity_scores`` rows of
    one or more training seeds (column ``seed``): per seed the mean difference over the same sources, then the
    mean and 95 % t-interval over seeds (no interval, "not tested", with one seed). Positive = the paper's side.

    The third claim subtracts the true render's drop, because a different contour usually comes with another
    yaw and expression, which lowers the similarity of the source's own true render too.
    """
    def per_source(setting: str) -> pd.DataFrame:
        return scores[scores["setting"] == setting].set_index([seed, "source"])

    b, c = per_source(SETTINGS[1]), per_source(SETTINGS[2])
    gap_b, gap_c = b["sim_truth"] - b["sim_output"], c["sim_truth"] - c["sim_output"]
    tests = [(b["sim_output"], b["sim_donor"]), (c["sim_output"], c["sim_donor"]), (gap_c, gap_b.reindex(gap_c.index))]
    n_seeds = scores[seed].nunique()
    rows = []
    for (claim, metric), (ours, base) in zip(IDENTITY_CLAIMS.items(), tests):
        diff = (ours - base).groupby(level=seed).mean()  # (n_seeds,) per-seed mean over the same sources
        mean, lo, hi = claims.t_interval(diff)
        rows.append({"claim": claim, "metric": f"{metric} ({scorer})", "paper": math.nan,
                     "ours_method": float(ours.mean()), "ours_baseline": float(base.mean()), "diff": mean,
                     "lo": lo, "hi": hi, "n_seeds": n_seeds,
                     "interval": claims.INTERVAL if n_seeds > 1 else "none (1 seed)"})
    return claims.claims_table(rows)
