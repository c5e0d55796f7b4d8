"""Figures (issue 5): the pure pieces against exact values, every figure of a tiny fake run
with its designed pixel size, file type and frame count, latent sizes 2, 3 and 16, a
one-epoch run, and (slow) the stage CLI on a real, untrained Keras model folder.

The fake model is numpy only: a fixed random linear encoder and a sigmoid-of-linear decoder.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import PROJECT_ROOT
from vaelab.figures import plots
from vaelab.core.prepared import PreparedData, save_prepared
from vaelab.model.density import fit_density, save_density
from vaelab.core.errors import VaelabError
from vaelab.figures.layout import curve_limits, display_scale, grid_shape, image_grid, progress_frames
from vaelab.figures.table import FIGURE_FILES, FigureSettings, ModelFunctions, make_figures
from vaelab.figures.latent_maths import (interpolation_latents, latent_projection, manifold_latents, nearest_neighbours,
                                 pick_pair_of_classes)
from vaelab.model.outputs import HISTORY_COLUMNS, load_progress, read_history

CLASS_NAMES = ("circle", "square", "a rather long class name for a legend", "dot")


# ---------------------------------------------------------------------------------------------
# Fakes


def fake_data(shape, n_train=150, n_test=40, seed=0) -> PreparedData:
    """Images of four classes: a class template plus noise, so the latent scatter has structure."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(len(CLASS_NAMES), *shape))

    def split(n):
        labels = np.arange(n) % len(CLASS_NAMES)
        noise = rng.normal(0, 40, size=(n, *shape))
        return np.clip(templates[labels] + noise, 0, 255).astype(np.uint8), labels.astype(np.int64)

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    return PreparedData(x_train, y_train, x_test, y_test, CLASS_NAMES)


def fake_model(shape, latent_dim, seed=0) -> ModelFunctions:
    rng = np.random.default_rng(seed)
    pixels = int(np.prod(shape))
    encoder = rng.normal(size=(pixels, latent_dim)) / np.sqrt(pixels)
    decoder = rng.normal(size=(latent_dim, pixels))

    def encode(images):
        return ((images.reshape(len(images), -1) / 255.0 - 0.5) @ encoder).astype(np.float32)

    def decode(z):
        return (255 / (1 + np.exp(-(z @ decoder)))).round().astype(np.uint8).reshape(len(z), *shape)

    def sample_density(n):  # a narrower Gaussian around a shifted centre: a stand-in mixture
        return (0.5 * np.random.default_rng(seed + 1).standard_normal((n, latent_dim)) + 0.3).astype(np.float32)

    def sample_second(n):  # another stand-in sampler
        return (0.8 * np.random.default_rng(seed + 2).standard_normal((n, latent_dim)) - 0.2).astype(np.float32)

    return ModelFunctions(latent_dim, encode, decode,
                          lambda n: np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32),
                          {"gmm": (sample_density, "stand-in density"), "two_stage": (sample_second, "stand-in")})


def fake_history(epochs) -> dict[str, np.ndarray]:
    history = {column: np.linspace(200, 150, epochs) for column in HISTORY_COLUMNS}
    history["epoch"] = np.arange(1, epochs + 1, dtype=float)
    history["kl"] = history["val_kl"] = np.linspace(2, 5, epochs)
    return history


def fake_progress(epochs, shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(epochs, 16, *shape), dtype=np.uint8)


def write_history_csv(path: Path, epochs: int, columns=HISTORY_COLUMNS) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for epoch in range(1, epochs + 1):
            writer.writerow([epoch] + [100.0 / epoch + i for i in range(len(columns) - 1)])


# ---------------------------------------------------------------------------------------------
# Pure pieces


def test_image_grid_places_tiles_with_padding():
    images = np.stack([np.full((2, 3, 1), 10, np.uint8), np.full((2, 3, 1), 20, np.uint8)])
    grid = image_grid(images, rows=2, cols=2, pad=1, pad_value=0)
    assert grid.shape == (2 * (2 + 1) + 1, 2 * (3 + 1) + 1, 1) == (7, 9, 1)
    assert (grid[1:3, 1:4] == 10).all() and (grid[1:3, 5:8] == 20).all()
    assert grid.sum() == 6 * 10 + 6 * 20  # padding and the two empty cells stay 0
    with pytest.raises(ValueError, match="do not fit"):
        image_grid(np.zeros((5, 2, 2, 3), np.uint8), 2, 2)
    with pytest.raises(VaelabError, match="uint8"):
        image_grid(np.zeros((1, 2, 2, 3), np.float32), 1, 1)


