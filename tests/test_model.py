"""AF-VAE networks: shapes, every switch, weight norm, the manipulation API."""
import pytest
import torch
from torch.nn.utils import parametrize

from afvae.config import ModelConfig, get_config
from afvae.model import AFVAE, Upsample, count_params, interpolate, stage_widths
from afvae.prior import boundary_features

K = 8


def _model(**kw) -> AFVAE:
    cfg = ModelConfig(resolution=32, base_width=8, z_dim=16, **kw)
    torch.manual_seed(0)
    centres = torch.rand(K, cfg.boundary_channels * 16 * 16)
    return AFVAE(cfg, centres).eval()


def _inputs(b: int = 4, r: int = 32):
    g = torch.Generator().manual_seed(1)
    return torch.rand(b, 3, r, r, generator=g) * 2 - 1, torch.rand(b, 13, r, r, generator=g)


@pytest.mark.parametrize("resolution, n", [(32, 3), (64, 4), (256, 6)])
def test_depth_follows_resolution(resolution, n):
    widths = stage_widths(ModelConfig(resolution=resolution, base_width=8, max_width=64))
    assert len(widths) == n and widths[0] == 8 and max(widths) <= 64


def test_bad_resolution():
    with pytest.raises(ValueError, match="power of two"):
        stage_widths(ModelConfig(resolution=48))


@pytest.mark.parametrize("upsample", ["pixel_shuffle", "deconv", "deconv_6x6"])
@pytest.mark.parametrize("norm", ["weight", "batch", "none"])
@pytest.mark.parametrize("prior", ["additive", "gmm_sampled", "standard"])
def test_forward_every_switch(upsample, norm, prior):
    model = _model(upsample=upsample, norm=norm, prior=prior).train()
    x, c = _inputs()
    out = model(x, c, generator=torch.Generator().manual_seed(0))
    assert out["x_hat"].shape == x.shape and out["x_hat"].abs().max() <= 1
    assert out["mu"].shape == out["mu_p"].shape == (4, 16)
    assert torch.allclose(out["w"].sum(1), torch.ones(4))
    out["x_hat"].mean().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "prior" not in n and p.requires_grad)


def test_every_conv_weight_normalised():
    model = _model(norm="weight")
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, torch.nn.PixelShuffle) for m in model.modules())


def test_ablation_switches_change_layers():
    bn, deconv = _model(norm="batch"), _model(upsample="deconv", norm="none")
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules())
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in deconv.modules())
    assert not any(isinstance(m, torch.nn.PixelShuffle) for m in deconv.modules())
    assert not any(parametrize.is_parametrized(m) for m in deconv.modules())


@pytest.mark.parametrize("norm", ["weight", "batch", "none"])
def test_deconv_6x6_doubles_the_size_with_the_sub_pixel_conv_weights(norm):
    ps, dc = Upsample(24, 16, "pixel_shuffle", norm), Upsample(24, 16, "deconv_6x6", norm)
    assert dc(torch.zeros(2, 24, 5, 7)).shape == ps(torch.zeros(2, 24, 5, 7)).shape == (2, 16, 10, 14)
    kernel = lambda m: next(p for n, p in m.named_parameters() if n.endswith(("weight", "original1")) and p.dim() == 4)
    assert kernel(ps).numel() == kernel(dc).numel() == 36 * 24 * 16
    assert count_params(Upsample(24, 16, "deconv", norm)) < 0.5 * count_params(ps)  # the 4 x 4 deconv: 4/9


@pytest.mark.parametrize("scale", ["smoke", "default"])
def test_deconv_ablation_has_the_full_models_parameter_count(scale):
    """Table 3's "w/o pixel shuffle" differs from the full model in the upsampling alone, not in capacity: the
    counts differ only by the biases and weight-norm gains the sub-pixel conv has 4x of (6 C_out per layer)."""
    def n(variant):
        cfg = get_config(scale, variant).model
        return count_params(AFVAE(cfg, torch.zeros(cfg.n_focal, cfg.boundary_channels * cfg.focal_downsample ** 2)))
    full, deconv = n("full"), n("deconv")
    outs = stage_widths(get_config(scale).model)[:-1] + [3]  # C_out of every decoder upsampling, down to RGB
    assert get_config(scale, "deconv").model.upsample == "deconv_6x6"
    assert full - deconv == 6 * sum(outs) and full - deconv < 2e-3 * full, (full, deconv)


def test_focal_weights_follow_the_centres():
    model = _model()
    c = torch.rand(1, 13, 32, 32)
    model.prior.centres.copy_(torch.rand(K, 13 * 256))
    model.prior.centres[3] = boundary_features(c, 16)[0]
    assert model.focal_weights(c).argmax().item() == 3


def test_translate_uses_source_appearance_and_target_structure():
    model = _model()
    x, c = _inputs()
    same = model.translate(x, c, c)
    mu, _ = model.encode(x, c)
    assert torch.allclose(same, model.decode(mu, c))
    moved = model.translate(x, c, c.roll(1, 0))
    assert moved.shape == x.shape and not torch.allclose(moved, same)
    # The decoder sees the image only through z: other z, same structure -> another image.
    assert not torch.allclose(model.decode(mu.roll(1, 0), c), same)
    out, rec = model.eval().translate_and_reconstruct(x, c, c.roll(1, 0))  # one encoding, the same numbers
    assert torch.equal(out, model.translate(x, c, c.roll(1, 0))) and torch.equal(rec, model.translate(x, c, c))


