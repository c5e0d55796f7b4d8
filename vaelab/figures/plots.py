"""The figures of a trained VAE, one function each, taking arrays (or a ``decode`` callable) and
a path and returning the PNG's size.

Loss curves, reconstructions, image grids (samples from the prior and from the ex-post latent
density), training progress (a GIF of 16 fixed latent points decoded after every epoch),
nearest training images of samples, the latent space, the decoded manifold grid and an
interpolation. Numpy and matplotlib only: no TensorFlow, no trained model needed. Which of
them the plot stage draws, and from what: :mod:`vaelab.figures.table`. Layout:
:mod:`vaelab.figures.layout`; maths: :mod:`vaelab.figures.latent_maths`.

The VAE is Kingma & Welling (2014), "Auto-Encoding Variational Bayes"; the manifold figure
follows their Fig. 4 (a grid of decoded Gaussian quantiles of a 2-D latent space). t-SNE is
van der Maaten & Hinton (2008), "Visualizing Data using t-SNE".
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vaelab.core.prepared import check_image_array
from vaelab.figures.layout import (CHAR_PX, PAD_VALUE, Panel, curve_limits, display_scale, grid_shape, image_grid,
                                  new_figure, panel_figure, progress_frames, save_figure, tile_centres, truncate)
from vaelab.figures.latent_maths import manifold_latents

logger = logging.getLogger(__name__)


def class_name(class_names: Sequence[str], label: int) -> str:
    """The name of ``label``, or the number itself when the data names fewer classes."""
    return class_names[label] if 0 <= label < len(class_names) else str(label)


def plot_loss_curves(history: dict[str, np.ndarray], path: str | Path, title: str = "") -> tuple[int, int]:
    """Three panels (total loss, reconstruction, KL) per epoch, train and validation; 1350 x 420 px PNG."""
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(1350, 420)
    axes = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.15, top=0.8, wspace=0.28)
    fig.suptitle(f"{title}: training curves" if title else "training curves", fontsize=13)
    epochs = history["epoch"]
    for ax, (key, name) in zip(axes, (("loss", "total loss (negative ELBO)"),
                                      ("reconstruction", "reconstruction (negative log-likelihood)"),
                                      ("kl", "KL(q(z|x) || p(z))"))):
        shown = [("train", history[key])]
        validation = history.get(f"val_{key}")
        if validation is not None and np.isfinite(validation).any():
            shown.append(("validation", validation))
        for label, curve in shown:  # markers, so a one-epoch run still shows its single point
            ax.plot(epochs, curve, marker="o", markersize=3, label=label)
        limits = curve_limits([curve for _, curve in shown])
        if limits is not None:  # the first epoch dwarfs the rest: fit the rest, name what is cut off
            ax.set_ylim(*limits)
            off_scale = "".join(f"\n{label} {curve[0]:,.0f}" for label, curve in shown if curve[0] > limits[1])
            # Top middle: left of the legend, above curves that fall from the top left.
            ax.annotate(f"epoch {epochs[0]:g} off scale:{off_scale}", xy=(0.45, 0.97), xycoords="axes fraction",
                        ha="center", va="top", fontsize=8, color="0.3")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per image")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_reconstructions(originals: np.ndarray, reconstructions: np.ndarray, path: str | Path,
                         title: str = "", cols: int = 8) -> tuple[int, int]:
    """Rows of test images, each above its row of reconstructions (blocks of ``cols``)."""
    originals = check_image_array(originals, "originals")
    reconstructions = check_image_array(reconstructions, "reconstructions")
    if originals.shape != reconstructions.shape:
        raise ValueError(f"originals {originals.shape} and reconstructions {reconstructions.shape} differ")
    n, h, w, c = originals.shape
    cols = min(cols, n)
    blocks = math.ceil(n / cols)
    tiles = np.full((2 * blocks * cols, h, w, c), PAD_VALUE, dtype=np.uint8)
    for b in range(blocks):
        part = slice(b * cols, min(n, (b + 1) * cols))
        count = part.stop - part.start
        tiles[2 * b * cols:2 * b * cols + count] = originals[part]
        tiles[(2 * b + 1) * cols:(2 * b + 1) * cols + count] = reconstructions[part]
    grid = image_grid(tiles, 2 * blocks, cols)
    labels = ["test image", "reconstruction"] * blocks
    panel = Panel(grid, yticks=(tile_centres(2 * blocks, h, 2), labels))
    return panel_figure([panel], 1, display_scale(h),
                         f"{title}: test images and their reconstructions" if title else "reconstructions", path)


def plot_image_grid(images: np.ndarray, path: str | Path, suptitle: str, cols: int = 8) -> tuple[int, int]:
    """A grid of images (``cols`` wide) under a title, e.g. samples from the prior."""
    images = check_image_array(images)
    cols = min(cols, len(images))
    grid = image_grid(images, math.ceil(len(images) / cols), cols)
    return panel_figure([Panel(grid)], 1, display_scale(images.shape[1]), suptitle, path)


def save_progress(progress: np.ndarray, gif_path: str | Path, png_path: str | Path,
                  frame_ms: int = 400, last_frame_ms: int = 2000) -> tuple[int, int]:
    """The progress animation (one frame per epoch, :func:`progress_frames`) as a looping GIF,
    and its last frame as a PNG. Returns the frame size (width, height)."""
    import imageio.v3 as iio

    frames = progress_frames(progress)
    # Pillow takes a per-frame list only for an animation; a one-epoch run is a single frame.
    durations = [frame_ms] * (len(frames) - 1) + [last_frame_ms] if len(frames) > 1 else last_frame_ms
    iio.imwrite(gif_path, np.stack(frames), extension=".gif", duration=durations, loop=0)
    iio.imwrite(png_path, frames[-1], extension=".png")
    return frames[-1].shape[1], frames[-1].shape[0]


def plot_nearest_neighbours(generated: np.ndarray, neighbours: np.ndarray, neighbour_names: Sequence[str],
                            distances: np.ndarray, path: str | Path, title: str = "") -> tuple[int, int]:
    """Each generated image (left) beside its nearest training image (right), captioned with the
    neighbour's class and the L2 distance; pairs in a :func:`grid_shape` grid."""
    generated, neighbours = check_image_array(generated, "generated"), check_image_array(neighbours, "neighbours")
    h = generated.shape[1]
    scale = display_scale(h)
    pair_px = (2 * generated.shape[2] + 6) * scale
    max_chars = max(4, int(pair_px / CHAR_PX) - 1)
    panels = [
        Panel(image_grid(np.stack([g, nn]), 1, 2), title=f"{truncate(name, max_chars)}\nL2 = {d:.0f}")
        for g, nn, name, d in zip(generated, neighbours, neighbour_names, distances)
    ]
    _, cols = grid_shape(len(panels))
    heading = "generated (left) vs nearest training image (right, L2 in pixels)"
    return panel_figure(panels, cols, scale, f"{title}: {heading}" if title else heading, path)


