"""The latent explorer (notebook 10): a pure state -> frame core, and an ipywidgets UI that only wires
widgets to it.

    ExplorerState --Explorer.update--> Frame(c, x_hat, extras)

A state names a source face (a test item) and every control of the explorer:

* structure: the source's own landmarks, or (synthetic faces) its identity's landmarks under a chosen head
  pose and expression weights (``afvae.data.synthetic.landmarks``, exact and cheap: nothing is rendered);
* landmark-group nudges (``NUDGES``: mouth open, brows up, smile, eyes open), moved in the face's own frame
  (along and across the eye line) in units of the inter-ocular distance;
* appearance: z from q(z | x, y) of the source, mixed with a second face by t, as the posterior mean or a
  sample; or z from the additive prior p(z | y) (Eq. 4) with the model's focal weights w(c) or the user's
  own w (normalised), as its mean sum_k w_k mu_k or a sample.

The boundary map c is rendered from the landmarks, and x_hat = D(z, E_mu(c)). Encoder outputs are cached per
face and the structure code per landmark set, so moving an appearance control only runs the decoder.
``python -m afvae.explore --screenshot PNG`` makes the README's screenshot of the live UI in JupyterLab.
"""
from __future__ import annotations

import argparse

from afvae.cli import add_debug, fail
from afvae.config import PRESETS

PROG = "python -m afvae.explore"


def parser() -> argparse.ArgumentParser:
    """``python -m afvae.explore``'s arguments."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--screenshot", metavar="PNG", required=True, help="write the live UI's screenshot here")
    p.add_argument("--scale", default="default", choices=sorted(PRESETS))
    p.add_argument("--results", default="results", help="where trained runs are cached (results/runs)")
    p.add_argument("--chromium", help="the Chromium executable (default: $AFVAE_CHROMIUM, else chromium on PATH)")
    return add_debug(p)


if __name__ == "__main__":  # parse before torch is imported: --help and bad arguments answer at once
    ARGS = parser().parse_args()

# The heavy imports, once the command line (if any) has been parsed.
import dataclasses
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from afvae.atomic import atomic_path
from afvae.data import synthetic as syn
from afvae.images import to_numpy_image
from afvae.model import AFVAE

Z_SOURCES = ("posterior mean", "posterior sample", "prior mean", "prior sample")
POSE = ("yaw", "pitch", "roll")
POSE_RANGE = {"yaw": 60.0, "pitch": 20.0, "roll": 15.0}  # degrees: the range the synthetic data covers
# name -> (landmark, along the eye line, down the face) per point, in inter-ocular distances at amount 1.
# Only the named group moves: mouth_open touches the lower lip (channels lower_inner_lip, lower_outer_lip).
NUDGES: dict[str, tuple[tuple[int, float, float], ...]] = {
    "mouth_open": ((55, 0, .12), (56, 0, .28), (57, 0, .35), (58, 0, .28), (59, 0, .12),
                   (65, 0, .25), (66, 0, .35), (67, 0, .25)),
    "brows_up": tuple((i, 0.0, -0.22) for i in range(17, 27)),
    "smile": ((48, -.10, -.12), (54, .10, -.12), (60, -.08, -.10), (64, .08, -.10),
              (49, -.04, -.05), (53, .04, -.05), (59, -.04, -.05), (55, .04, -.05)),
    "eyes_open": ((37, 0, -.07), (38, 0, -.07), (43, 0, -.07), (44, 0, -.07),
                  (40, 0, .03), (41, 0, .03), (46, 0, .03), (47, 0, .03)),
}


@dataclass(frozen=True)
class ExplorerState:
    """Every control of the explorer. ``pose`` (yaw, pitch, roll in degrees) and ``expression`` (weights of
    EXPRESSIONS[1:], neutral = 1 - their sum) re-pose the source identity (synthetic data only); None keeps
    the source's own value. ``focal`` (K,) are user focal weights for the prior (normalised); None uses w(c)."""

    source: int = 0
    other: int = 1
    mix: float = 0.0  # appearance t: z = lerp(z_source, z_other, t)
    pose: tuple[float, float, float] | None = None
    expression: tuple[float, ...] | None = None
    nudges: dict[str, float] = field(default_factory=dict)
    z_source: str = "posterior mean"
    focal: tuple[float, ...] | None = None
    seed: int = 0

    def replace(self, **changes: Any) -> "ExplorerState":
        return dataclasses.replace(self, **changes)


