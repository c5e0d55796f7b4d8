"""Figures of a trained VAE: loss curves, reconstructions, samples, training progress,
novelty check, latent space, manifold and interpolation (issue 5).

Everything here works on numpy arrays and plain callables, so it runs and tests without
TensorFlow or a trained model:

* pure pieces (:func:`image_grid`, :func:`progress_frames`, :func:`nearest_neighbours`,
  :func:`latent_projection`, :func:`manifold_latents`, :func:`interpolation_latents`, ...);
* one function per figure, taking arrays (or a ``decode`` callable) and a path;
* :func:`make_figures`, which draws them all for one dataset from a
  :class:`ModelFunctions` bundle (the stage fills it from :mod:`vaelab.models`).

Images are uint8 NHWC with C = 1 (drawn with a grey colour map) or C = 3 (drawn as is).
Image figures are laid out in pixels: each image pixel becomes an integer ``scale`` x
``scale`` block (nearest-neighbour), chosen by :func:`display_scale` so 28 px and 128 px
images both come out at a readable size, and the PNG's size is known in advance (each figure
function returns it). Matplotlib is used through :class:`matplotlib.figure.Figure` only, never
``pyplot``: no global figure state, no GUI backend, so it runs headless.

The VAE is Kingma & Welling (2014), "Auto-Encoding Variational Bayes"; the manifold figure
follows their Fig. 4 (a grid of decoded Gaussian quantiles of a 2-D latent space). t-SNE is
van der Maaten & Hinton (2008), "Visualizing Data using t-SNE".
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Callable, Sequence

import numpy as np

from vaelab.errors import VaelabError
from vaelab.training import HISTORY_COLUMNS  # the columns of plots/<dataset>/history.csv

logger = logging.getLogger(__name__)

DPI = 100
# Grey between tiles: visible on black MNIST backgrounds and on white photos alike.
PAD_VALUE = 128
# Every figure file make_figures may write, in the order it writes them.
FIGURE_FILES = (
    "loss_curves.png", "reconstructions.png", "samples.png", "samples_gmm.png", "progress.gif", "progress_last.png",
    "nearest_neighbours.png", "latent_space.png", "latent_tsne.png", "manifold.png", "interpolation.png",
)

# Pixel layout of the image figures (at DPI 100, so 1 pt = 100/72 px).
_OUTER = 12          # margin around the figure
_GAP = 14            # between panels
_SUPTITLE_PX = 34    # band for the figure title
_TITLE_LINE_PX = 17  # per line of a panel title
_TICK_FONT = 8       # pt
_CHAR_PX = 6.5       # rough width of one character at 8-9 pt, for margins and truncation


# ---------------------------------------------------------------------------------------------
# Pure pieces
# ---------------------------------------------------------------------------------------------

def _check_images(images: np.ndarray, name: str = "images") -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must be uint8 (N, H, W, 1|3), got {images.dtype} {images.shape}")
    return images


def display_scale(image_height: int, target_px: int = 80) -> int:
    """Integer upscaling factor so one image is drawn about ``target_px`` pixels tall.

    28 and 32 px images are drawn 3x, 64 px 2x, 128 px and larger 1x (never shrunk).
    """
    return max(1, math.ceil(target_px / image_height))


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) of the most square grid holding ``n`` tiles, cols >= rows (16 -> 4 x 4)."""
    if n < 1:
        raise ValueError(f"need at least one tile, got {n}")
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def image_grid(images: np.ndarray, rows: int, cols: int, pad: int = 2, pad_value: int = PAD_VALUE) -> np.ndarray:
    """Tile ``images`` (N, H, W, C) uint8 row by row into one uint8 image.

    The result has shape (rows * (H + pad) + pad, cols * (W + pad) + pad, C): ``pad`` pixels
    of ``pad_value`` around and between tiles. Cells beyond N stay ``pad_value``.
    """
    images = _check_images(images)
    n, h, w, c = images.shape
    if n > rows * cols:
        raise ValueError(f"{n} images do not fit a {rows} x {cols} grid")
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), pad_value, dtype=np.uint8)
    for i, image in enumerate(images):
        r, k = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + k * (w + pad)
        grid[y:y + h, x:x + w] = image
    return grid


