"""Figures: the shared style and ``save_figure``. The only module that imports matplotlib."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import matplotlib.pyplot as plt  # headless runs fall back to the Agg backend by themselves
import matplotlib.ticker as mticker
import numpy as np
import torch

from afvae.atomic import atomic_path
from afvae.boundaries import Schema, boundary_map
from afvae.data import synthetic as syn
from afvae.images import to_numpy_image

if TYPE_CHECKING:
    import pandas as pd

FIGURES = Path("figures")

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "image.interpolation": "nearest",
}


def use_style() -> None:
    """Apply the project's matplotlib style."""
    plt.rcParams.update(STYLE)


def save_figure(fig: plt.Figure, name: str, out_dir: str | Path = FIGURES) -> Path:
    """Save ``fig`` as ``out_dir/name.png`` atomically and return the path."""
    path = Path(out_dir) / (name if name.endswith(".png") else f"{name}.png")
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    return path


def boundary_rgb(c: torch.Tensor) -> np.ndarray:
    """(13, H, W) boundary map in [0, 1] -> (H, W, 3) with one colour per curve, for imshow."""
    k = c.shape[0]
    colours = torch.tensor(plt.get_cmap("tab20")(np.linspace(0, 1, max(k, 2)))[:k, :3], dtype=torch.float32)
    rgb = torch.einsum("khw,kc->hwc", c.detach().float().cpu(), colours)
    return rgb.clamp(0, 1).numpy()


use_style()


def image_grid(rows: list[list[torch.Tensor]], *, row_labels: list[str] | None = None,
               col_labels: list[str] | None = None, cell: float = 1.1) -> plt.Figure:
    """Grid of images: rows[i][j] is (3, H, W) in [-1, 1] or a (C, H, W) boundary map (C != 3)."""
    n_r, n_c = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_r, n_c, figsize=(cell * n_c, cell * n_r), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_c):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(row):
                img = row[j]
                ax.imshow(to_numpy_image(img) if img.shape[0] == 3 else boundary_rgb(img))
            if i == 0 and col_labels and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=8)
        if row_labels:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=8, rotation=0, ha="right", va="center")
    fig.subplots_adjust(wspace=0.04, hspace=0.06)
    return fig


def plot_losses(histories: dict[str, "pd.DataFrame"], keys: tuple[str, ...] = ("loss", "l1", "feature", "kl"),
                title: str = "") -> plt.Figure:
    """Training curves: one panel per loss term, one line per run (histories from experiment.history)."""
    present = [k for k in keys if any(k in h for h in histories.values())]
    fig, axes = plt.subplots(1, len(present), figsize=(3.0 * len(present), 2.6), squeeze=False)
    for ax, key in zip(axes[0], present):
        for name, h in histories.items():
            if key in h:
                ax.plot(h["step"], h[key], label=name, lw=1.2)
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.set_yscale("log" if key in ("loss", "kl") and all((h[key] > 0).all() for h in histories.values()
                                                           if key in h) else "linear")
    axes[0, 0].legend(fontsize=7, loc="upper right")  # an explicit place: "best" is slow on long histories
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_focal_clusters(pca2: np.ndarray, pca3: np.ndarray, tsne: np.ndarray, labels: np.ndarray,
                        centres: torch.Tensor, side: int) -> plt.Figure:
    """Fig. 2(b): structure representations in 2-D PCA, 3-D PCA and t-SNE, coloured by focal cluster,
    above the K centre boundary maps. pca2/tsne (N, 2), pca3 (N, 3), labels (N,), centres (K, C*side*side)."""
    K = centres.shape[0]
    fig = plt.figure(figsize=(11, 5.4))
    grid = fig.add_gridspec(2, max(K, 3), height_ratios=[3, 1.2])
    colours = plt.get_cmap("tab10")(labels % 10)
    top = grid[0, :].subgridspec(1, 3)
    spans = [top[0, 0], top[0, 1], top[0, 2]]
    for span, data, name, proj in zip(spans, (pca2, pca3, tsne), ("PCA (2-D)", "PCA (3-D)", "t-SNE"),
                                      (None, "3d", None)):
        ax = fig.add_subplot(span, projection=proj)
        ax.scatter(*data.T, c=colours, s=3, alpha=0.6, linewidths=0)
        ax.set_title(name)
        ax.set_xticks([]), ax.set_yticks([])
        if proj == "3d":
            ax.set_zticks([])
    for k in range(K):
        ax = fig.add_subplot(grid[1, k])
        ax.imshow(boundary_rgb(centres[k].view(-1, side, side) / centres[k].max().clamp_min(1e-8)))
        ax.set_title(f"focal point {k}", fontsize=8, color=plt.get_cmap("tab10")(k % 10))
        ax.axis("off")
    return fig


# ---------------------------------------------------------------------------------------------------------
# Figure notebooks 04-08 (pixel shuffle, weight norm, interpolation, manipulation, identity)

METHOD_COLOURS = {"source": "black", "AF-VAE": "tab:blue", "source unchanged": "tab:gray", "AF-VAE long": "tab:green",
                  "pixel shuffle (full)": "tab:blue", "deconv": "tab:orange"}


def _show(ax: plt.Axes, img: torch.Tensor | None, title: str | None = None, below: str | None = None) -> None:
    """Draw an image (3, H, W) in [-1, 1] or a boundary map (C != 3, H, W) without ticks; text above / below."""
    ax.set_xticks([]), ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    if img is not None:
        ax.imshow(to_numpy_image(img) if img.shape[0] == 3 else boundary_rgb(img))
    else:
        ax.set_aspect("equal")  # an empty cell takes the same square as its neighbouring images
    if title:
        ax.set_title(title, fontsize=7)
    if below:
        ax.set_xlabel(below, fontsize=7, labelpad=2)


