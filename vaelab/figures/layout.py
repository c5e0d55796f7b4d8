"""Pixel layout of the image figures: grids of images, panels with titles, progress frames.

Images are uint8 NHWC with C = 1 (drawn with a grey colour map) or C = 3 (drawn as is).
Image figures are laid out in pixels: each image pixel becomes an integer ``scale`` x
``scale`` block (nearest-neighbour), chosen by :func:`display_scale` so 28 px and 128 px
images both come out at a readable size, and the PNG's size is known in advance (each figure
function returns it). Matplotlib is used through :class:`matplotlib.figure.Figure` only, never
``pyplot``: no global figure state, no GUI backend, so it runs headless.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from vaelab.core.prepared import check_image_array

DPI = 100
# Grey between tiles: visible on black MNIST backgrounds and on white photos alike.
PAD_VALUE = 128
# Every figure file make_figures may write, in the order it writes them.
# Pixel layout of the image figures (at DPI 100, so 1 pt = 100/72 px).
OUTER = 12          # margin around the figure
GAP = 14            # between panels
SUPTITLE_PX = 34    # band for the figure title
SUPTITLE_FONT = 12  # points
TITLE_LINE_PX = 17  # per line of a panel title
TICK_FONT = 8       # pt
CHAR_PX = 6.5       # rough width of one character at 8-9 pt, for margins and truncation


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
    images = check_image_array(images)
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


def curve_limits(curves: Sequence[np.ndarray], outlier_factor: float = 3.0) -> tuple[float, float] | None:
    """y-limits for loss curves whose first epoch dwarfs the rest, or None to let matplotlib choose.

    ``curves``: 1-d arrays, one value per epoch (NaN where absent). At a high learning rate the
    first epoch's mean KL can be a thousand times its final value (36,000 against 25 nats for
    ``infogan`` at 1e-3), and on a linear axis the other epochs then draw as one flat line. So:
    when any curve's first value lies more than ``outlier_factor`` spans above the highest later
    value of all curves (span: their range, or their magnitude when flat), the limits fit the later
    epochs (5% margin) and the caller marks the first epoch off scale. Two epochs or fewer: None.
    """
    later = np.concatenate([np.asarray(c, np.float64)[1:] for c in curves]) if curves else np.empty(0)
    later = later[np.isfinite(later)]
    firsts = np.array([c[0] for c in curves if len(c) > 2 and np.isfinite(c[0])], np.float64)
    if later.size < 2 or firsts.size == 0:
        return None
    low, high = float(later.min()), float(later.max())
    span = high - low or abs(high) or 1.0
    if firsts.max() <= high + outlier_factor * span:
        return None
    return low - 0.05 * span, high + 0.05 * span


def truncate(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[:max(1, max_chars - 1)] + "…"


def new_figure(width_px: int, height_px: int):
    # Figure (not pyplot): no global state, and savefig picks the Agg canvas for PNG itself.
    from matplotlib.figure import Figure

    return Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)


def text_width_px(text: str, fontsize: float) -> int:
    """Width in pixels of one line of ``text`` at ``fontsize`` points, as the Agg canvas draws it.

    Measured by the renderer that saves the PNG, not guessed per character: a guess clipped
    long titles at both edges.
    """
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    width, _, _ = RendererAgg(1, 1, DPI).get_text_width_height_descent(text, FontProperties(size=fontsize),
                                                                        ismath=False)
    return math.ceil(width)


def save_figure(fig, path: str | Path) -> tuple[int, int]:
    fig.savefig(path, dpi=DPI, format="png")
    width, height = fig.get_size_inches() * DPI
    return int(round(width)), int(round(height))


def show_image(ax, image: np.ndarray) -> None:
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


def panel_figure(panels: Sequence[Panel], cols: int, scale: int, suptitle: str, path: str | Path) -> tuple[int, int]:
    """Lay ``panels`` out in a grid of ``cols`` columns, in exact pixels; save a PNG; return (width, height).

    Each cell: a title band (17 px per title line), a left margin when a panel has y ticks or
    a y label, the image at ``scale``, and a bottom margin when it has x ticks or an x label.
    The figure adds a 34 px title band, 12 px outer margins and 14 px gaps, and is widened
    (content centred) when the title would not fit.
    """
    rows = math.ceil(len(panels) / cols)
    img_w = max(p.image.shape[1] for p in panels) * scale
    img_h = max(p.image.shape[0] for p in panels) * scale
    title_px = TITLE_LINE_PX * max((p.title.count("\n") + 1 if p.title else 0) for p in panels)
    ytick_chars = max((max(len(s) for s in p.yticks[1]) if p.yticks and len(p.yticks[1]) else 0) for p in panels)
    has_ylabel = any(p.ylabel for p in panels)
    left = (int(ytick_chars * CHAR_PX) + 10 if ytick_chars else 0) + (20 if has_ylabel else 0)
    bottom = (20 if any(p.xticks for p in panels) else 0) + (20 if any(p.xlabel for p in panels) else 0)
    cell_w, cell_h = left + img_w, title_px + img_h + bottom
    content_w = cols * cell_w + (cols - 1) * GAP
    width = max(content_w + 2 * OUTER, text_width_px(suptitle, SUPTITLE_FONT) + 2 * OUTER)
    height = OUTER + SUPTITLE_PX + rows * cell_h + (rows - 1) * GAP + OUTER
    x_offset = (width - content_w) // 2

    fig = new_figure(width, height)
    fig.text(0.5, 1 - (OUTER + SUPTITLE_PX / 2) / height, suptitle, ha="center", va="center", fontsize=SUPTITLE_FONT)
    for i, panel in enumerate(panels):
        r, c = divmod(i, cols)
        x = x_offset + c * (cell_w + GAP) + left
        top = OUTER + SUPTITLE_PX + r * (cell_h + GAP) + title_px
        h, w = panel.image.shape[0] * scale, panel.image.shape[1] * scale
        ax = fig.add_axes((x / width, 1 - (top + h) / height, w / width, h / height))
        show_image(ax, panel.image)
        ax.set_frame_on(False)
        if panel.title:
            ax.set_title(panel.title, fontsize=9, pad=3)
        for ticks, setter, label_setter in ((panel.xticks, ax.set_xticks, ax.set_xticklabels),
                                            (panel.yticks, ax.set_yticks, ax.set_yticklabels)):
            if ticks is None:
                setter([])
            else:
                setter(list(ticks[0]))
                label_setter(list(ticks[1]), fontsize=TICK_FONT)
        ax.tick_params(length=2, pad=2)
        if panel.xlabel:
            ax.set_xlabel(panel.xlabel, fontsize=9, labelpad=2)
        if panel.ylabel:
            ax.set_ylabel(panel.ylabel, fontsize=9, labelpad=2)
    return save_figure(fig, path)
