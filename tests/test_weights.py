"""External weight files are checked against their published SHA-256 before anything reads them.

Every file here is small and made by the test: a pickle that runs code when unpickled, random weights under
the expected name, a file whose name carries a wrong hash prefix. None of them may reach a loader.
"""
import hashlib
from pathlib import Path

import pytest
import torch

from afvae import weights
from afvae.metrics import INCEPTION_ENV, INCEPTION_FILE, fidelity_metrics
from afvae.weights import WeightsMismatch, WeightsUnavailable, resolve_weights


class RunsCode:
    """Unpickling this object executes code (what a crafted weights file does)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _crafted(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": RunsCode(marker)}, path)
    return path


def _images(n=4, size=8):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


@pytest.fixture
def no_loader(monkeypatch):
    """Any torch.load of a file is an error: the hash check must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"torch.load reached an unverified file: {args[:1]}")

    monkeypatch.setattr(torch, "load", refuse)


def test_published_hashes_match_the_prefixes_in_the_file_names():
    for name, sha in weights.SHA256.items():
        assert len(sha) == 64 and int(sha, 16) >= 0
        prefix = weights.name_prefix(name)
        assert prefix is None or sha.startswith(prefix), name
    assert weights.name_prefix(INCEPTION_FILE) == "6726825d"
    assert INCEPTION_FILE in weights.SHA256 and "vgg19-dcbb9e9d.pth" in weights.SHA256


@pytest.mark.parametrize("where", ["argument", "hub cache"])
def test_crafted_inception_file_never_runs(tmp_path, monkeypatch, where):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    marker = tmp_path / "pwned"
    if where == "argument":
        path = _crafted(tmp_path / "mine.pth", marker)
    else:
        path = _crafted(tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_FILE, marker)
    res = fidelity_metrics(_images(), _images(), isc=False, kid=False, download=False,
                           weights_path=path if where == "argument" else None)
    assert not marker.exists(), "the crafted weights file executed code"
    assert res["available"] is False and res["fid"] is None
    assert "SHA-256" in res["reason"] and str(path) in res["reason"] and "\n" not in res["reason"]


def test_random_inception_weights_are_refused_not_scored(tmp_path, monkeypatch):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    monkeypatch.setattr(FeatureExtractorInceptionV3, "__init__",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("Inception was built")))
    path = tmp_path / INCEPTION_FILE
    torch.save({"fc.weight": torch.randn(4, 4)}, path)
    res = fidelity_metrics(_images(), _images(), isc=False, kid=False, download=False, weights_path=path)
    assert res["available"] is False and res["fid"] is None and "SHA-256" in res["reason"]


def test_vgg_fan_sfd_and_dlib_files_are_checked_before_loading(tmp_path, monkeypatch, no_loader):
    from afvae import features
    from afvae.data.real import landmarks

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fake = tmp_path / "fake.pth"
    fake.write_bytes(b"not the published weights")
    with pytest.raises(WeightsMismatch, match="SHA-256"):
        features.load_vgg19(fake, download=False)
    monkeypatch.setenv(features.VGG19_ENV, str(fake))
    assert not features.weights_available(features.VGG19_FILE, env=features.VGG19_ENV)  # "auto" -> factor net
    pytest.importorskip("face_alignment")
    with pytest.raises(WeightsMismatch, match="SHA-256"):
        landmarks.fan_weights_path(fake, download=False)
    monkeypatch.setenv(landmarks.SFD_ENV, str(fake))
    with pytest.raises(WeightsMismatch, match="SHA-256"):
        landmarks._fan_detector("sfd", download=False)
    assert landmarks._fan_detector("auto", download=False)[0] == "dlib"  # a bad S3FD file is not "available"
    with pytest.raises(WeightsMismatch, match="SHA-256"):
        landmarks.dlib_predictor_path(fake)


def test_unlisted_names_are_checked_by_the_hash_prefix_they_carry(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    data = b"some weights"
    prefix = hashlib.sha256(data).hexdigest()[:10]
    good = tmp_path / f"net-{prefix}.pth"
    good.write_bytes(data)
    assert resolve_weights(good.name, env="AFVAE_TEST_W", path=good, download=False) == good
    bad = tmp_path / "net-0123456789.pth"
    bad.write_bytes(data)
    with pytest.raises(WeightsMismatch, match="0123456789"):
        resolve_weights(bad.name, env="AFVAE_TEST_W", path=bad, download=False)
    nohash = tmp_path / "net.pth"
    nohash.write_bytes(data)
    with pytest.raises(WeightsMismatch, match="no published SHA-256"):
        resolve_weights(nohash.name, env="AFVAE_TEST_W", path=nohash, download=False)
    assert issubclass(WeightsMismatch, WeightsUnavailable)


def test_a_verified_file_passes_and_is_hashed_once(tmp_path, monkeypatch):
    data = b"trusted bytes"
    path = tmp_path / "x.pth"
    path.write_bytes(data)
    monkeypatch.setitem(weights.SHA256, "x.pth", hashlib.sha256(data).hexdigest())
    calls = []
    real = weights._sha256_of
    monkeypatch.setattr(weights, "_sha256_of", lambda p: calls.append(p) or real(p))
    for _ in range(3):
        assert resolve_weights("x.pth", env="AFVAE_TEST_W", path=path, download=False) == path
    assert len(calls) == 1
    path.write_bytes(b"swapped after the check")
    with pytest.raises(WeightsMismatch):
        resolve_weights("x.pth", env="AFVAE_TEST_W", path=path, download=False)


def test_verified_copy_is_what_gets_loaded(tmp_path, monkeypatch):
    data = b"trusted bytes"
    path = tmp_path / "x.pth"
    path.write_bytes(data)
    monkeypatch.setitem(weights.SHA256, "x.pth", hashlib.sha256(data).hexdigest())
    with weights.verified_copy(path, "x.pth") as copy:
        assert copy != path and copy.read_bytes() == data
        path.write_bytes(b"swapped")  # a swap of the original after the check does not reach the copy
        assert copy.read_bytes() == data
    assert not copy.exists()
    with pytest.raises(WeightsMismatch):
        with weights.verified_copy(path, "x.pth"):
            pass