def test_a_long_title_widens_the_figure_so_no_glyph_is_clipped(tmp_path):
    title = "mnist: images decoded from z ~ 10-component Gaussian mixture fitted to mu(x) (seed 42)"
    images = np.zeros((64, 28, 28, 1), np.uint8)
    width, height = plots.plot_image_grid(images, tmp_path / "grid.png", title)
    ink = np.asarray(Image.open(tmp_path / "grid.png").convert("L"))[:46] < 128  # the title band
    columns = np.flatnonzero(ink.any(axis=0))
    assert ink.shape[1] == width and columns.size
    assert columns[0] >= 6 and columns[-1] < width - 6, (columns[0], columns[-1], width)


@pytest.mark.parametrize("n, shape", [(1, (1, 1)), (2, (1, 2)), (5, (2, 3)), (10, (3, 4)), (16, (4, 4))])
def test_grid_shape(n, shape):
    assert grid_shape(n) == shape


def test_display_scale_makes_small_images_readable_and_never_shrinks():
    assert [display_scale(h) for h in (28, 32, 64, 128, 300)] == [3, 3, 2, 1, 1]


@pytest.mark.parametrize("curves, limits", [
    # a first-epoch KL spike (infogan at lr 1e-3): fit epochs 2.. of train and validation, 5% margin
    ([[36000.0, 40, 30, 25], [np.nan, 45, 35, 30]], (24.0, 46.0)),
    ([[1000.0, 5, 5, 5]], (4.75, 5.25)),  # flat after the spike: the magnitude is the span
    ([[5000.0, -600, -610, -615]], (-615.75, -599.25)),  # learned gamma: negative losses
    ([[100.0, 90, 80, 70]], None),  # an ordinary first epoch: matplotlib's own limits
    ([[36000.0, 25]], None),  # two epochs: nothing to fit
    ([[np.nan, 40, 30, 25]], None),
])
def test_curve_limits_fit_the_epochs_after_a_first_epoch_spike(curves, limits):
    result = curve_limits([np.array(c) for c in curves])
    assert result == (None if limits is None else pytest.approx(limits, abs=1e-12))


def test_loss_curves_name_the_first_epoch_they_cut_off(tmp_path, monkeypatch):
    figures = []
    save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: (figures.append(fig), save(fig, path))[1])
    epochs = np.arange(1, 6, dtype=np.float64)
    history = {"epoch": epochs, "loss": np.array([36130.0, 140, 120, 110, 105]),
               "reconstruction": np.array([130.0, 100, 90, 85, 80]), "kl": np.array([36000.0, 40, 30, 25, 25]),
               "val_loss": np.array([200.0, 150, 125, 115, 112]), "val_reconstruction": np.full(5, np.nan),
               "val_kl": np.array([70.0, 45, 35, 30, 30])}
    assert plots.plot_loss_curves(history, tmp_path / "loss.png") == (1350, 420)
    total, reconstruction, kl = figures[0].axes
    assert total.get_ylim() == pytest.approx((105 - 2.25, 150 + 2.25))
    assert kl.get_ylim() == pytest.approx((25 - 1.0, 45 + 1.0))
    assert [t.get_text() for t in total.texts] == ["epoch 1 off scale:\ntrain 36,130\nvalidation 200"]
    assert [t.get_text() for t in kl.texts] == ["epoch 1 off scale:\ntrain 36,000\nvalidation 70"]
    assert len(reconstruction.texts) == 0 and reconstruction.get_ylim()[1] > 130  # no spike: untouched


def brute_force(queries, train):
    diff = queries.reshape(len(queries), 1, -1).astype(np.int64) - train.reshape(1, len(train), -1).astype(np.int64)
    squared = (diff ** 2).sum(axis=2)
    index = squared.argmin(axis=1)  # the first of equal minima, as nearest_neighbours promises
    return index, np.sqrt(squared[np.arange(len(queries)), index].astype(np.float64))