def plot_colour_histograms(hists: dict[str, torch.Tensor], entropy: dict[str, list[float]],
                           examples: dict[str, torch.Tensor], display_bins: int = 64) -> plt.Figure:
    """Fig. 3: pooled colour histograms per image set, with example images underneath.

    hists: set name -> (4, 256) probabilities of R, G, B, luminance (``analysis.colour_histograms``);
    entropy: set name -> the 4 entropies in bits (for the legends); examples: set name -> (n, 3, H, W).
    """
    names = list(hists)
    colours = [METHOD_COLOURS.get(n, f"C{i}") for i, n in enumerate(names)]
    fig = plt.figure(figsize=(11, 2.6 + 1.0 * len(examples)), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[2.6, 1.0 * len(examples)])
    axes = top.subplots(1, 4)
    centres = (np.arange(display_bins) + 0.5) * 256 / display_bins
    for k, (ax, channel) in enumerate(zip(axes, ("red", "green", "blue", "luminance"))):
        for name, colour in zip(names, colours):
            p = hists[name][k].view(display_bins, -1).sum(1).numpy()  # merge 256 bins into display_bins
            ax.step(centres, p, where="mid", color=colour, lw=1.2, label=f"{name}: H = {entropy[name][k]:.2f} bits")
        ax.set(title=f"{channel}", xlabel="8-bit value", xlim=(0, 255))
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False)
    axes[0].set_ylabel(f"fraction of pixels ({display_bins} bins)")
    top.suptitle("Colour histograms pooled over the test images (H: entropy of the 256-bin histogram)", fontsize=9)
    bottom.suptitle("Test images (top row) and their reconstructions by each decoder", fontsize=9)
    n = max(len(v) for v in examples.values())
    cells = bottom.subplots(len(examples), n, squeeze=False)
    for i, (name, imgs) in enumerate(examples.items()):
        for j in range(n):
            _show(cells[i, j], imgs[j] if j < len(imgs) else None)
        cells[i, 0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    return fig


def plot_entropy_intervals(entropies: "pd.DataFrame", advantage: "pd.DataFrame", paper: dict[str, float],
                           paper_advantage: float, per_seed: "pd.DataFrame | None" = None) -> plt.Figure:
    """Fig. 3 in numbers, drawn with seaborn: each image set's entropy per channel with its 95 % interval and the
    paper's one value per set as stars at the side (left); per channel, how much closer pixel shuffle's entropy is
    to the source's than deconv's, with its interval and the paper's difference as a star (right). Neither axis
    starts at zero.

    entropies: images, channel, H, lo, hi; advantage: channel, diff, lo, hi (``analysis.entropy_comparison``);
    paper: image set -> its entropy in the paper; per_seed: channel, diff (one row per seed and channel, drawn as
    small grey dots), or None.
    """
    import pandas as pd
    import seaborn.objects as so
    from matplotlib.lines import Line2D

    names = list(dict.fromkeys(entropies["images"]))
    palette = {n: METHOD_COLOURS.get(n, f"C{i}") for i, n in enumerate(names)}
    ref_x = "paper\n(one value\nper set)"
    stars = pd.DataFrame({"images": list(paper), "channel": ref_x, "H": list(paper.values())})
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), width_ratios=[1.1, 1], layout="constrained")
    (so.Plot(entropies, x="channel", y="H", color="images", ymin="lo", ymax="hi")
     .add(so.Range(linewidth=2), so.Dodge(), legend=False)
     .add(so.Dot(pointsize=5), so.Dodge(), legend=False)
     .add(so.Dot(marker="*", pointsize=12), so.Dodge(), data=stars, x="channel", y="H", color="images",
          ymin=None, ymax=None, legend=False)
     .scale(color=so.Nominal(palette, order=names), x=so.Nominal(order=[*dict.fromkeys(entropies["channel"]), ref_x]))
     .label(x="", y="entropy of the 256-bin histogram (bits)")
     .on(ax).plot())
    handles = [Line2D([], [], color=palette[n], marker="o", lw=2, label=n) for n in names]
    handles.append(Line2D([], [], color="0.3", marker="*", ms=10, lw=0, label="the paper's value"))
    ax.legend(handles=handles, fontsize=7, frameon=False, loc="upper left")
    ax.set_title("Colour entropy per channel (ours: dot and 95 % interval)")
    ref = pd.DataFrame({"channel": ["paper"], "diff": [paper_advantage]})
    plot = (so.Plot(advantage, x="channel", y="diff", ymin="lo", ymax="hi")
            .add(so.Range(color="tab:blue", linewidth=2)).add(so.Dot(color="tab:blue", pointsize=5))
            .add(so.Dot(marker="*", color="0.3", pointsize=12), data=ref, x="channel", y="diff", ymin=None, ymax=None))
    if per_seed is not None:
        seeds = per_seed.reset_index(drop=True)
        plot = plot.add(so.Dot(color="0.5", pointsize=3, alpha=0.7), so.Jitter(0.3), data=seeds, x="channel", y="diff",
                        ymin=None, ymax=None)
    plot.label(x="", y="gap(deconv) - gap(pixel shuffle) (bits)").on(ax2).plot()
    ax2.axhline(0, color="k", lw=0.8, ls=":")
    ax2.set_xticks(ax2.get_xticks(), [t.get_text().replace(" of ", " of\n") for t in ax2.get_xticklabels()])
    seeds_note = "; grey: single seeds" if per_seed is not None else ""
    ax2.set_title("Advantage of pixel shuffle, gap = |H - H(source)|\n"
                  f"(above 0: pixel shuffle closer to the source{seeds_note})")
    return fig


def plot_convergence(curves: "pd.DataFrame", final: "pd.DataFrame", *, ylabel: str = "training L1 (batch)",
                     final_label: str = "test L1 after training") -> plt.Figure:
    """Convergence over training seeds, drawn with seaborn: per label the mean curve and its 95 % t-interval band
    over seeds (left; no band with one seed), and each seed's final value with the mean and interval (right).

    curves: columns label, seed, step, value; final: columns label, seed, value.
    """
    import seaborn as sns

    from afvae.claims import t_bounds

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.3), width_ratios=[2.2, 1], layout="constrained")
    labels = list(dict.fromkeys(curves["label"]))
    n = int(curves.groupby("label")["seed"].nunique().min())
    band = f"mean, 95 % t-interval over {n} seeds" if n > 1 else "1 seed: no interval"
    sns.lineplot(data=curves, x="step", y="value", hue="label", style="label", hue_order=labels, style_order=labels,
                 errorbar=t_bounds if n > 1 else None, ax=ax, lw=1.2)
    ax.set(xlabel="training step", ylabel=f"{ylabel}, log scale", yscale="log",
           title=f"Reconstruction loss while training ({band})")
    ax.legend(fontsize=7, frameon=False, title=None)
    sns.stripplot(data=final, x="label", y="value", hue="label", order=labels, hue_order=labels, ax=ax2, size=4,
                  alpha=0.6, legend=False)
    sns.pointplot(data=final, x="label", y="value", hue="label", order=labels, hue_order=labels, ax=ax2,
                  errorbar=t_bounds if n > 1 else None, markers="_", markersize=14, linestyle="none", legend=False)
    ax2.set(xlabel="", ylabel=f"{final_label} (lower is better)", title="Final value (dots: seeds)")
    ax2.set_xticks(range(len(labels)), [label.replace(" ", "\n", 1) for label in labels], fontsize=7)
    return fig


