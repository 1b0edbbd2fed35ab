"""The latent explorer: deterministic updates, the prior mean under user focal weights, local nudges,
appearance mixing, and the widget UI wired without a frontend."""
import pytest
import torch

from afvae import explore
from afvae.config import get_config
from afvae.data.datasets import build_dataset
from afvae.explore import Explorer, ExplorerState
from afvae.model import AFVAE
from afvae.prior import fit_focal_points

MOUTH_CHANNELS = {9, 10, 11, 12}  # upper / lower, outer / inner lip curves of FACE68


@pytest.fixture(scope="module")
def explorer() -> Explorer:
    """An untrained smoke-size model (the explorer's maths does not depend on training) on the test split."""
    torch.manual_seed(0)
    cfg = get_config("smoke")
    data = build_dataset(cfg.data, "test")
    centres = fit_focal_points(data.get_batch(torch.arange(len(data)))["c"], cfg.model.n_focal, n_init=1)
    model = AFVAE(cfg.model, centres).eval()
    with torch.no_grad():  # spread the focal means apart so that moving w visibly moves the prior mean
        model.prior.mu_k.mul_(3.0)
    return Explorer(model, data)


@pytest.fixture(scope="module")
def base(explorer) -> ExplorerState:
    source, other = explore.pick_faces(explorer.dataset, seed=0)
    return ExplorerState(source=source, other=other)


def test_pick_faces_gives_two_identities(explorer, base):
    assert explorer.dataset.identity[base.source] != explorer.dataset.identity[base.other]


@pytest.mark.parametrize("z_source", explore.Z_SOURCES)
def test_update_is_deterministic_for_a_seed(explorer, base, z_source):
    state = base.replace(z_source=z_source, seed=7, pose=(20.0, 5.0, 0.0), nudges={"smile": 0.5})
    a, b = explorer.update(state), explorer.update(state)
    explorer.clear_cache()
    c = explorer.update(state)
    for f in (b, c):
        assert torch.equal(a.x_hat, f.x_hat) and torch.equal(a.c, f.c) and torch.equal(a.extras["z"], f.extras["z"])
    if z_source.endswith("sample"):  # another seed draws another z
        assert not torch.equal(explorer.update(state.replace(seed=8)).extras["z"], a.extras["z"])


def test_own_structure_reproduces_the_dataset_landmarks(explorer, base):
    """Re-posing with the source's own pose and expression gives its exact landmarks."""
    own = explorer.structure_of(base)
    state = base.replace(pose=(float(own.yaw[0]), float(own.pitch[0]), float(own.roll[0])),
                         expression=tuple(own.expression[0, 1:].tolist()))
    assert torch.allclose(explorer.landmarks(state), explorer.dataset.landmarks[base.source], atol=1e-4)
    assert not torch.allclose(explorer.landmarks(state.replace(pose=(40.0, 0.0, 0.0))), explorer.landmarks(state))


def test_focal_sliders_move_the_prior_mean_as_eq4(explorer, base):
    mu_k = explorer.model.prior.mu_k.detach()
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        raw = torch.rand(explorer.K, generator=g) * 2  # slider values, not normalised
        frame = explorer.update(base.replace(z_source="prior mean", focal=tuple(raw.tolist())))
        w = raw / raw.sum()
        assert torch.allclose(frame.extras["w"], w, atol=1e-6)
        assert torch.allclose(frame.extras["prior_mean"], (w[:, None] * mu_k).sum(0), atol=1e-5)  # sum_k w_k mu_k
        assert torch.allclose(frame.extras["z"], frame.extras["prior_mean"])  # z = the prior mean
    one_hot = explorer.update(base.replace(z_source="prior mean", focal=(0.0,) * (explorer.K - 1) + (1.0,)))
    assert torch.allclose(one_hot.extras["z"], mu_k[-1])


def test_auto_focal_weights_are_the_models_w_of_c(explorer, base):
    frame = explorer.update(base.replace(z_source="prior mean"))
    assert torch.allclose(frame.extras["w"], explorer.model.focal_weights(frame.c[None])[0])


def test_bad_focal_weights_and_items_fail_clearly(explorer, base):
    with pytest.raises(ValueError, match="positive sum"):
        explorer.update(base.replace(focal=(0.0,) * explorer.K))
    with pytest.raises(ValueError, match="need 8 focal weights"):
        explorer.update(base.replace(focal=(1.0, 1.0)))
    with pytest.raises(IndexError, match="outside"):
        explorer.update(base.replace(source=len(explorer)))
    with pytest.raises(ValueError, match="unknown nudge"):
        explorer.update(base.replace(nudges={"ears_up": 1.0}))