@pytest.mark.parametrize("batch_size", [1, 7, 64, 150, 1000])
def test_nearest_neighbours_agree_with_brute_force_across_batches(batch_size):
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, size=(150, 5, 6, 3), dtype=np.uint8)
    train[100] = train[3]  # a duplicate in a later block: the tie must go to index 3
    queries = rng.integers(0, 256, size=(16, 5, 6, 3), dtype=np.uint8)
    queries[0], queries[1], queries[2] = train[3], train[149], train[70]  # exact copies: distance 0
    index, distance = nearest_neighbours(queries, train, batch_size)
    expected_index, expected_distance = brute_force(queries, train)
    np.testing.assert_array_equal(index, expected_index)
    np.testing.assert_array_equal(distance, expected_distance)
    assert index[0] == 3 and index[1] == 149 and index[2] == 70
    assert distance[:3].tolist() == [0.0, 0.0, 0.0]


def test_nearest_neighbours_are_exact_for_large_images():
    # 32x32x3 near-copies: squared distances are tiny next to ||a||^2 ~ 1e8, where float32 would round.
    rng = np.random.default_rng(4)
    train = rng.integers(0, 256, size=(60, 32, 32, 3), dtype=np.uint8)
    queries = train[[5, 17, 42]].copy()
    queries[0, 0, 0, 0] ^= 1  # one pixel off by one: distance exactly 1
    queries[1, 3, 4, 2] = 255 - queries[1, 3, 4, 2]
    index, distance = nearest_neighbours(queries, train, batch_size=16)
    expected_index, expected_distance = brute_force(queries, train)
    np.testing.assert_array_equal(index, expected_index)
    np.testing.assert_array_equal(distance, expected_distance)
    assert index.tolist() == [5, 17, 42] and distance[0] == 1.0


def test_nearest_neighbours_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        nearest_neighbours(np.zeros((1, 4, 4, 1), np.uint8), np.zeros((3, 4, 4, 3), np.uint8))


@pytest.mark.parametrize("shape, scale, size", [
    # grid 4 * (28 + 2) + 2 = 122 px -> scale ceil(256 / 122) = 3 -> 366 px, under a 16 + 12 px banner
    ((28, 28, 1), 3, (366, 3 * 122 + 28)),
    # grid 4 * 34 + 2 = 138 px -> scale 2 -> 276 px
    ((32, 32, 3), 2, (276, 2 * 138 + 28)),
    # grid 4 * 130 + 2 = 522 px -> scale 1
    ((128, 128, 3), 1, (522, 522 + 28)),
])
def test_progress_frames_one_per_epoch_with_label(shape, scale, size):
    progress = fake_progress(3, shape)
    frames = progress_frames(progress)
    assert len(frames) == 3
    for frame in frames:
        assert frame.dtype == np.uint8 and frame.shape == (size[1], size[0], 3)
    banner = [frame[:28] for frame in frames]
    assert all((b < 128).any() for b in banner)  # the epoch label is drawn
    assert not np.array_equal(banner[0], banner[1])  # and differs per epoch
    # The images sit below the banner, nearest-neighbour upscaled.
    top_left = frames[0][28 + 2 * scale:28 + 2 * scale + shape[0] * scale:scale,
                         2 * scale:2 * scale + shape[1] * scale:scale]
    expected = np.repeat(progress[0, 0], 3, axis=-1) if shape[-1] == 1 else progress[0, 0]
    np.testing.assert_array_equal(top_left, expected)


def test_manifold_latents_2d_and_3d():
    grid = manifold_latents(5, 2)
    assert grid.z.shape == (1, 5, 5, 2) and grid.slices == ()
    np.testing.assert_allclose(grid.values[[0, 2, 4]], [-1.6448536, 0.0, 1.6448536], atol=1e-6)
    np.testing.assert_allclose(grid.z[0, 0, 0], [-1.6448536, 1.6448536], atol=1e-6)  # top left: x low, y high
    np.testing.assert_allclose(grid.z[0, 4, 3], [grid.values[3], grid.values[0]], atol=1e-6)
    grid3 = manifold_latents(4, 3)
    assert grid3.z.shape == (3, 4, 4, 3)
    np.testing.assert_allclose(grid3.slices, [-1.2815516, 0.0, 1.2815516], atol=1e-6)
    np.testing.assert_allclose(grid3.z[2, ..., 2], 1.2815516, atol=1e-6)
    with pytest.raises(ValueError, match="latent_dim 2 or 3"):
        manifold_latents(5, 16)


def test_interpolation_latents_is_a_straight_line():
    z = interpolation_latents(np.array([0.0, 2.0]), np.array([4.0, -2.0]), 5)
    np.testing.assert_allclose(z, [[0, 2], [1, 1], [2, 0], [3, -1], [4, -2]])
    assert z.dtype == np.float32
    with pytest.raises(ValueError, match="steps"):
        interpolation_latents(np.zeros(2), np.ones(2), 1)