def tile_centres(count: int, size: int, pad: int) -> np.ndarray:
    """Pixel coordinates of the centres of ``count`` tiles of ``size`` px in an :func:`image_grid` with ``pad``."""
    return pad + np.arange(count) * (size + pad) + (size - 1) / 2


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of an (H, W, C) image by an integer factor."""
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1) if scale > 1 else image


def progress_frames(progress: np.ndarray, scale: int | None = None, pad: int = 2,
                    font_size: int = 16) -> list[np.ndarray]:
    """One RGB uint8 frame per epoch from ``progress`` (epochs, P, H, W, C) uint8.

    Each frame is the P fixed points' images as a :func:`grid_shape` grid, upscaled by
    ``scale`` (default: so the grid is at least 256 px wide), under a white banner reading
    ``epoch e / E``. All frames have the same shape (Hf, Wf, 3).
    """
    from PIL import Image, ImageDraw, ImageFont

    progress = np.asarray(progress)
    if progress.dtype != np.uint8 or progress.ndim != 5 or progress.shape[-1] not in (1, 3) or len(progress) == 0:
        raise ValueError(f"progress must be uint8 (epochs >= 1, P, H, W, 1|3), got {progress.dtype} {progress.shape}")
    epochs, points = progress.shape[:2]
    rows, cols = grid_shape(points)
    grid_width = cols * (progress.shape[3] + pad) + pad
    if scale is None:
        scale = max(1, math.ceil(256 / grid_width))
    font = ImageFont.load_default(size=font_size)
    banner = font_size + 12
    frames = []
    for epoch, images in enumerate(progress, start=1):
        grid = upscale(image_grid(images, rows, cols, pad), scale)
        if grid.shape[-1] == 1:
            grid = np.repeat(grid, 3, axis=-1)
        frame = Image.new("RGB", (grid.shape[1], grid.shape[0] + banner), "white")
        frame.paste(Image.fromarray(grid), (0, banner))
        ImageDraw.Draw(frame).text((grid.shape[1] // 2, banner // 2), f"epoch {epoch} / {epochs}",
                                   fill="black", font=font, anchor="mm")
        frames.append(np.asarray(frame))
    return frames


def nearest_neighbours(queries: np.ndarray, train: np.ndarray, batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For each query image, the index of and L2 distance to its nearest image in ``train``.

    ``queries`` (Q, ...) and ``train`` (N, ...) uint8 images of one shape; pixel space, 0..255.
    Returns ``(indices int64 (Q,), distances float64 (Q,))``; ties go to the lowest index.

    Squared distances are ``||a||^2 - 2 a.b + ||b||^2``, computed ``batch_size`` training
    images at a time so memory stays at one block. The blocks are float64: every term is an
    integer below 2^53 for uint8 pixels (255^2 * D fits for any realistic D), so the result
    equals the brute-force distance exactly, unlike float32, where ``a.b`` rounds at ~1e7.
    """
    queries, train = np.asarray(queries), np.asarray(train)
    if queries.shape[1:] != train.shape[1:]:
        raise ValueError(f"queries {queries.shape[1:]} and train {train.shape[1:]} images differ in shape")
    if len(train) == 0 or len(queries) == 0:
        raise ValueError("need at least one query and one training image")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    q = queries.reshape(len(queries), -1).astype(np.float64)
    q_norms = np.einsum("ij,ij->i", q, q)
    best = np.full(len(q), np.inf)
    best_index = np.zeros(len(q), dtype=np.int64)
    for start in range(0, len(train), batch_size):
        block = train[start:start + batch_size].reshape(-1, q.shape[1]).astype(np.float64)
        squared = q_norms[:, None] - 2.0 * (q @ block.T) + np.einsum("ij,ij->i", block, block)[None, :]
        index = np.argmin(squared, axis=1)
        value = squared[np.arange(len(q)), index]
        better = value < best  # strict: an equal distance in a later block keeps the earlier index
        best[better] = value[better]
        best_index[better] = start + index[better]
    return best_index, np.sqrt(np.maximum(best, 0.0))