def plot_seeded_metrics(rows: "pd.DataFrame", better: dict[str, str], highlight: str | None = None,
                        table: str = "Table 3") -> plt.Figure:
    """One panel per metric, drawn with seaborn: each method's seeds (dots) and their mean with its 95 %
    t-interval over seeds (no interval with one seed), ``highlight`` in red; the better direction in the title.

    rows: one row per (``variant``, seed) with ``kind`` "method" or "reference" and the metric columns; better:
    metric -> "min" | "max". The x-axis spans the methods, not zero; a reference row (source unchanged, oracle)
    is a vertical line where it falls in that span, else a label at the side it lies.
    """
    import seaborn as sns

    from afvae.claims import t_bounds

    methods, refs = rows[rows["kind"] == "method"], rows[rows["kind"] == "reference"]
    order = list(dict.fromkeys(methods["variant"]))
    palette = {v: "tab:red" if v == highlight else "0.35" for v in order}
    many = methods.groupby("variant")["variant"].size().min() > 1
    fig, axes = plt.subplots(1, len(better), figsize=(2.35 * len(better), 0.32 * len(order) + 1.6), squeeze=False,
                             layout="constrained", sharey=True)
    for ax, (m, direction) in zip(axes[0], better.items()):
        sns.stripplot(data=methods, x=m, y="variant", hue="variant", order=order, palette=palette, ax=ax, size=3,
                      alpha=0.45, legend=False, jitter=0.15)
        sns.pointplot(data=methods, x=m, y="variant", hue="variant", order=order, palette=palette, ax=ax,
                      errorbar=t_bounds if many else None, markers="D", markersize=4, linestyle="none", legend=False)
        lo, hi = ax.get_xlim()
        off = []
        for (name, value), ls in zip(refs.groupby("variant", sort=False)[m].mean().items(), (":", "--")):
            if lo <= value <= hi:
                ax.axvline(value, color="k", lw=0.9, ls=ls, label=name)
            else:
                off.append(f"{name}: {value:.3g} ({'right' if value > hi else 'left'}, off scale)")
        arrow = "← lower is better" if direction == "min" else "higher is better →"
        ax.set(ylabel="", xlim=(lo, hi))
        ax.set_xlabel("\n".join(off), fontsize=6)
        ax.set_title(f"{m}\n{arrow}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(mticker.MaxNLocator(4))
    lines = {label: h for ax in axes[0] for h, label in zip(*ax.get_legend_handles_labels())}
    seeds = "dots: seeds; diamond and bar: mean and 95 % t-interval over seeds" if many else "1 seed: no interval"
    fig.suptitle(f"{table} ({seeds}; lines: references)", fontsize=9)
    if lines:
        fig.legend(lines.values(), lines.keys(), loc="outside lower center", ncol=len(lines), fontsize=7,
                   frameon=False)
    return fig


def plot_interpolation(grid: torch.Tensor, c_columns: torch.Tensor, x_pair: torch.Tensor, t_columns: torch.Tensor,
                       t_rows: torch.Tensor, cell: float = 1.0) -> plt.Figure:
    """Fig. 9: header row of boundary maps (structure t), then one row per appearance t; the inputs on the left.

    grid (R, S, 3, H, W), c_columns (S, C_b, H, W), x_pair (2, 3, H, W) faces A and B, t_columns (S,), t_rows (R,).
    """
    R, S = grid.shape[:2]
    fig = plt.figure(figsize=(cell * (S + 2.2), cell * (R + 1.5)))
    gs = fig.add_gridspec(R + 1, S + 2, width_ratios=[1, 0.6] + [1] * S, wspace=0.05, hspace=0.1)
    corner = fig.add_subplot(gs[0, :2])
    _show(corner, None)
    corner.text(0.5, 0.5, "structure t →\n(boundary maps)\n\nappearance t ↓\n(z)", ha="center", va="center",
                fontsize=7, transform=corner.transAxes)
    for j in range(S):
        _show(fig.add_subplot(gs[0, j + 2]), c_columns[j], title=f"t = {float(t_columns[j]):.2f}")
    for i in range(R):
        face = {0: (x_pair[0], "input A"), R - 1: (x_pair[1], "input B")}.get(i, (None, None))
        ax = fig.add_subplot(gs[i + 1, 0])
        _show(ax, face[0])
        ax.set_ylabel(face[1] or "", fontsize=7)
        label = fig.add_subplot(gs[i + 1, 1])
        _show(label, None)
        label.text(0.9, 0.5, f"t = {float(t_rows[i]):.2f}", ha="right", va="center", fontsize=7,
                   transform=label.transAxes)
        for j in range(S):
            _show(fig.add_subplot(gs[i + 1, j + 2]), grid[i, j])
    fig.suptitle("Appearance z interpolated A → B down the rows, landmarks (boundary maps) A → B across the "
                 "columns", fontsize=9)
    return fig


def plot_edit_sweep(x: torch.Tensor, output: torch.Tensor, truth: torch.Tensor, col_labels: list[str],
                    source_notes: list[str], title: str, cell: float = 0.95) -> plt.Figure:
    """Figs. 1 / 5: per source two rows, the model's edits and the ground-truth renders, one column per target.

    x (N, 3, H, W) sources; output, truth (N, S, 3, H, W); col_labels S names; source_notes N captions.
    """
    N, S = output.shape[:2]
    fig = plt.figure(figsize=(cell * (S + 1.5), cell * 2 * N + 0.6))
    gs = fig.add_gridspec(2 * N, S + 2, width_ratios=[1, 0.5] + [1] * S, wspace=0.05, hspace=0.08)
    for n in range(N):
        _show(fig.add_subplot(gs[2 * n, 0]), x[n], title="source" if n == 0 else None)
        note = fig.add_subplot(gs[2 * n + 1, 0])
        _show(note, None)
        note.text(0.5, 0.5, source_notes[n], ha="center", va="center", fontsize=6, transform=note.transAxes)
        for r, name in enumerate(("AF-VAE", "truth")):
            label = fig.add_subplot(gs[2 * n + r, 1])
            _show(label, None)
            label.text(0.95, 0.5, name, ha="right", va="center", fontsize=7, transform=label.transAxes)
        for s in range(S):
            _show(fig.add_subplot(gs[2 * n, s + 2]), output[n, s], title=col_labels[s] if n == 0 else None)
            _show(fig.add_subplot(gs[2 * n + 1, s + 2]), truth[n, s])
    fig.suptitle(title, fontsize=9)
    return fig


OUT_OF_RANGE = "tab:red"  # marks what a model never saw in training (Fig. 6)


def _mark(ax: plt.Axes, colour: str) -> None:
    """A coloured frame around an image cell."""
    for side in ax.spines.values():
        side.set_visible(True)
        side.set_color(colour)
        side.set_linewidth(1.5)


def plot_rotation_sweep(x: torch.Tensor, truth: torch.Tensor, outputs: dict[str, torch.Tensor], yaws: list[float],
                        trained_yaw: float, summary: "pd.DataFrame", title: str, cell: float = 0.8) -> plt.Figure:
    """Fig. 6: per source the true renders (top) and each model's outputs (rows below), one column per target yaw,
    cells beyond +-``trained_yaw`` framed in red; under them L1 to the truth against |yaw| with 95 % intervals.

    x (N, 3, H, W) sources; truth and each output (N, S, 3, H, W); summary: ``analysis.rotation_summary``.
    """
    N, S = truth.shape[:2]
    rows = 1 + len(outputs)
    fig = plt.figure(figsize=(cell * (S + 1.6), cell * rows * N + 2.6))
    top, bottom = fig.add_gridspec(2, 1, height_ratios=[cell * rows * N, 2.0], hspace=0.12, top=0.95, bottom=0.05)
    gs = top.subgridspec(rows * N, S + 2, width_ratios=[1, 0.6] + [1] * S, wspace=0.05, hspace=0.06)
    for n in range(N):
        _show(fig.add_subplot(gs[rows * n, 0]), x[n], title="source" if n == 0 else None)
        for r, (name, images) in enumerate([("truth", truth), *outputs.items()]):
            label = fig.add_subplot(gs[rows * n + r, 1])
            _show(label, None)
            label.text(0.95, 0.5, name, ha="right", va="center", fontsize=6, transform=label.transAxes)
            for s, yaw in enumerate(yaws):
                ax = fig.add_subplot(gs[rows * n + r, s + 2])
                _show(ax, images[n, s], title=f"{yaw:+.0f}°" if n == 0 and r == 0 else None)
                if abs(yaw) > trained_yaw:
                    _mark(ax, OUT_OF_RANGE)
    _rotation_errors(fig.add_subplot(bottom), summary, trained_yaw)
    fig.suptitle(title, fontsize=9)
    return fig


def _rotation_errors(ax: plt.Axes, summary: "pd.DataFrame", trained_yaw: float, metric: str = "l1") -> None:
    """Mean ``metric`` against |yaw| per method with its 95 % interval; the range beyond training shaded."""
    for method, m in summary.groupby("method", sort=False):
        colour = METHOD_COLOURS.get(method)
        ax.plot(m["abs_yaw"], m[metric], "o-", ms=3, color=colour, label=method)
        ax.fill_between(m["abs_yaw"], m[f"{metric}_lo"], m[f"{metric}_hi"], color=colour, alpha=0.25, lw=0)
    end = float(summary["abs_yaw"].max()) + 3
    ax.axvspan(trained_yaw, end, color=OUT_OF_RANGE, alpha=0.08, lw=0,
               label=f"beyond training (|yaw| > {trained_yaw:.0f}°)")
    ax.set_xlim(-3, end)
    ax.set_xlabel("|target yaw| (degrees)", fontsize=8)
    ax.set_ylabel("L1 to truth", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False, loc="upper left")


def _error_lines(ax: plt.Axes, summary: "pd.DataFrame", metric: str, x_key: str = "target") -> None:
    """Mean ± std of ``metric`` against ``x_key``, one line per method."""
    for method, m in summary.groupby("method", sort=False):
        colour, x = METHOD_COLOURS.get(method), m[x_key].astype(float)
        ax.plot(x, m[metric], "o-", ms=3, color=colour, label=method)
        ax.fill_between(x, m[metric] - m[f"{metric}_std"], m[metric] + m[f"{metric}_std"], color=colour,
                        alpha=0.2, lw=0)


def _error_bars(ax: plt.Axes, summary: "pd.DataFrame", metric: str) -> None:
    """Grouped bars (mean, std as error bar) of ``metric`` per target, one bar per method."""
    methods = list(dict.fromkeys(summary["method"]))
    targets = list(dict.fromkeys(summary["target"]))
    width = 0.8 / len(methods)
    for k, method in enumerate(methods):
        m = summary[summary["method"] == method].set_index("target").loc[targets]
        ax.bar(np.arange(len(targets)) + (k - (len(methods) - 1) / 2) * width, m[metric], width,
               yerr=m[f"{metric}_std"], color=METHOD_COLOURS.get(method), label=method, capsize=2)
    ax.set_xticks(range(len(targets)))
    ax.set_xticklabels(targets, rotation=30, ha="right", fontsize=7)


def plot_manipulation_errors(expression: "pd.DataFrame", yaw: "pd.DataFrame",
                             metrics: tuple[str, ...] = ("l1", "ssim")) -> plt.Figure:
    """Ground-truth errors of the edits: per target expression (bars) and against target yaw (lines).

    expression, yaw: ``analysis.summarise_errors`` output with columns target, method, METRIC, METRIC_std.
    """
    names = {"l1": "L1 to truth (lower is better)", "ssim": "SSIM to truth (higher is better)",
             "psnr": "PSNR to truth, dB (higher is better)"}
    fig, axes = plt.subplots(len(metrics), 2, figsize=(9, 2.8 * len(metrics)), squeeze=False, layout="constrained")
    for r, metric in enumerate(metrics):
        _error_bars(axes[r, 0], expression, metric)
        _error_lines(axes[r, 1], yaw, metric)
        axes[r, 0].set_ylabel(names.get(metric, metric))
        axes[r, 1].set_ylabel(names.get(metric, metric))
    axes[0, 0].set_title("Expression edits (source pose kept), mean ± std")
    axes[0, 1].set_title("Rotation sweep (source expression kept), mean ± std")
    axes[-1, 1].set_xlabel("target yaw (degrees)")
    fig.legend(*axes[0, 1].get_legend_handles_labels(), fontsize=8, frameon=False, loc="outside lower center",
               ncol=2)
    return fig


def plot_identity_settings(results: list[dict[str, torch.Tensor]], scores: "pd.DataFrame",
                           settings: tuple[str, ...], cell: float = 0.95) -> plt.Figure:
    """Fig. 10: per source row, for each setting the donor face, the boundary given, the output and the truth,
    with identity similarities (cosine of appearance predictions to the source) under them.

    results: ``analysis.identity_settings`` outputs; scores: ``analysis.identity_scores`` rows for them. The
    first setting is the source's own (edited) boundary: it has no donor face.
    """
    N, K = len(results), len(settings)
    height = cell * 1.3 * N + 1.0
    fig = plt.figure(figsize=(cell * (1 + 4.3 * K), height))
    gs = fig.add_gridspec(N, 1 + 5 * K, width_ratios=[1] + [0.3, 1, 1, 1, 1] * K, wspace=0.06, hspace=0.35,
                          top=1 - 0.85 / height, bottom=0.25 / height)
    for n, r in enumerate(results):
        row = scores[scores["source"] == int(r["donor"][0])].set_index("setting")
        _show(fig.add_subplot(gs[n, 0]), r["x"], title="source" if n == 0 else None)
        for k, name in enumerate(settings):
            s, a = row.loc[name], [fig.add_subplot(gs[n, 2 + 5 * k + j]) for j in range(4)]
            _show(a[0], None if k == 0 else r["donor_x"][k], title="donor face" if n == 0 else None,
                  below=None if k == 0 else f"sim {s['sim_donor']:.2f}")
            if k == 0:
                a[0].text(0.5, 0.5, "none:\nown landmarks,\nexpression\nedited", ha="center", va="center", fontsize=6,
                          transform=a[0].transAxes)
            _show(a[1], r["c_target"][k], title="boundary given" if n == 0 else None,
                  below=f"contour d {s['contour']:.2f}")
            _show(a[2], r["output"][k], title="AF-VAE" if n == 0 else None, below=f"sim {s['sim_output']:.2f}")
            _show(a[3], r["truth"][k], title="true render" if n == 0 else None, below=f"sim {s['sim_truth']:.2f}")
            if n == 0:  # the setting's name centred over its four columns
                left, right = a[0].get_position(), a[3].get_position()
                fig.text((left.x0 + right.x1) / 2, left.y1 + 0.35 / fig.get_figheight(), name, ha="center",
                         va="bottom", fontsize=8, weight="bold")
    fig.suptitle("Identity under three kinds of target boundary — sim: cosine similarity of the held-out scorer's "
                 "appearance predictions to the source; contour d: jaw-contour distance to the source", fontsize=8,
                 y=0.995)
    return fig


def plot_identity_claims(scores: "pd.DataFrame", settings: Sequence[str]) -> plt.Figure:
    """Fig. 10's similarities per setting, drawn with seaborn: AF-VAE's output, the true render (the ceiling) and
    the donor's own image (another person), each the mean over training seeds of the per-seed mean over sources,
    with its 95 % t-interval over seeds (none with one seed).

    scores: ``analysis.identity_scores`` rows with a ``train_seed`` column.
    """
    import seaborn as sns

    from afvae.claims import t_bounds

    names = {"sim_output": "AF-VAE output", "sim_truth": "true render (ceiling)", "sim_donor": "donor (another person)"}
    means = (scores.groupby(["train_seed", "setting"], sort=False)[list(names)].mean().reset_index()
             .melt(id_vars=["train_seed", "setting"], var_name="image", value_name="similarity")
             .replace({"image": names}).dropna())
    many = scores["train_seed"].nunique() > 1
    fig, ax = plt.subplots(figsize=(6.2, 3.2), layout="constrained")
    palette = {"AF-VAE output": "tab:red", "true render (ceiling)": "0.2", "donor (another person)": "0.6"}
    sns.stripplot(data=means, x="setting", y="similarity", hue="image", order=list(settings), ax=ax, dodge=True,
                  palette=palette, size=3, alpha=0.5, legend=False, jitter=0.05)
    sns.pointplot(data=means, x="setting", y="similarity", hue="image", order=list(settings), ax=ax,
                  errorbar=t_bounds if many else None, dodge=0.53, markers=["D", "o", "s"], linestyle="none",
                  palette=palette, markersize=5)
    ax.set(xlabel="", ylabel="identity similarity to the source\n(cosine, held-out scorer) — higher: same person")
    ax.legend(fontsize=7, frameon=False, loc="best")
    ax.tick_params(labelsize=8)
    n = scores["train_seed"].nunique()
    ax.set_title(f"Fig. 10 over {n} training seeds (dots): mean and 95 % t-interval over seeds" if many
                 else "Fig. 10, 1 training seed: no interval", fontsize=9)
    return fig


def plot_failures(rows: dict[str, dict], title: str, cell: float = 0.95) -> plt.Figure:
    """Fig. 11: one row per failure category, a few failures each: source, target boundary, truth, output.

    rows: ``afvae.failures.examples`` (category -> x, c_target, truth, output (k, ...), error, caption k each, note).
    """
    R, K = len(rows), max(len(r["error"]) for r in rows.values())
    height = cell * 1.45 * R + 0.7
    fig = plt.figure(figsize=(cell * (1.6 + 4.3 * K), height))
    gs = fig.add_gridspec(R, 1 + 5 * K, width_ratios=[1.6] + [0.3, 1, 1, 1, 1] * K, wspace=0.06, hspace=0.55,
                          top=1 - 0.6 / height, bottom=0.2 / height)
    for n, (name, r) in enumerate(rows.items()):
        label = fig.add_subplot(gs[n, 0])
        _show(label, None)
        label.text(0.95, 0.5, f"{name}\n{r['note']}", ha="right", va="center", fontsize=8, weight="bold",
                   transform=label.transAxes)
        for k in range(len(r["error"])):
            a = [fig.add_subplot(gs[n, 2 + 5 * k + j]) for j in range(4)]
            _show(a[0], r["x"][k], title="source" if n == 0 else None, below=r["caption"][k])
            _show(a[1], r["c_target"][k], title="target boundary" if n == 0 else None)
            _show(a[2], r["truth"][k], title="truth" if n == 0 else None)
            _show(a[3], r["output"][k], title=("AF-VAE, " if n == 0 else "") + f"L1 {r['error'][k]:.3f}")
    fig.suptitle(title, fontsize=9)
    return fig


def plot_metric_bars(table: "pd.DataFrame", highlight: str | None = None) -> plt.Figure:
    """One small bar chart per metric column of ``table`` (index = variant), ``highlight`` row in colour."""
    cols = list(table.columns)
    fig, axes = plt.subplots(1, len(cols), figsize=(2.3 * len(cols), 2.8), squeeze=False)
    for ax, col in zip(axes[0], cols):
        colours = ["tab:red" if name == highlight else "tab:gray" for name in table.index]
        ax.barh(list(table.index), table[col].astype(float), color=colours)
        ax.set_title(col, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.invert_yaxis()
        if ax is not axes[0, 0]:
            ax.set_yticklabels([])
    fig.tight_layout()
    return fig


def plot_study_table(table: "pd.DataFrame") -> plt.Figure:
    """Table 2 as two panels sharing the method rows: fool rate with its interval (``real`` = real images
    judged real, in grey) and TrueSkill mu ± sigma (points; the prior mu = 25 dotted).
    ``table``: rows of ``afvae.study.stats.table2``."""
    fig, (ax_f, ax_t) = plt.subplots(1, 2, sharey=True, figsize=(8.4, 0.45 * len(table) + 1.4))
    names, y = list(table["method"]), np.arange(len(table))
    rate = table["fool_rate"].astype(float)
    err = np.vstack([rate - table["fool_low"].astype(float), table["fool_high"].astype(float) - rate])
    ax_f.barh(y, rate, xerr=np.nan_to_num(err), capsize=3,
              color=["tab:gray" if m == "real" else "tab:blue" for m in names])
    ax_f.axvline(0.5, color="k", lw=0.8, ls=":")
    ax_f.set(xlim=(0, 1), yticks=y, yticklabels=names, xlabel="judged real: fool rate (grey: real images), 95 % CI")
    ax_t.errorbar(table["ts_mu"].astype(float), y, xerr=table["ts_sigma"].astype(float), fmt="o",
                  color="tab:orange", capsize=3)
    ax_t.axvline(25, color="k", lw=0.8, ls=":")
    ax_t.set_xlabel("TrueSkill mu ± sigma (pairwise preferences)")
    ax_f.invert_yaxis()
    for ax in (ax_f, ax_t):
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------
# Notebook 11: the C-VAE tutorial


def plot_kl_checks(checks: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                   grads: dict[str, dict[str, np.ndarray]]) -> plt.Figure:
    """Left: Monte Carlo KL (± 2 SE) against the closed form, one marker set per check. Right: gradient
    estimates (± 2 SE) of E[f(z)] per parameter, one bar group per estimator, against the analytic value.

    checks: name -> (closed (N,), mc (N,), se (N,)); grads: estimator name -> {"value": (P,), "se": (P,),
    "labels": (P,) str}, with an estimator "analytic" (se 0).
    """
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), width_ratios=[1, 1.4], layout="constrained")
    lo, hi = np.inf, -np.inf
    for i, (name, (closed, mc, se)) in enumerate(checks.items()):
        ax.errorbar(closed, mc, yerr=2 * se, fmt="os^"[i % 3], ms=4, color=f"C{i}", capsize=2, lw=0.8, label=name)
        lo, hi = min(lo, closed.min(), mc.min()), max(hi, closed.max(), mc.max())
    ax.plot([lo, hi], [lo, hi], color="gray", lw=0.8, ls="--", label="y = x")
    ax.set(xlabel="closed form (Eq. 5), nats", ylabel="Monte Carlo, nats (bars: ± 2 SE)",
           title="KL(q || p): closed form vs Monte Carlo")
    ax.legend(fontsize=7, frameon=False)
    names = list(grads)
    labels = list(grads[names[0]]["labels"])
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        g = grads[name]
        ax2.bar(np.arange(len(labels)) + (k - (len(names) - 1) / 2) * width, g["value"], width,
                yerr=2 * g["se"], capsize=2, color="k" if name == "analytic" else f"C{k}", label=name)
    ax2.axhline(0, color="gray", lw=0.6)
    ax2.set_xticks(range(len(labels)))
    ax2.set_xticklabels(labels, fontsize=7)
    ax2.set(ylabel="gradient (bars: ± 2 SE)", title="d/dθ E[sin z], same number of draws per estimator")
    ax2.legend(fontsize=7, frameon=False)
    return fig


