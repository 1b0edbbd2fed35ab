"""Config presets, variants, JSON round-trip and the cache hash."""
import dataclasses
import json
import typing

import pytest

from afvae.config import (PRESETS, VARIANTS, Config, DataConfig, LossConfig, ModelConfig, TrainConfig, get_config,
                          load_config)


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
    assert get_config("default", "deconv").model.upsample == "deconv_6x6"  # pixel shuffle's parameter count
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


SECTIONS = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "train": TrainConfig}


def _bad_values(hint) -> list:
    """Values a field annotated ``hint`` must refuse."""
    if typing.get_origin(hint) is typing.Literal:
        return ["nosuch", None]
    if typing.get_origin(hint) is tuple:
        return [(2.0,) * len(typing.get_args(hint)), (0.9,), "0.9"]
    return {bool: ["yes", 1], int: [-1, 2.5, "3", True, None], float: [-1.0, float("nan"), float("inf"), "1e-3"],
            str: [5, None]}.get(hint, [])


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_field_is_checked_when_a_config_is_built(section):
    """Any field, the ones added later included: its type, its Literal values, its range."""
    base = getattr(get_config("smoke"), section)
    hints = typing.get_type_hints(SECTIONS[section])
    checked = 0
    for f in dataclasses.fields(base):
        for bad in _bad_values(hints[f.name]):
            with pytest.raises(ValueError, match=rf"^{section}\.{f.name} "):
                dataclasses.replace(base, **{f.name: bad})
            checked += 1
    assert checked >= len(dataclasses.fields(base))


@pytest.mark.parametrize("section, field, value, says", [
    ("train", "batch_size", 0, "train.batch_size must be >= 1, got 0"),
    ("train", "checkpoint_every", 0, "train.checkpoint_every must be >= 1, got 0"),
    ("train", "steps", -5, "train.steps must be >= 1, got -5"),
    ("train", "steps", 0, "train.steps must be >= 1, got 0"),
    ("train", "lr", 0.0, "train.lr must be > 0, got 0.0"),
    ("train", "device", "gpu", "train.device must be cpu, cuda, cuda:N or mps, got 'gpu'"),
    ("model", "norm", "layer", "model.norm must be one of 'weight', 'batch', 'none', got 'layer'"),
    ("model", "resolution", 48, "model.resolution must be a power of two >= 8, got 48"),
    ("loss", "feature_net", "vgg16", "loss.feature_net must be one of 'auto', 'vgg19', 'factor', 'none'"),
])
def test_bad_values_are_named_with_what_is_allowed(section, field, value, says):
    with pytest.raises(ValueError) as e:
        get_config("smoke").replace(**{section: {field: value}})
    assert str(e.value).startswith(says)


def test_image_size_must_match_the_model():
    with pytest.raises(ValueError, match=r"data.size \(64\) must equal model.resolution \(32\)"):
        get_config("smoke").replace(data={"size": 64})
    with pytest.raises(ValueError, match=r"data.boundary_channels \(1\) must equal model.boundary_channels \(13\)"):
        get_config("smoke").replace(data={"boundary_channels": 1})
    assert get_config("smoke").replace(data={"size": 64}, model={"resolution": 64}).data.size == 64


def test_a_bad_config_file_is_named(tmp_path):
    d = get_config("smoke").to_dict()
    d["train"]["batch_size"] = 0
    (tmp_path / "c.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"c.json: not a valid afvae config \(train.batch_size must be >= 1"):
        load_config(str(tmp_path / "c.json"))
    (tmp_path / "c.json").write_text(json.dumps({"train": 5}))
    with pytest.raises(ValueError, match=r"c.json: not a valid afvae config \(section train must be an object"):
        load_config(str(tmp_path / "c.json"))


def test_fields_added_later_hash_only_when_set():
    from afvae.config import HASHED_WHEN_SET

    cfg = get_config("compact", "full")  # the default preset sets some (ssim, train_images)
    for (section, key), default in HASHED_WHEN_SET.items():
        assert getattr(getattr(cfg, section), key) == default
        assert cfg.replace(**{section: {key: default}}).hash() == cfg.hash()
        changed = (not default if isinstance(default, bool) else default + 1 if isinstance(default, int)
                   else default + 0.5)
        assert cfg.replace(**{section: {key: changed}}).hash() != cfg.hash()


def test_precision_is_not_in_the_hash():
    """``train.amp`` (bf16 forward passes) keys the same run as float32, as the device does: the default preset's
    runs and every shipped model keep their keys."""
    cfg = get_config("default")
    assert cfg.train.amp and cfg.hash() == cfg.replace(train={"amp": False}).hash()
    assert cfg.hash() != cfg.replace(train={"lr": 1e-3}).hash()
