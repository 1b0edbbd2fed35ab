"""Config presets, variants, JSON round-trip and the cache hash."""
import json

import pytest

from afvae.config import PRESETS, VARIANTS, Config, get_config


@pytest.mark.parametrize("scale", sorted(PRESETS))
def test_json_round_trip(scale):
    cfg = get_config(scale, "deconv")
    assert Config.from_dict(json.loads(cfg.to_json())) == cfg


def test_hash_follows_what_changes_the_weights():
    cfg = get_config("smoke")
    assert cfg.hash() == get_config("smoke").hash()
    assert cfg.replace(train={"device": "cuda", "log_every": 1}).hash() == cfg.hash()
    assert cfg.replace(model={"prior": "standard"}).hash() != cfg.hash()
    assert cfg.replace(train={"seed": 1}).hash() != cfg.hash()


def test_variants_are_config_changes():
    full = get_config("default")
    assert full.model.prior == "additive" and full.model.kl and full.model.norm == "weight"
    assert get_config("default", "no_kl").model.kl is False
    assert get_config("default", "standard_prior").model.prior == "standard"
    assert get_config("default", "gmm_sampled").model.prior == "gmm_sampled"
    assert get_config("default", "deconv").model.upsample == "deconv"
    assert get_config("default", "batchnorm").model.norm == "batch"
    assert get_config("default", "no_norm").model.norm == "none"
    assert len({get_config("default", v).hash() for v in VARIANTS}) == len(VARIANTS)


def test_presets_scale_up():
    sizes = [PRESETS[s].data.size for s in ("smoke", "default", "paper")]
    assert sizes == sorted(sizes) and PRESETS["default"].data.size == PRESETS["default"].model.resolution == 64


def test_bad_names():
    with pytest.raises(ValueError, match="unknown scale"):
        get_config("huge")
    with pytest.raises(ValueError, match="unknown variant"):
        get_config("smoke", "no_decoder")
    with pytest.raises(ValueError, match="unknown config sections"):
        Config.from_dict({"modle": {}})