def plot_prior_samples(c: torch.Tensor, rows: dict[str, torch.Tensor], notes: dict[str, str],
                       mean_face: torch.Tensor, cell: float = 0.62) -> plt.Figure:
    """Decoded samples per model (rows) for B target boundary maps (column groups of n samples each).

    c (B, C_b, H, W) target maps; rows: label -> (B, n, 3, H, W); notes: label -> text under the label;
    mean_face (3, H, W), drawn in the top-left corner.
    """
    B, n = next(iter(rows.values())).shape[:2]
    head = 0.75  # inches above the grid: the title, and the two-line label of the mean face, for any row count
    height = cell * (len(rows) + 1.15) + head
    fig = plt.figure(figsize=(cell * (B * (n + 0.3) + 3.2), height))
    ratios = [3.0] + ([0.3] + [1] * n) * B
    gs = fig.add_gridspec(len(rows) + 1, len(ratios), width_ratios=ratios, wspace=0.04, hspace=0.08,
                          top=1 - head / height, bottom=0.02)
    _show(fig.add_subplot(gs[0, 0].subgridspec(1, 3)[0, 2]), mean_face, title="dataset\nmean face")
    for b in range(B):
        _show(fig.add_subplot(gs[0, 2 + b * (n + 1)]), c[b], title=f"target map {b + 1}")
    for i, (label, x) in enumerate(rows.items()):
        text = fig.add_subplot(gs[i + 1, 0])
        _show(text, None)
        text.text(1.0, 0.5, f"{label}\n{notes.get(label, '')}", ha="right", va="center", fontsize=6.5,
                  transform=text.transAxes)
        for b in range(B):
            for j in range(n):
                _show(fig.add_subplot(gs[i + 1, 2 + b * (n + 1) + j]), x[b, j])
    fig.suptitle("Decoded samples: each row one model, each group of columns one target boundary map", fontsize=9,
                 y=1 - 0.1 / height, va="top")
    return fig