def test_latent_projections():
    rng = np.random.default_rng(0)
    z2 = rng.normal(size=(30, 2))
    np.testing.assert_array_equal(latent_projection(z2, "identity"), z2)
    np.testing.assert_array_equal(latent_projection(z2[:, :1], "identity"), np.hstack([z2[:, :1], np.zeros((30, 1))]))
    # Points on a plane in 16-D: PCA to 2-D keeps every pairwise distance.
    basis = np.linalg.qr(rng.normal(size=(16, 2)))[0]
    z16 = z2 @ basis.T + 3.0
    xy = latent_projection(z16, "pca")
    distances = lambda p: np.linalg.norm(p[:, None] - p[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(distances(xy), distances(z2), atol=1e-9)
    tsne = latent_projection(z16, "tsne", seed=1)
    assert tsne.shape == (30, 2)
    np.testing.assert_array_equal(tsne, latent_projection(z16, "tsne", seed=1))  # seeded
    with pytest.raises(ValueError, match="latent_dim <= 2"):
        latent_projection(z16, "identity")
    with pytest.raises(ValueError, match="unknown projection"):
        latent_projection(z16, "umap")


def test_pick_pair_of_classes():
    labels = np.array([0, 0, 0, 1, 0, 2])
    for seed in range(10):
        a, b = pick_pair_of_classes(labels, seed)
        assert labels[a] != labels[b]
        assert pick_pair_of_classes(labels, seed) == (a, b)
    assert pick_pair_of_classes(np.zeros(5, int), 0) is None


def test_read_history_round_trip_and_errors(tmp_path):
    path = tmp_path / "history.csv"
    write_history_csv(path, 3)
    history = read_history(path)
    assert set(history) == set(HISTORY_COLUMNS)
    np.testing.assert_array_equal(history["epoch"], [1, 2, 3])
    np.testing.assert_array_equal(history["val_kl"], [105.0, 55.0, 100.0 / 3 + 5])
    with pytest.raises(VaelabError, match="not found"):
        read_history(tmp_path / "missing.csv")
    write_history_csv(path, 2, columns=("epoch", "loss", "kl"))
    with pytest.raises(VaelabError, match=r"lacks columns \['reconstruction'"):
        read_history(path)
    write_history_csv(path, 0)
    with pytest.raises(VaelabError, match="no rows"):
        read_history(path)


def test_load_progress_errors(tmp_path):
    with pytest.raises(VaelabError, match="progress.npy not found"):
        load_progress(tmp_path)
    np.save(tmp_path / "progress.npy", np.zeros((2, 16, 4, 4), np.uint8))
    with pytest.raises(VaelabError, match=r"must be uint8 \(epochs, points, H, W, 1\|3\)"):
        load_progress(tmp_path)
    np.save(tmp_path / "progress.npy", fake_progress(2, (4, 4, 1)))
    assert load_progress(tmp_path).shape == (2, 16, 4, 4, 1)


# ---------------------------------------------------------------------------------------------
# Every figure of a tiny run

# The designed sizes for 28x28x1 images (scale 3) and the default counts. Layout in pixels:
# 12 px outer margins, a 34 px title band, 14 px gaps, 17 px per panel-title line.
DESIGNED_28PX = {
    "loss_curves.png": (1350, 420),
    # 4 rows x 8 cols of 28 px with 2 px pads: 242 x 122, x3 = 726 x 366; "reconstruction"
    # tick labels: 14 * 6.5 + 10 = 101 px on the left.
    "reconstructions.png": (12 + 101 + 726 + 12, 12 + 34 + 366 + 12),
    # 8 x 8 grid: 242 px, x3 = 726.
    "samples.png": (12 + 726 + 12, 12 + 34 + 726 + 12),
    "samples_gmm.png": (12 + 726 + 12, 12 + 34 + 726 + 12),
    "samples_two_stage.png": (12 + 726 + 12, 12 + 34 + 726 + 12),
    "progress.gif": (366, 394),
    "progress_last.png": (366, 394),
    # 4 x 4 pairs of (2 * 30 + 2) x 32 px, x3 = 186 x 96, under two title lines (34 px).
    "nearest_neighbours.png": (12 + 4 * 186 + 3 * 14 + 12, 12 + 34 + 4 * (34 + 96) + 3 * 14 + 12),
    # two 540 px panels (70 px left, 80 between), a 30 px gap and one 180 px legend column.
    "latent_space.png": (70 + 540 + 80 + 540 + 30 + 180 + 10, 680),
    # 20 x 20 grid of 28 px without pads at scale 1 (560 px); "-1.64" ticks (5 * 6.5 + 10 = 42)
    # plus a 20 px y label on the left, 20 + 20 px of x ticks and label below.
    "manifold.png": (12 + 42 + 20 + 560 + 12, 12 + 34 + 560 + 40 + 12),
    # A, 10 steps, B: 12 * 30 + 2 = 362 x 32 px, x3 = 1086 x 96, 40 px of ticks and label below.
    "interpolation.png": (12 + 1086 + 12, 12 + 34 + 96 + 40 + 12),
}


def run_figures(tmp_path, shape, latent_dim, epochs, seed=5, **settings):
    data = fake_data(shape)
    out = tmp_path / "images"
    out.mkdir(parents=True)
    written = make_figures(out, data, fake_history(epochs), fake_progress(epochs, shape),
                           fake_model(shape, latent_dim), FigureSettings(seed=seed, num_latent_points=60, nn_batch_size=32,
                                                                         **settings), name="fake")
    return out, written


def check_files(out: Path, written: dict[str, tuple[int, int]], epochs: int) -> None:
    assert sorted(p.name for p in out.iterdir()) == sorted(written)
    for name, size in written.items():
        with Image.open(out / name) as image:
            assert image.format == name.rsplit(".", 1)[1].upper()
            assert image.size == size, name
            if name.endswith(".gif"):
                assert image.n_frames == epochs


@pytest.mark.parametrize("epochs", [3, 1], ids=["3-epochs", "one-epoch"])
def test_every_figure_of_a_28px_latent_2_run_has_its_designed_size(tmp_path, epochs):
    out, written = run_figures(tmp_path, (28, 28, 1), 2, epochs)
    assert written == DESIGNED_28PX
    check_files(out, written, epochs)
    assert set(FIGURE_FILES) == set(DESIGNED_28PX) | {"latent_tsne.png"}


@pytest.mark.parametrize("shape, latent_dim, epochs, tsne", [
    ((32, 32, 3), 3, 3, False),
    ((28, 28, 1), 16, 3, True),
    ((32, 32, 3), 16, 1, False),
    ((64, 48, 3), 2, 2, False),
])
def test_latent_sizes_2_3_and_16_and_rgb(tmp_path, caplog, shape, latent_dim, epochs, tsne):
    with caplog.at_level(logging.INFO, logger="vaelab"):
        out, written = run_figures(tmp_path, shape, latent_dim, epochs, tsne=tsne)
    check_files(out, written, epochs)
    expected = set(DESIGNED_28PX)
    if latent_dim > 3:
        expected.discard("manifold.png")
        assert "manifold skipped: latent_dim is 16" in caplog.text
    if tsne and latent_dim > 2:
        expected.add("latent_tsne.png")
    assert set(written) == expected
    h, w = shape[:2]
    scale = display_scale(h)
    # samples: an 8 x 8 grid of (w + 2) px cells plus 2, upscaled.
    assert written["samples.png"] == (24 + (8 * (w + 2) + 2) * scale, 12 + 34 + (8 * (h + 2) + 2) * scale + 12)
    assert written["samples_gmm.png"] == written["samples.png"]
    if latent_dim == 3:
        # three slices of a 12 x 12 grid (400 // 32) side by side, each under a one-line title
        n = plots.manifold_size(h, 3)
        assert n == 12 and written["manifold.png"][1] == 12 + 34 + 17 + n * h + 40 + 12


def test_samples_are_seeded(tmp_path):
    first, _ = run_figures(tmp_path / "a", (28, 28, 1), 2, 1, skip=("latent_space.png",))
    second, _ = run_figures(tmp_path / "b", (28, 28, 1), 2, 1, skip=("latent_space.png",))
    for name in ("samples.png", "samples_gmm.png", "reconstructions.png", "nearest_neighbours.png",
                 "interpolation.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    # Each sampler's samples are different images.
    samples = [(first / f"samples{suffix}.png").read_bytes() for suffix in ("", "_gmm", "_two_stage")]
    assert len(set(samples)) == 3
    # The figures' own random choices (which test images, which pair of classes) follow the seed;
    # the samples (and their nearest neighbours) are the samplers', seeded by their caller.
    other, _ = run_figures(tmp_path / "c", (28, 28, 1), 2, 1, seed=6, skip=("latent_space.png",))
    for name in ("reconstructions.png", "interpolation.png"):
        assert (first / name).read_bytes() != (other / name).read_bytes(), name


def test_without_a_sampler_its_figure_is_skipped_and_logged(tmp_path, caplog):
    full = fake_model((28, 28, 1), 2)
    model = dataclasses.replace(full, ex_post={"two_stage": full.ex_post["two_stage"]})
    out = tmp_path / "images"
    out.mkdir()
    with caplog.at_level(logging.INFO, logger="vaelab"):
        written = make_figures(out, fake_data((28, 28, 1)), fake_history(1), fake_progress(1, (28, 28, 1)), model,
                               FigureSettings(num_latent_points=60, skip=("latent_space.png", "manifold.png")))
    assert "samples_gmm.png" not in written and {"samples.png", "samples_two_stage.png"} <= set(written)
    assert "samples_gmm.png skipped: no gmm sampler given" in caplog.text


def test_a_decoder_for_other_images_is_a_clear_error(tmp_path):
    data = fake_data((28, 28, 1))
    model = dataclasses.replace(fake_model((28, 28, 1), 2), decode=fake_model((32, 32, 3), 2).decode)
    with pytest.raises(VaelabError, match=r"decodes uint8 images of shape \(32, 32, 3\) but the data holds "
                                          r"uint8 \(28, 28, 1\); pass the model folder trained on this dataset"):
        make_figures(tmp_path, data, fake_history(1), fake_progress(1, (28, 28, 1)), model, FigureSettings())


# ---------------------------------------------------------------------------------------------
# The stage CLI on a real (untrained) Keras model folder


@pytest.mark.slow
def test_plot_stage_cli(tmp_path, write_params):
    from vaelab.model.networks import ArchConfig, TrainedVae, build_decoder, build_encoder
    from vaelab.model.outputs import save_vae

    shape, latent_dim, epochs = (28, 28, 1), 2, 2
    save_prepared(fake_data(shape, n_train=80, n_test=30), tmp_path / "fake.npz")
    models = tmp_path / "models"
    models.mkdir()
    config = ArchConfig(shape, latent_dim=latent_dim, hidden_dim=16)
    save_vae(TrainedVae(build_encoder(config), build_decoder(config), config), models)
    np.save(models / "progress.npy", fake_progress(epochs, shape))
    np.save(models / "progress_latents.npy", np.zeros((16, latent_dim), np.float32))
    density = fit_density(np.random.default_rng(0).standard_normal((60, latent_dim)), components=3, seed=0)
    save_density(density, tmp_path / "fake.gmm.npz")
    from vaelab.model.two_stage import TwoStageParams, fit_two_stage, save_two_stage

    codes = np.random.default_rng(1).standard_normal((60, latent_dim)).astype(np.float32)
    save_two_stage(fit_two_stage(codes, np.full_like(codes, -2.0), TwoStageParams(epochs=1, width=8), seed=0,
                                 batch_size=30), tmp_path / "fake.two_stage")
    write_history_csv(tmp_path / "history.csv", epochs)
    params = write_params(seed=3, latent_dim=latent_dim, epochs=epochs, batch_size=8,
                          datasets={"fake": {"data": {"kind": "mnist"}}}, plots={"num_latent_points": 50})

    def run(history):
        args = [sys.executable, "-m", "stages.plot", "--dataset", "fake", "--data", str(tmp_path / "fake.npz"),
                "--models", str(models), "--density", str(tmp_path / "fake.gmm.npz"), "--two-stage",
                str(tmp_path / "fake.two_stage"), "--history", str(history), "--out", str(tmp_path / "plots" / "images"),
                "--params", str(params)]
        env = {**os.environ}
        return subprocess.run(args, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)

    result = run(tmp_path / "missing.csv")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: training history {tmp_path / 'missing.csv'} not found; run `dvc repro train@<dataset>` first")
    assert not (tmp_path / "plots" / "images").exists()

    result = run(tmp_path / "history.csv")
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "plots" / "images"
    # The samplers' titles ("fake: images decoded from z ~ the Gaussian mixture fitted to mu(x)
    # (seed 3)", "... ~ the Two-Stage VAE's second decoder (seed 3)") fit the 726-px grid.
    designed = DESIGNED_28PX
    assert {p.name for p in out.iterdir()} == set(designed)
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["images"]  # no temp folder left
    for name in designed:
        with Image.open(out / name) as image:
            assert image.size == designed[name], name
            if name.endswith(".gif"):
                assert image.n_frames == epochs