PROJECTIONS = ("identity", "pca", "tsne")


def latent_projection(z: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """Project latent codes ``z`` (N, D) to (N, 2) float64 for a scatter plot.

    ``identity``: the codes themselves (D <= 2; D = 1 gets a zero second column).
    ``pca``: the first two principal components (D >= 2).
    ``tsne``: t-SNE (van der Maaten & Hinton 2008), seeded, perplexity capped for small N.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or len(z) == 0:
        raise ValueError(f"z must be (N >= 1, D), got {z.shape}")
    if method == "identity":
        if z.shape[1] > 2:
            raise ValueError(f"identity projection needs latent_dim <= 2, got {z.shape[1]}")
        return np.hstack([z, np.zeros((len(z), 2 - z.shape[1]))])
    if method == "pca":
        from sklearn.decomposition import PCA

        if z.shape[1] < 2:
            raise ValueError("PCA to 2-D needs latent_dim >= 2")
        return PCA(n_components=2, svd_solver="full").fit_transform(z)
    if method == "tsne":
        from sklearn.manifold import TSNE

        if len(z) < 3:
            raise ValueError(f"t-SNE needs at least 3 points, got {len(z)}")
        perplexity = min(30.0, (len(z) - 1) / 3)  # sklearn requires perplexity < N
        return TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(z)
    raise ValueError(f"unknown projection {method!r}; use one of {PROJECTIONS}")


@dataclass(frozen=True)
class ManifoldGrid:
    """Latent points of a manifold figure.

    ``z``: (S, n, n, D) float32; ``z[s, r, c]`` is drawn in row r, column c of slice s, with
    ``z[..., 0] = values[c]`` and ``z[..., 1] = values[n - 1 - r]`` (up is larger, as on a plot
    axis). ``slices``: the z[2] value of each slice (empty for D = 2, where S = 1).
    """

    z: np.ndarray
    values: np.ndarray
    slices: tuple[float, ...] = ()


def gaussian_quantiles(n: int, low: float = 0.05, high: float = 0.95) -> np.ndarray:
    """``norm.ppf(linspace(low, high, n))``: n points evenly spaced in probability under N(0, 1)."""
    inv_cdf = NormalDist().inv_cdf
    return np.array([inv_cdf(p) for p in np.linspace(low, high, n)])


def manifold_latents(n: int, latent_dim: int, num_slices: int = 3) -> ManifoldGrid:
    """The n x n grid of Gaussian quantiles over z[0], z[1] (Kingma & Welling 2014, Fig. 4).

    latent_dim 2: one grid. latent_dim 3: ``num_slices`` grids at z[2] = the quantiles
    ``linspace(0.1, 0.9, num_slices)`` (0 for one slice). Other sizes: ValueError (a grid
    over two axes of a larger space says little).
    """
    if latent_dim not in (2, 3):
        raise ValueError(f"a manifold grid needs latent_dim 2 or 3, got {latent_dim}")
    if n < 2:
        raise ValueError(f"a manifold grid needs n >= 2, got {n}")
    values = gaussian_quantiles(n)
    x, y = np.meshgrid(values, values[::-1])  # row 0 at the top holds the largest z[1]
    slices: tuple[float, ...] = ()
    if latent_dim == 2:
        z = np.stack([x, y], axis=-1)[None]
    else:
        slices = tuple(float(v) for v in (gaussian_quantiles(num_slices, 0.1, 0.9) if num_slices > 1 else [0.0]))
        z = np.stack([np.stack([x, y, np.full_like(x, s)], axis=-1) for s in slices])
    return ManifoldGrid(z=z.astype(np.float32), values=values, slices=slices)


def interpolation_latents(z_a: np.ndarray, z_b: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` points on the straight line from ``z_a`` to ``z_b`` (D,), both ends included: (steps, D) float32."""
    z_a, z_b = np.asarray(z_a, dtype=np.float64), np.asarray(z_b, dtype=np.float64)
    if z_a.shape != z_b.shape or z_a.ndim != 1:
        raise ValueError(f"z_a and z_b must be vectors of one size, got {z_a.shape} and {z_b.shape}")
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    t = np.linspace(0.0, 1.0, steps)[:, None]
    return ((1.0 - t) * z_a + t * z_b).astype(np.float32)


def pick_pair_of_classes(labels: np.ndarray, seed: int) -> tuple[int, int] | None:
    """Indices of two images with different labels, chosen with ``seed``; None without two classes."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if len(np.unique(labels)) < 2:
        return None
    a = int(rng.integers(len(labels)))
    others = np.flatnonzero(labels != labels[a])
    return a, int(others[rng.integers(len(others))])


def class_name(class_names: Sequence[str], label: int) -> str:
    """The name of ``label``, or the number itself when the data names fewer classes."""
    return class_names[label] if 0 <= label < len(class_names) else str(label)


def _truncate(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[:max(1, max_chars - 1)] + "…"


# ---------------------------------------------------------------------------------------------
# Reading the train stage's outputs
# ---------------------------------------------------------------------------------------------

def read_history(path: str | Path) -> dict[str, np.ndarray]:
    """The train stage's per-epoch CSV as ``{column: float64 (epochs,)}`` (columns: HISTORY_COLUMNS).

    A missing file, a missing column, no rows or a non-number is a :class:`VaelabError`.
    """
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = reader.fieldnames or []
    except FileNotFoundError:
        raise VaelabError(f"training history {path} not found; run `dvc repro train@<dataset>` first") from None
    missing = [c for c in HISTORY_COLUMNS if c not in columns]
    if missing:
        raise VaelabError(f"training history {path} lacks columns {missing} (has {columns}); "
                          f"re-run the train stage to rewrite it")
    if not rows:
        raise VaelabError(f"training history {path} has no rows; re-run the train stage")
    try:
        return {c: np.array([float(row[c]) for row in rows]) for c in HISTORY_COLUMNS}
    except (TypeError, ValueError) as error:
        raise VaelabError(f"training history {path} holds a non-number ({error}); re-run the train stage") from None


def load_progress(model_dir: str | Path) -> np.ndarray:
    """``progress.npy`` of a model folder: uint8 (epochs, P, H, W, C); problems are VaelabErrors."""
    path = Path(model_dir) / "progress.npy"
    try:
        progress = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise VaelabError(f"{path} not found; run `dvc repro train@<dataset>` to write the model folder") from None
    except (OSError, ValueError) as error:
        raise VaelabError(f"{path} is damaged ({error}); re-run the train stage") from None
    if progress.dtype != np.uint8 or progress.ndim != 5 or progress.shape[-1] not in (1, 3) or len(progress) == 0:
        raise VaelabError(f"{path} must be uint8 (epochs, points, H, W, 1|3), got {progress.dtype} "
                          f"{progress.shape}; re-run the train stage")
    return progress


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

def _figure(width_px: int, height_px: int):
    # Figure (not pyplot): no global state, and savefig picks the Agg canvas for PNG itself.
    from matplotlib.figure import Figure

    return Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)


def _save(fig, path: str | Path) -> tuple[int, int]:
    fig.savefig(path, dpi=DPI, format="png")
    width, height = fig.get_size_inches() * DPI
    return int(round(width)), int(round(height))


def _show_image(ax, image: np.ndarray) -> None:
    """Draw an (H, W, C) uint8 image pixel-exact: grey map for C = 1, as is for RGB."""
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest", aspect="auto")
    else:
        ax.imshow(image, interpolation="nearest", aspect="auto")


@dataclass(frozen=True)
class Panel:
    """One image in a pixel-laid-out figure.

    ``image``: (h, w, C) uint8, drawn ``scale`` screen pixels per image pixel. Ticks are
    (positions in image pixels, labels); without ticks or labels the axes are hidden.
    """

    image: np.ndarray
    title: str = ""
    xticks: tuple[Sequence[float], Sequence[str]] | None = None
    yticks: tuple[Sequence[float], Sequence[str]] | None = None
    xlabel: str = ""
    ylabel: str = ""


def _panel_figure(panels: Sequence[Panel], cols: int, scale: int, suptitle: str, path: str | Path) -> tuple[int, int]:
    """Lay ``panels`` out in a grid of ``cols`` columns, in exact pixels; save a PNG; return (width, height).

    Each cell: a title band (17 px per title line), a left margin when a panel has y ticks or
    a y label, the image at ``scale``, and a bottom margin when it has x ticks or an x label.
    The figure adds a 34 px title band, 12 px outer margins and 14 px gaps, and is widened
    (content centred) when the title would not fit.
    """
    rows = math.ceil(len(panels) / cols)
    img_w = max(p.image.shape[1] for p in panels) * scale
    img_h = max(p.image.shape[0] for p in panels) * scale
    title_px = _TITLE_LINE_PX * max((p.title.count("\n") + 1 if p.title else 0) for p in panels)
    ytick_chars = max((max(len(s) for s in p.yticks[1]) if p.yticks and len(p.yticks[1]) else 0) for p in panels)
    has_ylabel = any(p.ylabel for p in panels)
    left = (int(ytick_chars * _CHAR_PX) + 10 if ytick_chars else 0) + (20 if has_ylabel else 0)
    bottom = (20 if any(p.xticks for p in panels) else 0) + (20 if any(p.xlabel for p in panels) else 0)
    cell_w, cell_h = left + img_w, title_px + img_h + bottom
    content_w = cols * cell_w + (cols - 1) * _GAP
    width = max(content_w + 2 * _OUTER, int(len(suptitle) * 8.5) + 2 * _OUTER)
    height = _OUTER + _SUPTITLE_PX + rows * cell_h + (rows - 1) * _GAP + _OUTER
    x_offset = (width - content_w) // 2

    fig = _figure(width, height)
    fig.text(0.5, 1 - (_OUTER + _SUPTITLE_PX / 2) / height, suptitle, ha="center", va="center", fontsize=12)
    for i, panel in enumerate(panels):
        r, c = divmod(i, cols)
        x = x_offset + c * (cell_w + _GAP) + left
        top = _OUTER + _SUPTITLE_PX + r * (cell_h + _GAP) + title_px
        h, w = panel.image.shape[0] * scale, panel.image.shape[1] * scale
        ax = fig.add_axes((x / width, 1 - (top + h) / height, w / width, h / height))
        _show_image(ax, panel.image)
        ax.set_frame_on(False)
        if panel.title:
            ax.set_title(panel.title, fontsize=9, pad=3)
        for ticks, setter, label_setter in ((panel.xticks, ax.set_xticks, ax.set_xticklabels),
                                            (panel.yticks, ax.set_yticks, ax.set_yticklabels)):
            if ticks is None:
                setter([])
            else:
                setter(list(ticks[0]))
                label_setter(list(ticks[1]), fontsize=_TICK_FONT)
        ax.tick_params(length=2, pad=2)
        if panel.xlabel:
            ax.set_xlabel(panel.xlabel, fontsize=9, labelpad=2)
        if panel.ylabel:
            ax.set_ylabel(panel.ylabel, fontsize=9, labelpad=2)
    return _save(fig, path)


def plot_loss_curves(history: dict[str, np.ndarray], path: str | Path, title: str = "") -> tuple[int, int]:
    """Three panels (total loss, reconstruction, KL) per epoch, train and validation; 1350 x 420 px PNG."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(1350, 420)
    axes = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.15, top=0.8, wspace=0.28)
    fig.suptitle(f"{title}: training curves" if title else "training curves", fontsize=13)
    epochs = history["epoch"]
    for ax, (key, name) in zip(axes, (("loss", "total loss (negative ELBO)"),
                                      ("reconstruction", "reconstruction (negative log-likelihood)"),
                                      ("kl", "KL(q(z|x) || p(z))"))):
        # Markers, so a one-epoch run still shows its single point.
        ax.plot(epochs, history[key], marker="o", markersize=3, label="train")
        validation = history.get(f"val_{key}")
        if validation is not None and np.isfinite(validation).any():
            ax.plot(epochs, validation, marker="o", markersize=3, label="validation")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per image")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_reconstructions(originals: np.ndarray, reconstructions: np.ndarray, path: str | Path,
                         title: str = "", cols: int = 8) -> tuple[int, int]:
    """Rows of test images, each above its row of reconstructions (blocks of ``cols``)."""
    originals = _check_images(originals, "originals")
    reconstructions = _check_images(reconstructions, "reconstructions")
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
    return _panel_figure([panel], 1, display_scale(h),
                         f"{title}: test images and their reconstructions" if title else "reconstructions", path)