def plot_prior_path(path: dict[str, torch.Tensor], t: torch.Tensor, mu_k: torch.Tensor, cell: float = 1.7
                    ) -> plt.Figure:
    """Additive (top) vs GMM-sampled (bottom) prior samples, dims 0-1, as w = (1 - t, t) moves from focal point
    0 to 1; right: the KL of one fixed q to each (``afvae.tutorial.prior_path`` output)."""
    T = len(t)
    fig = plt.figure(figsize=(cell * (T + 2.2), cell * 2.1), layout="constrained")
    gs = fig.add_gridspec(2, T + 2, width_ratios=[1] * T + [0.15, 2.2])
    m = mu_k.detach().numpy()
    lim = np.abs(torch.cat([path["additive"][..., :2], path["gmm"][..., :2]]).numpy()).max() * 1.05
    for r, (key, name) in enumerate((("additive", "additive (Eq. 4)"), ("gmm", "GMM-sampled"))):
        for j in range(T):
            ax = fig.add_subplot(gs[r, j])
            z = path[key][j].numpy()
            ax.scatter(z[:, 0], z[:, 1], s=2, alpha=0.35, color="C0" if r == 0 else "C1", linewidths=0)
            ax.scatter(m[:, 0], m[:, 1], marker="x", color="k", s=25, zorder=3)
            if r == 0:
                mean = path["additive_mean"][j].numpy()
                ax.scatter(mean[0], mean[1], marker="*", color="C3", s=40, zorder=4)
                ax.set_title(f"t = {float(t[j]):.2f}", fontsize=8)
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xticks=[], yticks=[], aspect="equal")
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    ax = fig.add_subplot(gs[:, T + 1])
    tt = t.numpy()
    ax.plot(tt, path["kl_additive"].numpy(), "o-", color="C0", ms=3, label="additive: closed form")
    kl_g = path["kl_gmm"].numpy()
    for j in range(T):
        ax.scatter(np.full(kl_g.shape[1], tt[j]), kl_g[j], s=14, color="C1", alpha=0.5, linewidths=0,
                   label="GMM-sampled: one draw" if j == 0 else None)
    ax.plot(tt, kl_g.mean(1), "s--", color="C1", ms=3, lw=1, label="GMM-sampled: mean over draws")
    ax.set(xlabel="t  (w = (1 - t, t))", ylabel="KL(q || p), nats", title="KL of one fixed q to the prior")
    ax.legend(fontsize=7, frameon=False)
    fig.suptitle("Focal weights move from focal point 0 (t = 0) to 1 (t = 1): × focal means, ★ additive mean",
                 fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------------------------
# 10 latent explorer: the static fallback

def plot_explorer_strip(rows: list[dict], faces: torch.Tensor, cell: float = 0.85) -> plt.Figure:
    """The explorer's frames, one block per control: output x_hat row, with the boundary maps above it when
    the control moves the structure. rows: ``explore.run_sweep`` outputs (name, labels, c, x_hat, ms,
    structure); faces (2, 3, H, W): the source and the second face, shown at the top left."""
    heights = [2 if r["structure"] else 1 for r in rows]
    n_cols = max(r["x_hat"].shape[0] for r in rows)
    height = cell * (sum(heights) + 0.4 * len(rows)) + 0.7
    fig = plt.figure(figsize=(cell * (n_cols + 3.0), height))
    outer = fig.add_gridspec(len(rows), 1, height_ratios=[h + 0.4 for h in heights], hspace=0.05,
                             top=1 - 0.6 / height, bottom=0.02, left=0.01, right=0.99)
    widths = [1, 2.0] + [1] * n_cols
    for i, (r, h) in enumerate(zip(rows, heights)):
        gs = outer[i].subgridspec(h, n_cols + 2, width_ratios=widths, wspace=0.05, hspace=0.04)
        for j in range(r["x_hat"].shape[0]):
            if h == 2:
                _show(fig.add_subplot(gs[0, j + 2]), r["c"][j], title=r["labels"][j])
            _show(fig.add_subplot(gs[h - 1, j + 2]), r["x_hat"][j], title=None if h == 2 else r["labels"][j])
        note = fig.add_subplot(gs[:, 1])
        _show(note, None)
        note.text(0.95, 0.5, f"{r['name']}\nmedian {np.median(r['ms']):.0f} ms / update".replace(" (", "\n("),
                  ha="right", va="center", fontsize=7, transform=note.transAxes)
        if i < len(faces):
            _show(fig.add_subplot(gs[h - 1, 0]), faces[i], title=("source", "second face")[i])
    fig.suptitle("Latent explorer, static fallback: each block moves one control (boundary map c above the "
                 "output x_hat when the structure moves)", fontsize=9)
    return fig


SAMPLE_STRUCTURES = (  # (yaw, pitch, roll, expression) columns of plot_synthetic_samples
    (0.0, 0.0, 0.0, "neutral"), (0.0, 0.0, 0.0, "smile"), (0.0, 0.0, 0.0, "surprise"),
    (0.0, 0.0, 0.0, "anger"), (0.0, 0.0, 0.0, "disgust"), (0.0, 0.0, 0.0, "eyes_closed"),
    (-45.0, 0.0, 0.0, "neutral"), (30.0, 10.0, 0.0, "smile"), (60.0, 0.0, 0.0, "neutral"),
    (0.0, -15.0, 12.0, "neutral"),
)


def plot_synthetic_samples(n_identities: int = 6, size: int = 64, seed: int = 0,
                           structures: Sequence[tuple[float, float, float, str]] = SAMPLE_STRUCTURES) -> plt.Figure:
    """A matplotlib Figure: identities (rows) x structures (columns), each image with its boundary map."""
    app, _ = syn.sample_identities(range(n_identities), 1, seed)
    yaw, pitch, roll, expr = zip(*structures)
    st = syn.Structure.create(yaw, pitch, roll, list(expr))
    cols = len(structures)
    fig, axes = plt.subplots(n_identities, 2 * cols, figsize=(1.1 * 2 * cols, 1.15 * n_identities),
                             gridspec_kw={"wspace": 0.04, "hspace": 0.04})
    for row in range(n_identities):
        x, lm = syn.render(app.index(row), st, size)
        c = boundary_map(lm, size)
        for col in range(cols):
            ax_img, ax_c = axes[row, 2 * col], axes[row, 2 * col + 1]
            ax_img.imshow(to_numpy_image(x[col]))
            ax_c.imshow(boundary_rgb(c[col]))
            if row == 0:
                y_, p_, r_, e_ = structures[col]
                ax_img.set_title(f"{e_}\nyaw {y_:+.0f} pitch {p_:+.0f} roll {r_:+.0f}", fontsize=6, loc="left")
    for ax in axes.flat:
        ax.set_axis_off()
    return fig


SUBJECT_POSES = {  # (column label, Structure.create arguments) columns of plot_synthetic_subjects
    "hands": (("open", {}), ("spread, rolled", {"spread": 1.0, "roll": -20.0}),
              ("pointing", {"flexion": (0.8, 0.0, 1.0, 1.0, 1.0), "spread": 0.3}),
              ("fist", {"flexion": 1.0, "spread": 0.0, "wrist": -20.0}),
              ("half bent, turned", {"flexion": 0.45, "wrist": 60.0, "roll": 15.0})),
    "cats": (("front", {}), ("turned, ears up", {"yaw": 35.0, "ears": 1.0}),
             ("ears back, mouth open", {"ears": -1.0, "mouth": 1.0, "pitch": 10.0}),
             ("eyes closed, tilted", {"eyes": 0.0, "roll": 15.0}),
             ("looking up", {"pitch": 20.0, "yaw": -25.0, "eyes": 0.6})),
}


def _keypoint_overlay(ax: plt.Axes, kp: torch.Tensor, schema: Schema) -> None:
    """Keypoints (P, 2) pixels as dots, joined along each curve of ``schema`` in its own colour."""
    colours = plt.get_cmap("tab10")(np.arange(schema.n_curves) % 10)
    for (_, idx), colour in zip(schema.curves, colours):
        ax.plot(kp[list(idx), 0], kp[list(idx), 1], "-", color=colour, lw=0.7, alpha=0.8)
    ax.scatter(kp[:, 0], kp[:, 1], s=3, c="w", edgecolors="k", linewidths=0.3, zorder=3)


def plot_synthetic_subjects(n_identities: int = 3, size: int = 64, seed: int = 0,
                            subjects: Sequence[str] = ("hands", "cats")) -> plt.Figure:
    """A matplotlib Figure of the procedural subjects beside the faces: per subject, identities (rows) x the
    structures of ``SUBJECT_POSES`` (columns), each image with its exact keypoints and its schema's curves."""
    n_cols = max(len(SUBJECT_POSES[name]) for name in subjects)
    n_rows = n_identities * len(subjects)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 1.7 * n_rows), squeeze=False,
                             gridspec_kw={"wspace": 0.04, "hspace": 0.18})
    for k, name in enumerate(subjects):
        subject = syn.SUBJECTS[name]
        labels, kwargs = zip(*SUBJECT_POSES[name])
        st = subject.structure.cat([subject.structure.create(**kw) for kw in kwargs])  # type: ignore[attr-defined]
        app, _ = subject.identities(range(n_identities), 1, seed)
        for i in range(n_identities):
            x, kp = subject.render(app.index(i), st, size)
            row = axes[k * n_identities + i]
            for j, ax in enumerate(row[:len(labels)]):
                ax.imshow(to_numpy_image(x[j]))
                _keypoint_overlay(ax, kp[j], subject.schema)
                if i == 0:
                    ax.set_title(labels[j], fontsize=6)
            row[0].text(-0.08, 0.5, f"{name} {i}", transform=row[0].transAxes, fontsize=7, rotation=90,
                        ha="right", va="center")
    for ax in axes.flat:
        ax.set_axis_off()
    return fig