def _class_colours(count: int) -> np.ndarray:
    from matplotlib import colormaps

    if count <= 10:
        return colormaps["tab10"](np.arange(count))
    if count <= 20:
        return colormaps["tab20"](np.arange(count))
    return colormaps["turbo"](np.linspace(0.0, 1.0, count))


def plot_latent_scatter(points: dict[str, tuple[np.ndarray, np.ndarray]], class_names: Sequence[str],
                        path: str | Path, title: str, axis_labels: tuple[str, str]) -> tuple[int, int]:
    """One square scatter panel per split (``{split: (xy (N, 2), labels (N,))}``), coloured by
    label, sharing axes, with a legend of class names at the right (25 names per column, names cut at 18 characters).

    Size: (70 + 540 * panels + 80 * (panels - 1) + 30 + 180 * legend columns + 10) x 680 px.
    """
    from matplotlib.lines import Line2D

    labels_present = np.unique(np.concatenate([labels for _, labels in points.values()]))
    num_classes = max(len(class_names), int(labels_present.max()) + 1)
    colours = _class_colours(num_classes)
    legend_cols = math.ceil(len(labels_present) / 25)
    side, left, between, height = 540, 70, 80, 680
    width = left + len(points) * side + (len(points) - 1) * between + 30 + 180 * legend_cols + 10
    fig = new_figure(width, height)
    fig.text(0.5, 1 - 22 / height, title, ha="center", va="center", fontsize=13)
    all_xy = np.concatenate([xy for xy, _ in points.values()])
    low, high = all_xy.min(axis=0), all_xy.max(axis=0)
    margin = 0.05 * np.maximum(high - low, 1e-6)
    for i, (split, (xy, labels)) in enumerate(points.items()):
        x0 = left + i * (side + between)
        ax = fig.add_axes((x0 / width, 60 / height, side / width, side / height))
        size = 3 if max(len(part) for part, _ in points.values()) > 2000 else 10  # one size for all panels
        ax.scatter(xy[:, 0], xy[:, 1], c=colours[labels], s=size, alpha=0.7, linewidths=0)
        ax.set_xlim(low[0] - margin[0], high[0] + margin[0])
        ax.set_ylim(low[1] - margin[1], high[1] + margin[1])
        ax.set_title(f"{split} ({len(xy):,} points)", fontsize=10)
        ax.set_xlabel(axis_labels[0])
        ax.set_ylabel(axis_labels[1])
        ax.grid(alpha=0.2)
    handles = [Line2D([], [], linestyle="", marker="o", markersize=6, color=colours[label],
                      label=truncate(class_name(class_names, int(label)), 18)) for label in labels_present]
    legend_x = left + len(points) * side + (len(points) - 1) * between + 30
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(legend_x / width, (60 + side) / height),
               ncols=legend_cols, fontsize=8, title="class", frameon=False, borderaxespad=0,
               columnspacing=0.8, handletextpad=0.2)
    return save_figure(fig, path)