def plot_image_grid(images: np.ndarray, path: str | Path, suptitle: str, cols: int = 8) -> tuple[int, int]:
    """A grid of images (``cols`` wide) under a title, e.g. samples from the prior."""
    images = _check_images(images)
    cols = min(cols, len(images))
    grid = image_grid(images, math.ceil(len(images) / cols), cols)
    return _panel_figure([Panel(grid)], 1, display_scale(images.shape[1]), suptitle, path)


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
    generated, neighbours = _check_images(generated, "generated"), _check_images(neighbours, "neighbours")
    h = generated.shape[1]
    scale = display_scale(h)
    pair_px = (2 * generated.shape[2] + 6) * scale
    max_chars = max(4, int(pair_px / _CHAR_PX) - 1)
    panels = [
        Panel(image_grid(np.stack([g, nn]), 1, 2), title=f"{_truncate(name, max_chars)}\nL2 = {d:.0f}")
        for g, nn, name, d in zip(generated, neighbours, neighbour_names, distances)
    ]
    _, cols = grid_shape(len(panels))
    heading = "generated (left) vs nearest training image (right, L2 in pixels)"
    return _panel_figure(panels, cols, scale, f"{title}: {heading}" if title else heading, path)


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
    fig = _figure(width, height)
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
                      label=_truncate(class_name(class_names, int(label)), 18)) for label in labels_present]
    legend_x = left + len(points) * side + (len(points) - 1) * between + 30
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(legend_x / width, (60 + side) / height),
               ncols=legend_cols, fontsize=8, title="class", frameon=False, borderaxespad=0,
               columnspacing=0.8, handletextpad=0.2)
    return _save(fig, path)


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
    images = _check_images(decode(grid.z.reshape(-1, dim)), "decoded images")
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
    return _panel_figure(panels, len(panels), 1, f"{title}: {heading}" if title else heading, path)