SWAP_COLUMNS = ("source", "target boundary", "true render", "AF-VAE output")


def plot_swaps(panels: dict[str, dict[str, torch.Tensor]], notes: dict[str, list[str]], title: str,
               n_show: int = 4, cell: float = 1.0) -> plt.Figure:
    """Fig. 7: per dataset a block of ``n_show`` pairs (rows) x ``SWAP_COLUMNS``, blocks side by side.

    panels: dataset name -> ``x``, ``c_target``, ``x_truth``, ``x_out`` ((N, C, H, W) each, N >= n_show; images in
    [-1, 1], C boundary channels for ``c_target``); notes: dataset name -> a caption under each pair's output.
    """
    k = len(SWAP_COLUMNS)
    fig = plt.figure(figsize=(cell * (k + 0.3) * len(panels), cell * 1.35 * n_show + 0.6))
    fig.suptitle(title, fontsize=9, y=1.05)  # above the blocks' own titles
    for sub, (name, p) in zip(fig.subfigures(1, len(panels), squeeze=False)[0], panels.items()):
        axes = sub.subplots(n_show, k, squeeze=False, gridspec_kw={"wspace": 0.05, "hspace": 0.45})
        for r in range(n_show):
            for j, key in enumerate(("x", "c_target", "x_truth", "x_out")):
                _show(axes[r, j], p[key][r], title=SWAP_COLUMNS[j] if r == 0 else None,
                      below=notes[name][r] if j == k - 1 else None)
        sub.suptitle(name, fontsize=10)
    return fig