def manifold_size(image_height: int, latent_dim: int) -> int:
    """Grid side n for :func:`plot_manifold`: about 600 px (2-D) or 400 px (3-D, per slice) of images.

    28 px images: 20 (2-D) / 14 (3-D); 64 px: 9 / 6; 128 px: 8 / 4.
    """
    if latent_dim == 2:
        return int(np.clip(600 // image_height, 8, 20))
    return int(np.clip(400 // image_height, 4, 15))


def plot_manifold(decode: Callable[[np.ndarray], np.ndarray], latent_dim: int, path: str | Path,
                  title: str = "", n: int | None = None, image_height: int | None = None) -> tuple[int, int] | None:
    """Decoded images over a grid of Gaussian quantiles of z[0] (x) and z[1] (y): one panel for
    latent_dim 2, three slices along z[2] for latent_dim 3. Other sizes: nothing is written,
    the reason is logged, and None is returned.

    ``decode``: (M, latent_dim) float32 -> (M, H, W, C) uint8. Drawn at 1 image pixel per
    screen pixel with no gaps, so the grid reads as one map; ticks give the z values.
    """
    if latent_dim not in (2, 3):
        logger.info("manifold skipped: latent_dim is %d; a manifold grid is drawn only for latent_dim 2 "
                    "(one grid) or 3 (slices along z[2]) since two axes of a larger space say little", latent_dim)
        return None
    if n is None:
        probe = decode(np.zeros((1, latent_dim), dtype=np.float32))
        n = manifold_size(image_height or probe.shape[1], latent_dim)
    grid = manifold_latents(n, latent_dim)
    slices, _, _, dim = grid.z.shape
    images = check_image_array(decode(grid.z.reshape(-1, dim)), "decoded images")
    h, w = images.shape[1:3]
    images = images.reshape(slices, n * n, *images.shape[1:])
    # Label about one tick per 40 px so the numbers never overlap.
    every = max(1, math.ceil(40 / h))
    shown = np.arange(0, n, every)
    xticks = (tile_centres(n, w, 0)[shown], [f"{grid.values[i]:.2f}" for i in shown])
    yticks = (tile_centres(n, h, 0)[shown], [f"{grid.values[n - 1 - i]:.2f}" for i in shown])
    panels = [
        Panel(image_grid(images[s], n, n, pad=0), xticks=xticks, yticks=yticks, xlabel="z[0]", ylabel="z[1]",
              title=f"z[2] = {grid.slices[s]:.2f}" if grid.slices else "")
        for s in range(slices)
    ]
    heading = "decoded latent grid (Gaussian quantiles 5%..95%)"
    return panel_figure(panels, len(panels), 1, f"{title}: {heading}" if title else heading, path)


def plot_interpolation(image_a: np.ndarray, image_b: np.ndarray, decoded: np.ndarray, names: tuple[str, str],
                       path: str | Path, title: str = "") -> tuple[int, int]:
    """One strip: test image A, the images decoded along the line from mu(A) to mu(B), test image B.

    ``image_a``, ``image_b``: (H, W, C) uint8; ``decoded``: (steps, H, W, C) uint8 for
    t = linspace(0, 1, steps).
    """
    decoded = check_image_array(decoded, "decoded")
    steps, h, w, _ = decoded.shape
    strip = image_grid(np.concatenate([image_a[None], decoded, image_b[None]]), 1, steps + 2)
    ts = np.linspace(0.0, 1.0, steps)
    labels = ["A"] + [f"{t:.2f}".rstrip("0").rstrip(".") if t not in (0, 1) else str(int(t)) for t in ts] + ["B"]
    panel = Panel(strip, xticks=(tile_centres(steps + 2, w, 2), labels),
                  xlabel="t, decoding z = (1 - t) mu(A) + t mu(B)   (A, B: the test images)")
    heading = f"interpolation from A ({names[0]}) to B ({names[1]})"
    return panel_figure([panel], 1, display_scale(h), f"{title}: {heading}" if title else heading, path)