def plot_interpolation(image_a: np.ndarray, image_b: np.ndarray, decoded: np.ndarray, names: tuple[str, str],
                       path: str | Path, title: str = "") -> tuple[int, int]:
    """One strip: test image A, the images decoded along the line from mu(A) to mu(B), test image B.

    ``image_a``, ``image_b``: (H, W, C) uint8; ``decoded``: (steps, H, W, C) uint8 for
    t = linspace(0, 1, steps).
    """
    decoded = _check_images(decoded, "decoded")
    steps, h, w, _ = decoded.shape
    strip = image_grid(np.concatenate([image_a[None], decoded, image_b[None]]), 1, steps + 2)
    ts = np.linspace(0.0, 1.0, steps)
    labels = ["A"] + [f"{t:.2f}".rstrip("0").rstrip(".") if t not in (0, 1) else str(int(t)) for t in ts] + ["B"]
    panel = Panel(strip, xticks=(tile_centres(steps + 2, w, 2), labels),
                  xlabel="t, decoding z = (1 - t) mu(A) + t mu(B)   (A, B: the test images)")
    heading = f"interpolation from A ({names[0]}) to B ({names[1]})"
    return _panel_figure([panel], 1, display_scale(h), f"{title}: {heading}" if title else heading, path)


# ---------------------------------------------------------------------------------------------
# All figures of one dataset
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelFunctions:
    """What the figures need from a trained VAE, as plain callables (tests pass numpy stand-ins).

    ``encode``: (N, H, W, C) uint8 -> (N, latent_dim) float32 encoder means;
    ``decode``: (N, latent_dim) float32 -> (N, H, W, C) uint8 decoder means;
    ``sample_prior``: n -> (n, latent_dim) float32 draws from N(0, I), seeded by the caller;
    ``sample_density``: the same from the ex-post latent density (:mod:`vaelab.density`), if any.
    Reconstructions are ``decode(encode(x))``.
    """

    latent_dim: int
    encode: Callable[[np.ndarray], np.ndarray]
    decode: Callable[[np.ndarray], np.ndarray]
    sample_prior: Callable[[int], np.ndarray]
    sample_density: Callable[[int], np.ndarray] | None = None
    density_label: str = "ex-post density"