# The quality benchmark's panels: (metric, its "source unchanged" / truth reference, bar, better direction).
QUALITY_PANELS = (
    ("yaw_ssim", "yaw_ssim_copy", 0.85, "higher"),
    ("expr_changed_l1", "expr_changed_l1_copy", None, "lower"),
    ("identity_sim", "identity_sim_truth", 0.85, "higher"),
    ("landmark_nme", "landmark_nme_floor", 0.095, "lower"),
)


# the curves' colours: the tab10 cycle without red (C3), which marks the bars
CURVE_COLOURS = [f"C{i}" for i in range(10) if i not in (3, 7)]  # not red (the bars) nor grey (the references)


def plot_time_to_quality(curves: dict[str, list[dict]],
                         x_keys: Sequence[str] = ("train_tflop", "train_minutes")) -> plt.Figure:
    """Each recipe's quality curve (``afvae.bench quality``) against training TFLOP and CPU minutes: one row per
    x axis, one panel per metric. Dotted: the metric's reference (source unchanged, or the truth); dashed: the
    bar (for ``expr_changed_l1``: half the unchanged source's error).
    """
    use_style()
    labels = {"train_tflop": "training TFLOP", "train_minutes": "training CPU minutes", "images_seen": "images seen"}
    fig, axes = plt.subplots(len(x_keys), len(QUALITY_PANELS), figsize=(3.3 * len(QUALITY_PANELS), 2.9 * len(x_keys)),
                             squeeze=False)
    for row, x_key in zip(axes, x_keys):
        for ax, (metric, ref, bar, better) in zip(row, QUALITY_PANELS):
            for i, (name, curve) in enumerate(curves.items()):  # past eight curves the colours repeat, dashed
                ax.plot([r[x_key] for r in curve], [r[metric] for r in curve], "o-" if i < len(CURVE_COLOURS) else "o--",
                        color=CURVE_COLOURS[i % len(CURVE_COLOURS)], label=name, ms=3)
            last = next(iter(curves.values()))[-1]
            ax.axhline(last[ref], color="0.4", ls=":", lw=1, label="source unchanged" if "copy" in ref else "truth")
            ax.axhline(bar if bar is not None else 0.5 * last[ref], color="C3", ls="--", lw=1, label="bar")
            ax.set_title(f"{metric} ({better} is better)")
            ax.set_xlabel(labels.get(x_key, x_key))
            if x_key == "images_seen":  # log scale, ticks in thousands
                _images_axis(ax)
    handles, names = axes[0][0].get_legend_handles_labels()
    ncol = min(len(names), 2)  # the curves' names are long: two columns keep the legend within the panels' width
    fig.legend(handles, names, fontsize=8, loc="lower center", ncol=ncol, frameon=False)
    legend_inches = 0.25 + 0.2 * -(-len(names) // ncol)  # the legend's rows, below the panels' axis labels
    fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 1))
    return fig


def plot_ceiling(models: dict[str, dict[str, float]], curve: list[dict]) -> plt.Figure:
    """Where the edits stop (``afvae.bench ceiling``). Left: one model's edit SSIM and reconstruction SSIM along
    its run (``curve``: rows with ``images_seen``, ``yaw_ssim``, ``rec_ssim``). Then one panel per quality metric:
    each model's edits (dots) and its oracle, the truth through the model (crosses), models in ``models``' order,
    and where a model has ``seen`` scores, its edits of training identities (squares); dotted: the metric's
    reference (source unchanged, or the truth); dashed: the bar.
    """
    use_style()
    fig, axes = plt.subplots(1, 1 + len(QUALITY_PANELS), figsize=(3.3 * (1 + len(QUALITY_PANELS)), 3.2))
    ax = axes[0]
    for key, label, colour in (("rec_ssim", "reconstruction", "C1"), ("yaw_ssim", "yaw edit", "C0")):
        ax.plot([r["images_seen"] for r in curve], [r[key] for r in curve], "o-", ms=3, color=colour, label=label)
    ax.axhline(QUALITY_PANELS[0][2], color="C3", ls="--", lw=1, label="bar")
    ax.set_title("SSIM along the run (full)")
    ax.set_ylim(0.4, 0.9)
    _images_axis(ax)
    ax.legend(fontsize=7, loc="lower right")
    names = list(models)
    for ax, (metric, ref, bar, better) in zip(axes[1:], QUALITY_PANELS):
        x = np.arange(len(names))
        ax.plot(x, [models[n][metric] for n in names], "o", color="C0", label="edit")
        ax.plot(x, [models[n][f"{metric}_oracle"] for n in names], "x", color="C2", ms=7, mew=2,
                label="oracle (truth through the model)")
        seen = [n for n in names if metric in models[n].get("seen", {})]
        if seen:
            ax.plot([names.index(n) for n in seen], [models[n]["seen"][metric] for n in seen], "s", mfc="none",
                    color="C4", ms=6, label="edit of a training identity")
        first = models[names[0]]
        ax.axhline(first[ref], color="0.4", ls=":", lw=1)
        ax.annotate("source unchanged" if "copy" in ref else "truth", (1, first[ref]), xycoords=("axes fraction", "data"),
                    xytext=(-2, 2), textcoords="offset points", ha="right", fontsize=7, color="0.3")
        ax.axhline(bar if bar is not None else 0.5 * first[ref], color="C3", ls="--", lw=1, label="bar")
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{metric} ({better} is better)")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(labels), frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def _thousands() -> mticker.Formatter:
    """Tick labels in thousands: 20000 -> "20k" (a new formatter per axis)."""
    return mticker.FuncFormatter(lambda v, _: f"{v / 1e3:g}k")


def _images_axis(ax: plt.Axes) -> None:
    """A log x axis of images seen, ticked in thousands."""
    ax.set_xscale("log")
    ax.set_xlabel("images seen")
    ax.xaxis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(_thousands())
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())