class Frame(NamedTuple):
    """What one update produces: c (C_b, R, R), x_hat (3, R, R) in [-1, 1], and extras (landmarks (68, 2),
    w (K,) the prior's focal weights, z (D,), prior_mean (D,), pca (dict of 2-D points), truth, ms)."""

    c: Tensor
    x_hat: Tensor
    extras: dict[str, Any]


# ---------------------------------------------------------------------------------------------------------
# Pure pieces


def face_frame(landmarks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The face's own axes from its eye centres: (68, 2) -> u (2,) along the eye line (image left -> right),
    v (2,) perpendicular, pointing down the face, and the inter-ocular distance (scalar) in pixels."""
    left, right = landmarks[36:42].mean(0), landmarks[42:48].mean(0)
    iod = (right - left).norm().clamp_min(1e-3)
    u = (right - left) / iod
    return u, torch.stack([-u[1], u[0]]), iod


def nudge_landmarks(landmarks: Tensor, nudges: dict[str, float]) -> Tensor:
    """Move landmark groups: (68, 2) pixels, {name in NUDGES: amount} -> a new (68, 2) (input unchanged)."""
    unknown = set(nudges) - set(NUDGES)
    if unknown:
        raise ValueError(f"unknown nudge(s) {sorted(unknown)}; choose from {list(NUDGES)}")
    u, v, iod = face_frame(landmarks)
    out = landmarks.clone()
    for name, amount in nudges.items():
        for i, along, down in NUDGES[name]:
            out[i] += float(amount) * iod * (along * u + down * v)
    return out


def normalised_weights(focal: Sequence[float], k: int) -> Tensor:
    """User focal weights (K,) >= 0 -> w (K,) summing to 1."""
    w = torch.as_tensor(focal, dtype=torch.float32)
    if w.shape != (k,):
        raise ValueError(f"need {k} focal weights, got {tuple(w.shape)}")
    if (w < 0).any() or float(w.sum()) <= 0:
        raise ValueError(f"focal weights must be >= 0 with a positive sum, got {w.tolist()}")
    return w / w.sum()


def focal_pca(mu_k: Tensor) -> tuple[Tensor, Tensor]:
    """2-D PCA of the focal means: mu_k (K, D) -> centre (D,), basis (D, 2); project with (z - centre) @ basis."""
    centre = mu_k.mean(0)
    _, _, vh = torch.linalg.svd(mu_k - centre, full_matrices=False)  # rows of vh: principal directions
    return centre, vh[:2].T


def to_png(img: Tensor, scale: int = 1) -> bytes:
    """PNG bytes of an image (3, H, W) in [-1, 1] or a boundary map (C, H, W) in [0, 1], enlarged ``scale`` x."""
    from afvae.plotting import boundary_rgb  # the figures' colours, one per curve

    rgb = to_numpy_image(img) if img.shape[0] == 3 else boundary_rgb(img)  # (H, W, 3) in [0, 1]
    arr = (rgb * 255).round().astype(np.uint8)
    pil = Image.fromarray(arr).resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def pca_png(points: dict[str, Tensor], size: int = 160) -> bytes:
    """A small scatter of the 2-D PCA points: mu_k (K, 2) grey dots numbered, prior_mean and z (2,) marked."""
    everything = torch.cat([p.reshape(-1, 2) for p in points.values()])
    lo, hi = everything.min(0).values, everything.max(0).values
    span = (hi - lo).clamp_min(1e-6)
    to_px = lambda p: ((p - lo) / span * (size - 36) + torch.tensor([15.0, 21.0])).tolist()  # noqa: E731
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    for k, p in enumerate(points["mu_k"]):
        x, y = to_px(p)
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=(150, 150, 150))
        draw.text((x + 5, y - 6), str(k), fill=(90, 90, 90))
    for name, colour in (("prior_mean", (214, 39, 40)), ("z", (31, 119, 180))):
        x, y = to_px(points[name])
        draw.line([x - 6, y, x + 6, y], fill=colour, width=2)
        draw.line([x, y - 6, x, y + 6], fill=colour, width=2)
    draw.text((4, 2), "+ prior mean", fill=(214, 39, 40))
    draw.text((size // 2 + 8, 2), "+ z", fill=(31, 119, 180))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------------
# The explorer


class Explorer:
    """A trained model and a dataset split (``afvae.data.datasets``), with caches for fast updates."""

    def __init__(self, model: AFVAE, dataset: Any):
        self.model, self.dataset = model.eval(), dataset
        self.size, self.channels = dataset.size, dataset.boundary_channels
        self.synthetic = hasattr(dataset, "structure") and hasattr(dataset, "appearance_of")
        self.K = model.prior.mu_k.shape[0]
        self.pca = focal_pca(model.prior.mu_k.detach())
        self.mu_k_pca = (model.prior.mu_k.detach() - self.pca[0]) @ self.pca[1]  # (K, 2), fixed: projected once
        self._encoded: dict[int, tuple[Tensor, Tensor]] = {}
        self._structure: tuple[bytes, Tensor, Tensor, list[Tensor]] | None = None  # landmarks key, c, y, skips

    def __len__(self) -> int:
        return len(self.dataset)

    def _check(self, state: ExplorerState) -> None:
        for name in ("source", "other"):
            i = getattr(state, name)
            if not 0 <= i < len(self.dataset):
                raise IndexError(f"{name} = {i} is outside the {len(self.dataset)} faces of this split")
        if state.z_source not in Z_SOURCES:
            raise ValueError(f"z_source must be one of {Z_SOURCES}, got {state.z_source!r}")
        if not 0.0 <= state.mix <= 1.0:
            raise ValueError(f"mix (appearance t) must be in [0, 1], got {state.mix}")
        if (state.pose is not None or state.expression is not None) and not self.synthetic:
            raise ValueError("pose / expression controls need the synthetic renderer; this dataset has no structure")
        if any(state.nudges.values()) and self.dataset.schema.name != "face68":
            raise ValueError(f"landmark nudges move face68 groups; this dataset's schema is {self.dataset.schema.name}")

    def structure_of(self, state: ExplorerState) -> syn.Structure:
        """The source's synthetic structure with the state's pose and expression (batch of 1)."""
        own = self.dataset.structure.index([state.source])
        yaw, pitch, roll = (own.yaw, own.pitch, own.roll) if state.pose is None else state.pose
        expr = own.expression if state.expression is None else torch.tensor([[0.0, *state.expression]])
        if expr.shape != (1, len(syn.EXPRESSIONS)):
            raise ValueError(f"expression needs {len(syn.EXPRESSIONS) - 1} weights ({syn.EXPRESSIONS[1:]})")
        return syn.Structure.create(yaw, pitch, roll, expression=expr)  # neutral = 1 - the others

    def landmarks(self, state: ExplorerState) -> Tensor:
        """The target landmarks (68, 2) in pixels: own or re-posed, then nudged, kept inside the image."""
        if state.pose is None and state.expression is None:
            lm = self.dataset.landmarks[state.source]
        else:
            app = self.dataset.appearance_of(self.dataset.identity[state.source])
            lm = syn.landmarks(app, self.structure_of(state), self.size)[0]
        if any(state.nudges.values()):
            lm = nudge_landmarks(lm, {k: v for k, v in state.nudges.items() if v})
        return lm.clamp(0.0, self.size - 1.0)

    @torch.no_grad()
    def encoded(self, i: int) -> tuple[Tensor, Tensor]:
        """Cached q(z | x_i, y_i): mu, logvar (D,) of item i."""
        if i not in self._encoded:
            b = self.dataset.get_batch([i], keys=["x", "c"])
            mu, logvar = self.model.encode(b["x"], b["c"])
            self._encoded[i] = (mu[0], logvar[0])
        return self._encoded[i]

    @torch.no_grad()
    def structure_code(self, landmarks: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """c (C_b, R, R), y and skips of E_mu(c) for landmarks (68, 2), cached for the last landmark set."""
        key = landmarks.numpy().tobytes()
        if self._structure is None or self._structure[0] != key:
            c = self.dataset.boundaries(landmarks[None])  # (1, C_b, R, R), in the data's keypoint schema
            y, skips = self.model.structure(c)
            self._structure = (key, c[0], y, skips)
        return self._structure[1:]

    @torch.no_grad()
    def focal_weights(self, state: ExplorerState, c: Tensor) -> Tensor:
        """The prior's focal weights (K,): the user's, normalised, or the model's w(c)."""
        if state.focal is not None:
            return normalised_weights(state.focal, self.K)
        return self.model.focal_weights(c[None])[0]

    @torch.no_grad()
    def appearance(self, state: ExplorerState, w: Tensor) -> tuple[Tensor, Tensor]:
        """z (D,) as the state's z source says, and the prior mean (D,) for the weights w (K,)."""
        g = torch.Generator().manual_seed(state.seed)
        mu_p, logvar_p = self.model.prior(w[None], generator=g)  # Eq. 4
        if state.z_source.startswith("prior"):
            mu, logvar = mu_p[0], logvar_p[0]
        else:
            (mu_a, lv_a), (mu_b, lv_b) = self.encoded(state.source), self.encoded(state.other)
            mu, logvar = torch.lerp(mu_a, mu_b, state.mix), torch.lerp(lv_a, lv_b, state.mix)
        if state.z_source.endswith("sample"):
            mu = mu + torch.randn(mu.shape, generator=g) * torch.exp(0.5 * logvar)
        return mu, mu_p[0]

    @torch.no_grad()
    def update(self, state: ExplorerState) -> Frame:
        """One frame of the explorer for ``state``; deterministic given the state (its seed included)."""
        t0 = time.perf_counter()
        self._check(state)
        lm = self.landmarks(state)
        c, y, skips = self.structure_code(lm)
        w = self.focal_weights(state, c)
        z, prior_mean = self.appearance(state, w)
        x_hat = self.model.decoder(z[None], y, skips)[0]  # D(z, y, skips): (3, R, R)
        centre, basis = self.pca
        pca = {"mu_k": self.mu_k_pca, "prior_mean": (prior_mean - centre) @ basis,
               "z": (z - centre) @ basis}
        extras = {"landmarks": lm, "w": w, "z": z, "prior_mean": prior_mean, "pca": pca,
                  "ms": 1000 * (time.perf_counter() - t0)}
        return Frame(c, x_hat, extras)

    def truth(self, state: ExplorerState) -> Tensor | None:
        """The renderer's source identity under the state's structure (3, R, R), when that exists: synthetic
        data and no nudges (the renderer cannot nudge landmark groups). Not part of ``update``: ~5 ms more."""
        if not self.synthetic or any(state.nudges.values()):
            return None
        app = self.dataset.appearance_of(self.dataset.identity[state.source])
        return syn.render(app, self.structure_of(state), self.size)[0][0]

    def clear_cache(self) -> None:
        """Forget the cached encoder outputs and structure code (for cold-start timings)."""
        self._encoded.clear()
        self._structure = None


def pick_faces(dataset: Any, seed: int = 0, max_yaw: float = 15.0) -> tuple[int, int]:
    """A source and a second face of another identity, both near-frontal (|yaw| <= max_yaw) where the
    dataset knows the pose, drawn by ``seed``: (source item, other item)."""
    n = len(dataset)
    ok = dataset.structure.yaw.abs() <= max_yaw if hasattr(dataset, "structure") else torch.ones(n, dtype=torch.bool)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    order = torch.cat([order[ok[order]], order[~ok[order]]])  # frontal ones first, in seeded order
    source = int(order[0])
    others = order[dataset.identity[order] != dataset.identity[source]]
    if len(others) == 0:
        raise ValueError("the split holds a single identity: no second face of another identity")
    return source, int(others[0])


# ---------------------------------------------------------------------------------------------------------
# Sweeps: the static fallback (a strip of frames per control) and the latency benchmark


class Sweep(NamedTuple):
    """One control moved step by step: a short key, a title, a label per step and the states; ``structure``
    says whether the boundary map changes along it."""

    key: str
    name: str
    labels: list[str]
    states: list[ExplorerState]
    structure: bool


def _far_focal_pair(explorer: Explorer, base: ExplorerState) -> tuple[int, int]:
    """The source's strongest focal point a (argmax w(c)) and the focal point b whose mu_k is farthest from mu_a."""
    c, _, _ = explorer.structure_code(explorer.landmarks(base))
    a = int(explorer.focal_weights(base.replace(focal=None), c).argmax())
    mu_k = explorer.model.prior.mu_k.detach()
    return a, int((mu_k - mu_k[a]).norm(dim=1).argmax())


def sweeps(explorer: Explorer, base: ExplorerState, steps: int = 6) -> list[Sweep]:
    """A sweep per control from ``base``: source face, focal weights (prior mean moving from mu_a to mu_b),
    yaw and surprise (synthetic data only), mouth-open nudge, appearance t, and the four z sources."""
    t = torch.linspace(0, 1, steps).tolist()
    items = torch.linspace(0, len(explorer) - 1, steps).round().long().unique().tolist()
    a, b = _far_focal_pair(explorer, base)
    one_hot = lambda s: tuple((1 - s) * (k == a) + s * (k == b) for k in range(explorer.K))  # noqa: E731
    out = [Sweep("source", "source face", [f"item {i}" for i in items], [base.replace(source=i) for i in items],
                 True),
           Sweep("focal", f"focal weights (prior mean, w{a} → w{b})", [f"w{b} = {s:.1f}" for s in t],
                 [base.replace(z_source="prior mean", focal=one_hot(s)) for s in t], False)]
    if explorer.synthetic:
        own = explorer.structure_of(base)
        yaws = torch.linspace(-45, 45, steps).tolist()
        out.append(Sweep("yaw", "yaw", [f"{y:+.0f}°" for y in yaws],
                         [base.replace(pose=(y, float(own.pitch[0]), float(own.roll[0]))) for y in yaws], True))
        surprise = lambda s: (0.0, s, 0.0, 0.0, 0.0)  # noqa: E731  weights of smile, surprise, anger, ...
        out.append(Sweep("expression", "expression: surprise", [f"{s:.1f}" for s in t],
                         [base.replace(expression=surprise(s)) for s in t], True))
    amounts = torch.linspace(0, 1.2, steps).tolist()
    out.append(Sweep("mouth_open", "nudge: mouth open", [f"{m:.2f}" for m in amounts],
                     [base.replace(nudges={"mouth_open": m}) for m in amounts], True))
    out.append(Sweep("mix", f"appearance t (item {base.source} → {base.other})", [f"t = {s:.1f}" for s in t],
                     [base.replace(mix=s) for s in t], False))
    z_states = [("posterior mean", 0), ("posterior sample", 1), ("posterior sample", 2), ("prior mean", 0),
                ("prior sample", 1), ("prior sample", 2)]
    short = {"posterior": "q(z|x)", "prior": "p(z|y)"}
    out.append(Sweep("z_source", "z: posterior q(z|x) vs prior p(z|y)",
                     [f"{short[z.split()[0]]} " + (f"seed {s}" if "sample" in z else "mean") for z, s in z_states],
                     [base.replace(z_source=z, seed=s) for z, s in z_states], False))
    return out


def run_sweep(explorer: Explorer, sweep: Sweep) -> dict[str, Any]:
    """Frames of a sweep: name, labels, c (S, C_b, R, R), x_hat (S, 3, R, R), ms (S,) per update."""
    frames = [explorer.update(s) for s in sweep.states]
    return {"key": sweep.key, "name": sweep.name, "labels": sweep.labels, "c": torch.stack([f.c for f in frames]),
            "x_hat": torch.stack([f.x_hat for f in frames]), "ms": [f.extras["ms"] for f in frames],
            "structure": sweep.structure}


def latency(explorer: Explorer, all_sweeps: Sequence[Sweep], repeats: int = 3) -> "pd.DataFrame":
    """Milliseconds per update, one row per update: columns control, repeat, step, ms. Caches are cleared
    before every pass over a sweep, so its first update is a cold start (new face: encoder and E_mu run)."""
    import pandas as pd

    rows = []
    for sweep in all_sweeps:
        for r in range(repeats):
            explorer.clear_cache()
            rows += [{"control": sweep.key, "repeat": r, "step": j, "ms": explorer.update(s).extras["ms"]}
                     for j, s in enumerate(sweep.states)]
    return pd.DataFrame(rows)


def latency_summary(table: "pd.DataFrame") -> dict[str, float]:
    """Median and 95th percentile (ms) per control and over all updates, from ``latency``'s table."""
    out = {"median_ms": float(table["ms"].median()), "p95_ms": float(table["ms"].quantile(0.95)),
           "max_ms": float(table["ms"].max()), "n_updates": int(len(table))}
    for name, g in table.groupby("control", sort=False):
        out[f"median_ms_{name}"] = float(g["ms"].median())
        out[f"p95_ms_{name}"] = float(g["ms"].quantile(0.95))
    return out


# ---------------------------------------------------------------------------------------------------------
# The ipywidgets UI: widgets -> ExplorerState -> Explorer.update -> images


def _sized() -> dict[str, Any]:
    """Widget size: four columns of controls fit a JupyterLab notebook, readouts included."""
    import ipywidgets as W

    return {"style": {"description_width": "80px"}, "layout": W.Layout(width="290px")}


def _controls(W: Any, explorer: Explorer, state: ExplorerState) -> dict[str, Any]:
    """Every input widget, keyed by name; values from ``state`` (pose / expression from the source)."""
    n, slider = len(explorer) - 1, dict(continuous_update=True, readout_format=".2f", **_sized())
    ctl: dict[str, Any] = {
        "source": W.IntSlider(state.source, 0, n, description="source face", **_sized()),
        "other": W.IntSlider(state.other, 0, n, description="second face", **_sized()),
        "mix": W.FloatSlider(state.mix, min=0, max=1, step=0.05, description="mix t", **slider),
        "z_source": W.Dropdown(options=Z_SOURCES, value=state.z_source, description="z from", **_sized()),
        "seed": W.IntSlider(state.seed, 0, 99, description="seed", **_sized()),
        "focal_auto": W.Checkbox(state.focal is None, description="w = w(c), the model's own", indent=False),
    }
    if explorer.synthetic:
        for name in POSE:
            ctl[name] = W.FloatSlider(0.0, min=-POSE_RANGE[name], max=POSE_RANGE[name], step=1, description=name,
                                      continuous_update=True, readout_format=".0f", **_sized())
        for name in syn.EXPRESSIONS[1:]:
            ctl[name] = W.FloatSlider(0.0, min=0, max=1, step=0.05, description=name, **slider)
    for name in NUDGES:
        ctl[f"nudge_{name}"] = W.FloatSlider(state.nudges.get(name, 0.0), min=-0.5, max=1.5, step=0.05,
                                             description=name.replace("_", " "), **slider)
    focal = state.focal if state.focal is not None else [1.0 / explorer.K] * explorer.K
    for k in range(explorer.K):
        ctl[f"w{k}"] = W.FloatSlider(float(focal[k]), min=0, max=1, step=0.01, description=f"w{k}", **slider)
    return ctl


def _labelled(W: Any, title: str, child: Any) -> Any:
    return W.VBox([W.HTML(f"<b>{title}</b>"), child])


class ExplorerUI:
    """The explorer's widgets, wired to ``Explorer.update``: display ``ui.widget``. Every change of a control
    runs one update and redraws the source, second face, boundary map c, output x_hat, the renderer's truth
    (synthetic, no nudges) and the 2-D PCA of the focal means mu_k with the prior mean and z."""

    IMAGES = ("source", "second face", "boundary map c", "output x_hat", "true render", "PCA of mu_k")

    def __init__(self, explorer: Explorer, state: ExplorerState = ExplorerState(), scale: int = 3):
        import ipywidgets as W  # optional at import time: only the live UI needs it

        self.explorer, self.scale, self.updates, self._syncing = explorer, scale, 0, False
        self.frame: Frame | None = None
        self._faces: tuple[int, int] | None = None  # (source, other) whose pictures are shown
        self.refresh_ms: list[float] = []
        self.controls = _controls(W, explorer, state)
        self.images = {name: W.Image(format="png") for name in self.IMAGES}
        self.status = W.HTML()
        self.widget = self._layout(W)
        self._sync_structure(state)
        for ctl in self.controls.values():
            ctl.observe(self._changed, names="value")
        self.refresh()

    def _layout(self, W: Any) -> Any:
        c = self.controls
        groups = {"faces and appearance": ["source", "other", "mix", "z_source", "seed"],
                  "structure (synthetic)": [*POSE, *syn.EXPRESSIONS[1:]],
                  "landmark nudges": [f"nudge_{n}" for n in NUDGES],
                  "focal weights of the prior": ["focal_auto", *[f"w{k}" for k in range(self.explorer.K)]]}
        boxes = [_labelled(W, title, W.VBox([c[k] for k in keys if k in c])) for title, keys in groups.items()]
        pictures = W.HBox([_labelled(W, name, img) for name, img in self.images.items()])
        return W.VBox([pictures, self.status, W.HBox(boxes)])

    def state(self) -> ExplorerState:
        """The ExplorerState the widgets show."""
        v = {k: ctl.value for k, ctl in self.controls.items()}
        return ExplorerState(
            source=v["source"], other=v["other"], mix=v["mix"], z_source=v["z_source"], seed=v["seed"],
            pose=tuple(v[k] for k in POSE) if self.explorer.synthetic else None,
            expression=tuple(v[k] for k in syn.EXPRESSIONS[1:]) if self.explorer.synthetic else None,
            nudges={n: v[f"nudge_{n}"] for n in NUDGES if v[f"nudge_{n}"]},
            focal=None if v["focal_auto"] else tuple(v[f"w{k}"] for k in range(self.explorer.K)))

    def _set(self, values: dict[str, Any]) -> None:
        """Set widget values without triggering updates."""
        self._syncing = True
        try:
            for k, value in values.items():
                if k in self.controls:
                    self.controls[k].value = value
        finally:
            self._syncing = False

    def _sync_structure(self, state: ExplorerState) -> None:
        """Pose and expression sliders to the source's own structure (synthetic data)."""
        if self.explorer.synthetic:
            own = self.explorer.structure_of(state.replace(pose=None, expression=None))
            values = {"yaw": own.yaw[0], "pitch": own.pitch[0], "roll": own.roll[0]}
            values |= dict(zip(syn.EXPRESSIONS[1:], own.expression[0, 1:]))
            self._set({k: round(float(x), 2) for k, x in values.items()})

    def _changed(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        owner = change["owner"]
        if owner is self.controls["source"]:
            self._sync_structure(self.state())
        if any(owner is self.controls[f"w{k}"] for k in range(self.explorer.K)):
            self._set({"focal_auto": False})  # moving a focal weight switches to the user's w
        self.refresh()

    def refresh(self) -> None:
        """Run one update for the widgets' state and redraw; a bad state shows its error instead."""
        t0, state = time.perf_counter(), self.state()
        try:
            frame = self.explorer.update(state)
        except (ValueError, IndexError) as e:
            self.status.value = f"<span style='color:#b00'>{e}</span>"
            return
        self.frame, self.updates = frame, self.updates + 1
        self._draw(state, frame)
        self.refresh_ms.append(1000 * (time.perf_counter() - t0))  # update + truth render + PNG encoding

    def _draw(self, state: ExplorerState, frame: Frame) -> None:
        if self._faces != (state.source, state.other):  # the two input faces change only with their sliders
            self._faces = (state.source, state.other)
            x = self.explorer.dataset.get_batch(list(self._faces), keys=["x"])["x"]
            for img, name in zip(x, self.IMAGES[:2]):
                self.images[name].value = to_png(img, self.scale)
        truth = self.explorer.truth(state)
        pictures = [frame.c, frame.x_hat, truth if truth is not None else torch.full_like(frame.x_hat, 0.7)]
        for img, name in zip(pictures, self.IMAGES[2:]):
            self.images[name].value = to_png(img, self.scale)
        self.images["PCA of mu_k"].value = pca_png(frame.extras["pca"], size=self.explorer.size * self.scale)
        if self.controls["focal_auto"].value:  # show w(c) on the sliders: the prior's means move live
            self._set({f"w{k}": round(float(w), 2) for k, w in enumerate(frame.extras["w"])})
        w = ", ".join(f"{float(v):.2f}" for v in frame.extras["w"])
        note = "" if truth is not None else " · no true render (the renderer cannot nudge landmarks)"
        self.status.value = (f"update {frame.extras['ms']:.0f} ms · z from {state.z_source} · "
                             f"focal weights w = ({w}){note}")


TARGET_MS = 200  # one update at 64 px: the explorer's responsiveness target


def ui_refresh_ms(ui: "ExplorerUI", control: str, values: Sequence[float]) -> float:
    """Median ms of the live UI's whole refresh (update, true render, PNG encoding) while ``control`` takes
    ``values`` one after another."""
    for v in values:
        ui.controls[control].value = round(float(v), 1)
    return float(torch.tensor(ui.refresh_ms[-len(values):]).median())


def build_ui(explorer: Explorer, state: ExplorerState = ExplorerState(), scale: int = 3) -> ExplorerUI:
    """The live explorer for a notebook: ``display(build_ui(...).widget)``."""
    return ExplorerUI(explorer, state, scale)


# ---------------------------------------------------------------------------------------------------------
# The README screenshot: the live UI in JupyterLab, driven by headless Chromium

SCREENSHOT_STATE = {"yaw": 25.0, "smile": 0.7}  # slider moves before the shot


def screenshot_notebook(notebook: str | Path, out: str | Path, parameters: dict[str, Any],
                        moves: dict[str, Any]) -> Path:
    """A copy of ``notebook`` cut after the cell that displays the UI (``build_ui``), with ``parameters``
    injected (papermill) and a last cell that moves the sliders ``moves`` (name -> value)."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = parameterize_notebook(load_notebook_node(str(notebook)), parameters)
    ui_cell = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "build_ui" in c.source)
    nb.cells = nb.cells[:ui_cell + 1]
    nb.cells.append(nbformat.v4.new_code_cell("\n".join(f"ui.controls[{k!r}].value = {v!r}"
                                                         for k, v in moves.items())))
    out = Path(out)
    nbformat.write(nb, out)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, server: Any, log: Path, timeout: float = 90.0) -> None:
    """Poll ``url`` (no proxy) until JupyterLab answers; a dead or silent server raises with its log's tail."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout and server.poll() is None:
        try:
            opener.open(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    tail = "\n".join(log.read_text().splitlines()[-10:])
    raise RuntimeError(f"JupyterLab did not answer at {url} within {timeout:.0f} s; its log ends:\n{tail}")


def _shoot(url: str, out: Path, chromium: str | None, timeout_ms: int) -> None:
    """Open the notebook in JupyterLab, run all cells, wait for the widgets, screenshot the output area."""
    from afvae.browser import headless_page

    with headless_page(1500, 1000, executable=chromium) as page:
        page.goto(url)
        page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget && "
                               "window.jupyterapp.shell.currentWidget.sessionContext && "
                               "window.jupyterapp.shell.currentWidget.sessionContext.isReady", timeout=timeout_ms)
        page.evaluate("window.jupyterapp.commands.execute('application:toggle-left-area')")
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_selector(".widget-image", timeout=timeout_ms)
        page.wait_for_function("Array.from(document.querySelectorAll('.jp-InputPrompt')).pop().textContent"
                               ".match(/\\[\\d+\\]/)", timeout=timeout_ms)  # the last cell has run
        time.sleep(2.0)  # the last slider move's images arrive over the comm
        cell = page.locator(".jp-CodeCell").filter(has=page.locator(".widget-image")).first
        cell.scroll_into_view_if_needed()
        page.evaluate("document.querySelectorAll('.Toastify').forEach(e => e.remove())")  # the news toast
        cell.screenshot(path=str(out))


def screenshot(out: str | Path = "figures/explorer_screenshot.png", *, scale: str = "default",
               results: str = "results", data: str = "synthetic", seed: int = 0,
               chromium: str | None = None, timeout_s: float = 300.0) -> Path:
    """PNG of the live explorer UI in JupyterLab (headless Chromium through playwright, both needed here only).

    Starts ``jupyter lab`` on 127.0.0.1 with a random token in a temporary folder holding the first cells of
    notebooks/10_explorer.ipynb, runs them (the model is trained first if ``results`` does not cache it),
    moves a few sliders (SCREENSHOT_STATE) and writes the widget area to ``out`` atomically.
    """
    import os
    import secrets
    import subprocess
    import sys
    import tempfile

    root, out = Path(__file__).resolve().parents[1], Path(out).resolve()
    params = {"SCALE": scale, "DATA": data, "SEED": seed, "RESULTS": str(Path(results).resolve()),
              "FIGURES": str(out.parent)}
    token, port = secrets.token_hex(16), _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        screenshot_notebook(root / "notebooks" / "10_explorer.ipynb", Path(tmp) / "explorer.ipynb", params,
                            SCREENSHOT_STATE)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
               "JUPYTER_RUNTIME_DIR": str(Path(tmp) / "runtime")}
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.token={token}", f"--ServerApp.root_dir={tmp}", "--LabApp.expose_app_in_browser=True",
               f"--LabApp.workspaces_dir={tmp}", "--LabApp.extension_manager=readonly",
               "--ServerApp.allow_root=True"]  # containers run as root; the server listens on 127.0.0.1 only
        log = open(Path(tmp) / "jupyter.log", "w")
        server = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", server, Path(tmp) / "jupyter.log")
            with atomic_path(out) as tmp_png:
                _shoot(f"http://127.0.0.1:{port}/lab/tree/explorer.ipynb?token={token}", tmp_png, chromium,
                       int(timeout_s * 1000))
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
    return out


def run(a: argparse.Namespace) -> None:
    """Write the screenshot the parsed arguments ``a`` ask for; bad input exits with code 2."""
    logging.basicConfig(level=logging.INFO)
    if a.chromium and not Path(a.chromium).is_file():  # before JupyterLab starts and the model trains
        fail(PROG, f"--chromium: no Chromium at {a.chromium}")
    try:
        path = screenshot(a.screenshot, scale=a.scale, results=a.results, chromium=a.chromium)
    except (OSError, ValueError, RuntimeError) as e:  # no Chromium, a server that did not start, an unwritable PNG
        fail(PROG, e, a.debug)
    logging.getLogger(__name__).info("wrote %s", path)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m afvae.explore --screenshot PNG ...`` (see ``parser``)."""
    run(parser().parse_args(argv))


if __name__ == "__main__":
    run(ARGS)