@dataclass(frozen=True)
class FigureSettings:
    """Knobs of :func:`make_figures` (the stage takes ``tsne`` and ``num_latent_points`` from params)."""

    seed: int = 0
    num_latent_points: int = 10000
    tsne: bool = False
    num_reconstructions: int = 16
    num_samples: int = 64
    num_novelty: int = 16
    interpolation_steps: int = 10
    nn_batch_size: int = 2048
    progress_bar: bool = False
    # Steps not to run, by file name ("progress.gif" stands for both progress files).
    skip: tuple[str, ...] = field(default=())


def make_figures(out_dir: str | Path, data, history: dict[str, np.ndarray], progress: np.ndarray,
                 model: ModelFunctions, settings: FigureSettings, name: str = "") -> dict[str, tuple[int, int]]:
    """Draw every figure of one dataset into the existing folder ``out_dir``.

    ``data``: a :class:`vaelab.data.PreparedData`; ``history``: :func:`read_history`;
    ``progress``: :func:`load_progress`. Returns ``{file name: (width, height) px}`` of the
    files written (manifold.png is absent for latent sizes other than 2 and 3,
    latent_tsne.png unless ``settings.tsne``). Random choices use streams of ``settings.seed``.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    image_shape = tuple(data.x_train.shape[1:])
    classes = data.class_names
    prefix = name or "model"
    written: dict[str, tuple[int, int]] = {}

    def rng(stream: int) -> np.random.Generator:
        # One independent stream per purpose, so adding a figure never changes another's choices.
        return np.random.default_rng([settings.seed, stream])

    def decode(z: np.ndarray) -> np.ndarray:
        images = np.asarray(model.decode(np.asarray(z, dtype=np.float32)))
        if images.dtype != np.uint8 or tuple(images.shape[1:]) != image_shape:
            raise VaelabError(f"the model decodes {images.dtype} images of shape {tuple(images.shape[1:])} but the "
                              f"data holds uint8 {image_shape}; pass the model folder trained on this dataset")
        return images

    samples_cache: list[np.ndarray] = []

    def samples() -> np.ndarray:
        if not samples_cache:
            samples_cache.append(decode(model.sample_prior(max(settings.num_samples, settings.num_novelty))))
        return samples_cache[0]

    def loss_curves() -> None:
        written["loss_curves.png"] = plot_loss_curves(history, out_dir / "loss_curves.png", prefix)

    def reconstructions() -> None:
        count = min(settings.num_reconstructions, len(data.x_test))
        chosen = np.sort(rng(1).choice(len(data.x_test), size=count, replace=False))
        originals = data.x_test[chosen]
        rebuilt = decode(model.encode(originals))
        written["reconstructions.png"] = plot_reconstructions(originals, rebuilt, out_dir / "reconstructions.png",
                                                              prefix)

    def prior_samples() -> None:
        written["samples.png"] = plot_image_grid(
            samples()[:settings.num_samples], out_dir / "samples.png",
            f"{prefix}: images decoded from z ~ N(0, I) (seed {settings.seed})")

    def density_samples() -> None:
        if model.sample_density is None:
            logger.info("samples_gmm.png skipped: no latent density given")
            return
        written["samples_gmm.png"] = plot_image_grid(
            decode(model.sample_density(settings.num_samples)), out_dir / "samples_gmm.png",
            f"{prefix}: images decoded from z ~ {model.density_label} (seed {settings.seed})")

    def training_progress() -> None:
        size = save_progress(progress, out_dir / "progress.gif", out_dir / "progress_last.png")
        written["progress.gif"] = written["progress_last.png"] = size

    def novelty() -> None:
        generated = samples()[:settings.num_novelty]
        index, distance = nearest_neighbours(generated, data.x_train, settings.nn_batch_size)
        names = [class_name(classes, int(label)) for label in data.y_train[index]]
        written["nearest_neighbours.png"] = plot_nearest_neighbours(
            generated, data.x_train[index], names, distance, out_dir / "nearest_neighbours.png", prefix)

    def latent_space() -> None:
        splits = {}
        for stream, split, x, y in ((2, "train", data.x_train, data.y_train), (3, "test", data.x_test, data.y_test)):
            count = min(settings.num_latent_points, len(x))
            chosen = np.sort(rng(stream).choice(len(x), size=count, replace=False))
            splits[split] = (np.asarray(model.encode(x[chosen]), dtype=np.float64), y[chosen])
        z = np.concatenate([means for means, _ in splits.values()])
        sizes = np.cumsum([len(means) for means, _ in splits.values()])[:-1]

        def draw(method: str, file: str, heading: str, axis_labels: tuple[str, str]) -> None:
            xy = np.split(latent_projection(z, method, settings.seed), sizes)
            points = {split: (part, labels) for (split, (_, labels)), part in zip(splits.items(), xy)}
            written[file] = plot_latent_scatter(points, classes, out_dir / file, f"{prefix}: {heading}", axis_labels)

        if model.latent_dim <= 2:
            draw("identity", "latent_space.png", "encoder means mu(x)",
                 ("z[0]", "z[1]" if model.latent_dim == 2 else "(latent_dim is 1)"))
        else:
            draw("pca", "latent_space.png", f"encoder means mu(x), PCA of {model.latent_dim}-D", ("PC 1", "PC 2"))
            if settings.tsne:
                draw("tsne", "latent_tsne.png", f"encoder means mu(x), t-SNE of {model.latent_dim}-D",
                     ("t-SNE 1", "t-SNE 2"))
        if model.latent_dim <= 2 and settings.tsne:
            logger.info("latent_tsne.png skipped: latent_dim is %d, so latent_space.png already shows the "
                        "means directly", model.latent_dim)

    def manifold() -> None:
        size = plot_manifold(decode, model.latent_dim, out_dir / "manifold.png", prefix, image_height=image_shape[0])
        if size is not None:
            written["manifold.png"] = size

    def interpolation() -> None:
        pair = pick_pair_of_classes(data.y_test, settings.seed)
        if pair is None:
            logger.info("interpolation skipped: the test split holds fewer than two classes")
            return
        a, b = pair
        means = np.asarray(model.encode(data.x_test[[a, b]]), dtype=np.float32)
        decoded = decode(interpolation_latents(means[0], means[1], settings.interpolation_steps))
        names = (class_name(classes, int(data.y_test[a])), class_name(classes, int(data.y_test[b])))
        written["interpolation.png"] = plot_interpolation(data.x_test[a], data.x_test[b], decoded, names,
                                                          out_dir / "interpolation.png", prefix)

    steps = {"loss_curves.png": loss_curves, "reconstructions.png": reconstructions, "samples.png": prior_samples,
             "samples_gmm.png": density_samples, "progress.gif": training_progress, "nearest_neighbours.png": novelty, "latent_space.png": latent_space,
             "manifold.png": manifold, "interpolation.png": interpolation}
    todo = [(file, step) for file, step in steps.items() if file not in settings.skip]
    for file, step in tqdm(todo, desc=f"figures {name}".strip(), unit="figure", disable=not settings.progress_bar):
        step()
    return written