def plot_ablation_gaps(curves: dict[str, list[dict]], reference: str, halfwidth: dict[str, float], start: int = 0
                       ) -> plt.Figure:
    """Each variant's advantage over ``reference`` along training, one column per metric of ``QUALITY_PANELS``:
    variant − reference where higher is better, reference − variant where lower is, at the checkpoints from
    ``start`` images on that both curves scored (``images_seen``). Above 0: the variant is ahead. Top row: the
    whole run (log x); bottom row: its second half, zoomed, where the early transients are over. Grey band:
    ± ``halfwidth[metric]``, the reference's final 95 % interval, the size of a gap one model's evaluation can
    resolve.
    """
    use_style()
    ref = {r["images_seen"]: r for r in curves[reference] if r["images_seen"] >= start}
    half = max(ref) / 2
    fig, axes = plt.subplots(2, len(QUALITY_PANELS), figsize=(3.3 * len(QUALITY_PANELS), 5.4))
    for col, (metric, _, _, better) in enumerate(QUALITY_PANELS):
        sign = 1.0 if better == "higher" else -1.0
        for row, lo in enumerate((start, half)):
            ax = axes[row, col]
            ax.axhspan(-halfwidth[metric], halfwidth[metric], color="0.85", lw=0,
                       label=f"{reference}'s 95 % interval (final, ±)")
            ax.axhline(0.0, color="0.3", lw=1)
            for i, (name, curve) in enumerate((n, c) for n, c in curves.items() if n != reference):
                pts = [r for r in curve if r["images_seen"] in ref and r["images_seen"] >= lo]
                ax.plot([r["images_seen"] for r in pts], [sign * (r[metric] - ref[r["images_seen"]][metric]) for r in pts],
                        "o-", color=CURVE_COLOURS[i % len(CURVE_COLOURS)], label=name, ms=3)
            if row == 0:
                ax.set_title(f"{metric}: ahead of {reference} ↑", fontsize=10)
                _images_axis(ax)
            else:
                ax.set_xlabel("images seen (second half)")
                ax.xaxis.set_major_formatter(_thousands())
    for row, what in enumerate(("whole run", "second half")):
        axes[row, 0].set_ylabel(f"advantage over {reference}\n({what})")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="lower center", ncol=min(len(names), 4), frameon=False)
    rows = -(-len(names) // min(len(names), 4))
    fig.tight_layout(rect=(0, (0.25 + 0.2 * rows) / fig.get_figheight(), 1, 1))
    return fig


# ---------------------------------------------------------------------------------------------------------
# Notebook 14: the β sweep of the prior

BETA_PANELS = {"kl_share": "KL share of the loss, β·KL / loss",
               "diversity_ratio": "diversity: prior samples / posterior swaps"}


def plot_beta_sweep(pairs: "pd.DataFrame", training: "pd.DataFrame", references: "pd.DataFrame",
                    better: dict[str, str], thresholds: dict[str, float]) -> plt.Figure:
    """Metric vs β (log x) per variant: the training panels of ``BETA_PANELS`` (one value per run, the dotted
    line its threshold in ``thresholds``), then each metric of ``better`` with 95 % bootstrap intervals over the
    evaluation pairs (seaborn), the better direction in its title and the ``references`` as grey lines.

    pairs: per-pair scores (variant, beta, metrics); training: one row per run (variant, beta, BETA_PANELS keys);
    references: one row per reference and β (name, beta, metrics). A reference far outside the variants' range
    is written at the panel's edge instead of stretching the axis.
    """
    import seaborn as sns

    variants = list(dict.fromkeys(training["variant"]))
    shift = dict(zip(variants, np.geomspace(0.85, 1 / 0.85, len(variants))))  # side by side, not on top
    colours = dict(zip(variants, sns.color_palette("tab10", len(variants))))
    panels = list(BETA_PANELS) + list(better)
    ncols = 4
    fig, axes = plt.subplots(-(-(len(panels) + 1) // ncols), ncols, figsize=(3.1 * ncols, 5.6), layout="constrained")
    for ax, key in zip(axes.flat, panels):
        data = (training if key in BETA_PANELS else pairs).assign(x=lambda d: d["beta"] * d["variant"].map(shift))
        sns.lineplot(data=data, x="x", y=key, hue="variant", hue_order=variants, palette=colours, marker="o",
                     err_style="bars", errorbar=("ci", 95), n_boot=1000, seed=0, ax=ax, legend=False)
        if key in BETA_PANELS:
            ax.axhline(thresholds[key], color="k", lw=0.8, ls=":")
            ax.set_title(BETA_PANELS[key])
            if key == "kl_share":
                ax.yaxis.set_major_formatter(mticker.PercentFormatter(1.0))
        else:
            ax.set_title(f"{key} ({'lower' if better[key] == 'min' else 'higher'} is better "
                         f"{'↓' if better[key] == 'min' else '↑'})")
            _beta_references(ax, references, key)
        ax.set(xscale="log", xlabel="β (KL weight)", ylabel="")
        ax.set_xticks(sorted(training["beta"].unique()))
        ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    legend = axes.flat[len(panels)]
    legend.axis("off")
    handles = [plt.Line2D([], [], color=colours[v], marker="o", label=v) for v in variants]
    handles += [plt.Line2D([], [], color="0.4", ls=ls, label=name) for name, ls in _REF_STYLE.items()]
    legend.legend(handles=handles, loc="center", frameon=False, fontsize=8,
                  title="bars: 95 % CI over the pairs\ndotted in the first panels: thresholds")
    for ax in list(axes.flat)[len(panels) + 1:]:
        ax.axis("off")
    return fig


_REF_STYLE = {"source unchanged": ":", "oracle": "--"}


def _beta_references(ax: plt.Axes, references: "pd.DataFrame", key: str, stretch: float = 1.5) -> None:
    """Each reference of ``references`` (name, beta, key) as a grey line over β; one further out than
    ``stretch`` times the panel's span is written at the top or bottom edge instead."""
    lo, hi = ax.get_ylim()
    span, off = hi - lo, 0
    for name, ref in references.groupby("name", sort=False):
        ref = ref.sort_values("beta")
        v = ref[key].to_numpy(dtype=float)
        if lo - stretch * span <= v.min() and v.max() <= hi + stretch * span:
            ax.plot(ref["beta"], v, color="0.4", lw=1, ls=_REF_STYLE.get(name, "-"))
            lo, hi = min(lo, v.min() - 0.05 * span), max(hi, v.max() + 0.05 * span)
            ax.set_ylim(lo, hi)
        else:
            top = v.mean() > hi
            y = 0.98 - 0.07 * off if top else 0.02 + 0.07 * off
            ax.text(0.02, y, f"{name}: {v.mean():.3g} {'↑' if top else '↓'} (off the axis)",
                    transform=ax.transAxes, va="top" if top else "bottom", fontsize=6.5, color="0.3")
            off += 1


def plot_beta_claim(claims: "pd.DataFrame", shaded: Sequence[float] = (), shade_label: str = "prior active"
                    ) -> plt.Figure:
    """The paper's prior's paired advantage over each other prior vs β (log x), one panel per metric: the
    mean and its 95 % interval from ``claims`` (``afvae.beta_sweep.advantages``: beta, baseline, metric,
    advantage, lo, hi), above 0 = the paper's prior better; the βs in ``shaded`` shaded, ``shade_label`` saying why."""
    metrics, baselines = list(dict.fromkeys(claims["metric"])), list(dict.fromkeys(claims["baseline"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.7 * len(metrics), 2.9), layout="constrained", squeeze=False)
    shift = dict(zip(baselines, np.geomspace(0.88, 1 / 0.88, len(baselines))))
    for ax, metric in zip(axes[0], metrics):
        for i, base in enumerate(baselines):
            part = claims[(claims["metric"] == metric) & (claims["baseline"] == base)].sort_values("beta")
            x, m = part["beta"] * shift[base], part["advantage"]
            ax.errorbar(x, m, yerr=[m - part["lo"], part["hi"] - m], fmt="o-", ms=4, capsize=3, lw=1,
                        color=f"C{i + 1}", label=f"full vs {base}")
        for b in shaded:
            ax.axvspan(b / 1.6, b * 1.6, color="0.9", zorder=0)
        ax.axhline(0, color="k", lw=0.8)
        ax.set(xscale="log", xlabel="β (KL weight)", title=metric)
        ax.set_xticks(sorted(claims["beta"].unique()))
        ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    axes[0, 0].set_ylabel("advantage of the additive prior\n(> 0: paper's prior better)")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncol=len(baselines),
               frameon=False, fontsize=8, title="mean paired difference, 95 % bootstrap interval over the pairs"
               + (f"; shaded: {shade_label}" if len(shaded) else ""))
    return fig