def test_mouth_open_moves_only_the_mouth(explorer, base):
    before = explorer.update(base)
    after = explorer.update(base.replace(nudges={"mouth_open": 1.0}))
    moved = (after.extras["landmarks"] - before.extras["landmarks"]).norm(dim=1) > 1e-6
    assert moved.any() and set(moved.nonzero()[:, 0].tolist()) <= set(range(48, 68))
    channels = set(((after.c - before.c).abs().flatten(1).amax(1) > 0).nonzero()[:, 0].tolist())
    assert channels and channels <= MOUTH_CHANNELS
    lower_lip = after.extras["landmarks"][57] - before.extras["landmarks"][57]
    _, down, iod = explore.face_frame(before.extras["landmarks"])
    assert float(lower_lip @ down) == pytest.approx(0.35 * float(iod), rel=1e-4)  # opens downwards, by 0.35 iod


def test_nudge_does_not_mutate_its_input(explorer, base):
    lm = explorer.dataset.landmarks[base.source].clone()
    explore.nudge_landmarks(lm, {"brows_up": 1.0})
    assert torch.equal(lm, explorer.dataset.landmarks[base.source])


def test_appearance_t_reproduces_the_two_posteriors(explorer, base):
    mu_a, _ = explorer.model.encode(*[explorer.dataset.get_batch([base.source])[k] for k in ("x", "c")])
    mu_b, _ = explorer.model.encode(*[explorer.dataset.get_batch([base.other])[k] for k in ("x", "c")])
    z0 = explorer.update(base.replace(mix=0.0)).extras["z"]
    z1 = explorer.update(base.replace(mix=1.0)).extras["z"]
    zh = explorer.update(base.replace(mix=0.5)).extras["z"]
    assert torch.allclose(z0, mu_a[0], atol=1e-6) and torch.allclose(z1, mu_b[0], atol=1e-6)
    assert torch.allclose(zh, (mu_a[0] + mu_b[0]) / 2, atol=1e-6)
    frame = explorer.update(base)  # x_hat = D(z, E_mu(c)) of the source: its posterior-mean reconstruction
    assert torch.allclose(frame.x_hat, explorer.model.decode(mu_a, frame.c[None])[0], atol=1e-5)


def test_sweeps_cover_every_control(explorer, base):
    keys = [s.key for s in explore.sweeps(explorer, base)]
    assert keys == ["source", "focal", "yaw", "expression", "mouth_open", "mix", "z_source"]
    table = explore.latency(explorer, explore.sweeps(explorer, base, steps=3), repeats=1)
    summary = explore.latency_summary(table)
    assert summary["n_updates"] == len(table) and 0 < summary["median_ms"] <= summary["p95_ms"] <= summary["max_ms"]


def test_png_encoding_round_trips():
    from io import BytesIO

    from PIL import Image

    x = torch.zeros(3, 8, 8) - 1
    x[0] = 1.0  # pure red
    img = Image.open(BytesIO(explore.to_png(x, scale=2)))
    assert img.size == (16, 16) and img.getpixel((3, 3)) == (255, 0, 0)


def test_widget_ui_builds_and_a_slider_triggers_an_update(explorer, base):
    pytest.importorskip("ipywidgets")
    ui = explore.build_ui(explorer, base)
    assert ui.updates == 1 and set(ui.images) == set(ui.IMAGES)
    first = ui.images["output x_hat"].value
    ui.controls["yaw"].value = 35.0
    assert ui.updates == 2 and ui.state().pose[0] == 35.0
    assert ui.images["output x_hat"].value != first  # the face was re-rendered
    ui.controls["w3"].value = 0.9  # a focal slider switches to the user's weights
    assert not ui.controls["focal_auto"].value and ui.state().focal[3] == pytest.approx(0.9)
    ui.controls["source"].value = base.other  # a new source: the pose sliders follow its own structure
    own = explorer.dataset.structure.index([base.other])
    assert ui.controls["yaw"].value == pytest.approx(float(own.yaw[0]), abs=0.01)
    for k in range(explorer.K):
        ui.controls[f"w{k}"].value = 0.0
    assert "positive sum" in ui.status.value  # bad input shows its error instead of raising