def test_interpolate_grid_corners():
    model = _model()
    x, c = _inputs(2)
    grid = interpolate(model, x, c, c, rows=3)
    assert grid.shape == (3, 2, 3, 32, 32)
    mu, _ = model.encode(x, c)
    assert torch.allclose(grid[0, 0], model.decode(mu[:1], c[:1])[0], atol=1e-5)
    assert torch.allclose(grid[-1, 1], model.decode(mu[1:], c[1:])[0], atol=1e-5)
    with pytest.raises(ValueError, match="exactly two"):
        interpolate(model, *_inputs(3), c)


def test_sample_is_seeded():
    model = _model()
    _, c = _inputs()
    a = model.sample(c, generator=torch.Generator().manual_seed(5))
    b = model.sample(c, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == (4, 3, 32, 32)


def test_pixel_shuffle_starts_checkerboard_free():
    from afvae.model import Upsample

    torch.manual_seed(0)
    up = Upsample(4, 3, "pixel_shuffle", "weight", act=False)
    h = up(torch.randn(1, 4, 8, 8))  # (1, 3, 16, 16)
    assert torch.allclose(h[..., 0::2, 0::2], h[..., 1::2, 1::2], atol=1e-6)  # each 2x2 block is constant


def test_film_starts_as_the_plain_decoder_and_then_uses_z():
    """z_film adds zero-initialised FiLM layers: the same function at init, z-dependent after a change."""
    plain, film = _model(), _model(z_film=True)
    missing, unexpected = film.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(".film." in k for k in missing)
    _, c = _inputs()
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(2))
    y, skips = film.structure(c)
    assert torch.allclose(film.decoder(z, y, skips, c), plain.decoder(z, y, skips, c), atol=1e-6)
    with torch.no_grad():
        film.decoder.film[0].proj.weight.normal_()
    assert not torch.allclose(film.decoder(z, y, skips, c), plain.decoder(z, y, skips, c), atol=1e-3)


@pytest.mark.parametrize("z_spatial", [True, False])
def test_z_spatial_off_gives_the_decoder_one_z_vector_over_the_whole_4x4(z_spatial):
    """With ``z_spatial`` off, the z half of the decoder's first join is the same at every one of its 16 cells."""
    model = _model(z_spatial=z_spatial)
    _, c = _inputs()
    seen = {}
    model.decoder.join.register_forward_pre_hook(lambda _m, args: seen.update(h=args[0]))
    model.decode(torch.randn(4, 16, generator=torch.Generator().manual_seed(2)), c)
    h_z = seen["h"][:, : seen["h"].shape[1] // 2]  # (B, C, 4, 4): the z half, y is the other
    constant = torch.allclose(h_z, h_z[:, :, :1, :1].expand_as(h_z))
    assert constant != z_spatial
    assert model.decoder.fc.weight.shape[0] == h_z.shape[1] * (16 if z_spatial else 1)


@pytest.mark.parametrize("upsample", ["pixel_shuffle", "deconv"])
def test_full_res_head_sees_the_boundary_map(upsample):
    model = _model(full_res_width=8, upsample=upsample)
    x, c = _inputs()
    mu, _ = model.encode(x, c)
    out = model.decode(mu, c)
    assert out.shape == x.shape and out.abs().max() <= 1
    c2 = c.clone()
    c2[:, :, :2, :2] += 1.0  # a change at full resolution, in pixels the pyramid pools away almost entirely
    assert not torch.allclose(model.decode(mu, c2)[:, :, :2, :2], out[:, :, :2, :2])


def test_data_init_gives_every_weight_normalised_conv_unit_outputs_but_the_rgb_layer():
    """Salimans & Kingma's data-dependent init: after it, the same batch meets each conv (not the output layer)
    at zero mean and unit variance per channel; without weight normalisation there is nothing to set."""
    from afvae.model import data_init_

    model = _model(z_film=True).train()
    x, c = _inputs(b=16)
    head = set(model.decoder.out.modules())
    convs = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and m not in head}
    before = model.decoder.out.body[0].parametrizations.weight.original0.clone()
    assert data_init_(model, x, c, torch.Generator().manual_seed(0)) == len(convs)
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: seen.setdefault(n, o)) for n, m in convs.items()]
    with torch.no_grad():
        model(x, c, generator=torch.Generator().manual_seed(0))
    for h in hooks:
        h.remove()
    for name, out in seen.items():
        assert torch.allclose(out.mean((0, 2, 3)), torch.zeros(out.shape[1]), atol=1e-4), name
        assert torch.allclose(out.std((0, 2, 3)), torch.ones(out.shape[1]), atol=1e-3), name
    assert torch.equal(model.decoder.out.body[0].parametrizations.weight.original0, before)
    assert data_init_(_model(norm="batch").train(), x, c) == 0
