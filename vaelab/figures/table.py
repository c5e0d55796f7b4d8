"""The table of figures the plot stage draws, and :func:`make_figures`, which draws them.

Each :class:`FigureStep` names the files it may write and draws them from a
:class:`FigureContext` (one dataset's data, training history and progress frames, the model as
plain :class:`ModelFunctions` callables, and the settings); :data:`FIGURE_FILES` is derived
from the table. Random choices use independent streams of the seed, one per purpose.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from vaelab.core.errors import VaelabError
from vaelab.model.samplers import SAMPLERS
from vaelab.figures.plots import (class_name, plot_image_grid, plot_interpolation, plot_latent_scatter, plot_loss_curves,
                            plot_manifold, plot_nearest_neighbours, plot_reconstructions, save_progress)
from vaelab.figures.latent_maths import interpolation_latents, latent_projection, nearest_neighbours, pick_pair_of_classes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFunctions:
    """What the figures need from a trained VAE, as plain callables (tests pass numpy stand-ins).

    ``encode``: (N, H, W, C) uint8 -> (N, latent_dim) float32 encoder means;
    ``decode``: (N, latent_dim) float32 -> (N, H, W, C) uint8 decoder means;
    ``sample_prior``: n -> (n, latent_dim) float32 draws from N(0, I), seeded by the caller;
    ``ex_post``: the other samplers of :data:`vaelab.model.samplers.SAMPLERS` by name, each
    ``(n -> (n, latent_dim) float32 draws, a label for the figure's title)``; one missing is skipped.
    Reconstructions are ``decode(encode(x))``.
    """

    latent_dim: int
    encode: Callable[[np.ndarray], np.ndarray]
    decode: Callable[[np.ndarray], np.ndarray]
    sample_prior: Callable[[int], np.ndarray]
    ex_post: Mapping[str, tuple[Callable[[int], np.ndarray], str]] = field(default_factory=dict)


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
    # Steps not to run, by their first file name ("progress.gif" stands for both progress files).
    skip: tuple[str, ...] = field(default=())


@dataclass
class FigureContext:
    """What every figure step reads (one dataset's data, history, progress frames, model and
    settings) and where it writes (``out_dir``; ``written`` collects file name -> size)."""

    out_dir: Path
    data: Any  # a vaelab.core.prepared.PreparedData
    history: dict[str, np.ndarray]
    progress: np.ndarray
    model: ModelFunctions
    settings: FigureSettings
    prefix: str
    written: dict[str, tuple[int, int]] = field(default_factory=dict)
    _samples: np.ndarray | None = None

    def rng(self, stream: int) -> np.random.Generator:
        # One independent stream per purpose, so adding a figure never changes another's choices.
        return np.random.default_rng([self.settings.seed, stream])

    def decode(self, z: np.ndarray) -> np.ndarray:
        images = np.asarray(self.model.decode(np.asarray(z, dtype=np.float32)))
        image_shape = tuple(self.data.x_train.shape[1:])
        if images.dtype != np.uint8 or tuple(images.shape[1:]) != image_shape:
            raise VaelabError(f"the model decodes {images.dtype} images of shape {tuple(images.shape[1:])} but the "
                              f"data holds uint8 {image_shape}; pass the model folder trained on this dataset")
        return images

    def samples(self) -> np.ndarray:
        """Decoded prior samples, shared by the samples and nearest-neighbour figures."""
        if self._samples is None:
            count = max(self.settings.num_samples, self.settings.num_novelty)
            self._samples = self.decode(self.model.sample_prior(count))
        return self._samples


def _loss_curves(ctx: FigureContext) -> None:
    ctx.written["loss_curves.png"] = plot_loss_curves(ctx.history, ctx.out_dir / "loss_curves.png", ctx.prefix)


def _reconstructions(ctx: FigureContext) -> None:
    x_test = ctx.data.x_test
    count = min(ctx.settings.num_reconstructions, len(x_test))
    chosen = np.sort(ctx.rng(1).choice(len(x_test), size=count, replace=False))
    originals = x_test[chosen]
    rebuilt = ctx.decode(ctx.model.encode(originals))
    ctx.written["reconstructions.png"] = plot_reconstructions(originals, rebuilt, ctx.out_dir / "reconstructions.png",
                                                              ctx.prefix)


def _prior_samples(ctx: FigureContext) -> None:
    ctx.written["samples.png"] = plot_image_grid(
        ctx.samples()[:ctx.settings.num_samples], ctx.out_dir / "samples.png",
        f"{ctx.prefix}: images decoded from z ~ N(0, I) (seed {ctx.settings.seed})")


def _ex_post_samples(name: str) -> Callable[[FigureContext], None]:
    """The samples figure of sampler ``name``: ``samples_<name>.png``, like the prior's."""
    file = f"samples_{name}.png"

    def draw(ctx: FigureContext) -> None:
        if name not in ctx.model.ex_post:
            logger.info("%s skipped: no %s sampler given", file, name)
            return
        sample, label = ctx.model.ex_post[name]
        ctx.written[file] = plot_image_grid(
            ctx.decode(sample(ctx.settings.num_samples)), ctx.out_dir / file,
            f"{ctx.prefix}: images decoded from z ~ {label} (seed {ctx.settings.seed})")

    return draw


def _training_progress(ctx: FigureContext) -> None:
    size = save_progress(ctx.progress, ctx.out_dir / "progress.gif", ctx.out_dir / "progress_last.png")
    ctx.written["progress.gif"] = ctx.written["progress_last.png"] = size


def _novelty(ctx: FigureContext) -> None:
    data = ctx.data
    generated = ctx.samples()[:ctx.settings.num_novelty]
    index, distance = nearest_neighbours(generated, data.x_train, ctx.settings.nn_batch_size)
    names = [class_name(data.class_names, int(label)) for label in data.y_train[index]]
    ctx.written["nearest_neighbours.png"] = plot_nearest_neighbours(
        generated, data.x_train[index], names, distance, ctx.out_dir / "nearest_neighbours.png", ctx.prefix)


def _latent_space(ctx: FigureContext) -> None:
    data, settings, latent_dim = ctx.data, ctx.settings, ctx.model.latent_dim
    splits = {}
    for stream, split, x, y in ((2, "train", data.x_train, data.y_train), (3, "test", data.x_test, data.y_test)):
        count = min(settings.num_latent_points, len(x))
        chosen = np.sort(ctx.rng(stream).choice(len(x), size=count, replace=False))
        splits[split] = (np.asarray(ctx.model.encode(x[chosen]), dtype=np.float64), y[chosen])
    z = np.concatenate([means for means, _ in splits.values()])
    sizes = np.cumsum([len(means) for means, _ in splits.values()])[:-1]

    def draw(method: str, file: str, heading: str, axis_labels: tuple[str, str]) -> None:
        xy = np.split(latent_projection(z, method, settings.seed), sizes)
        points = {split: (part, labels) for (split, (_, labels)), part in zip(splits.items(), xy)}
        ctx.written[file] = plot_latent_scatter(points, data.class_names, ctx.out_dir / file,
                                                f"{ctx.prefix}: {heading}", axis_labels)

    if latent_dim <= 2:
        draw("identity", "latent_space.png", "encoder means mu(x)",
             ("z[0]", "z[1]" if latent_dim == 2 else "(latent_dim is 1)"))
    else:
        draw("pca", "latent_space.png", f"encoder means mu(x), PCA of {latent_dim}-D", ("PC 1", "PC 2"))
        if settings.tsne:
            draw("tsne", "latent_tsne.png", f"encoder means mu(x), t-SNE of {latent_dim}-D", ("t-SNE 1", "t-SNE 2"))
    if latent_dim <= 2 and settings.tsne:
        logger.info("latent_tsne.png skipped: latent_dim is %d, so latent_space.png already shows the "
                    "means directly", latent_dim)


def _manifold(ctx: FigureContext) -> None:
    size = plot_manifold(ctx.decode, ctx.model.latent_dim, ctx.out_dir / "manifold.png", ctx.prefix,
                         image_height=ctx.data.x_train.shape[1])
    if size is not None:
        ctx.written["manifold.png"] = size


def _interpolation(ctx: FigureContext) -> None:
    data = ctx.data
    pair = pick_pair_of_classes(data.y_test, ctx.settings.seed)
    if pair is None:
        logger.info("interpolation skipped: the test split holds fewer than two classes")
        return
    a, b = pair
    means = np.asarray(ctx.model.encode(data.x_test[[a, b]]), dtype=np.float32)
    decoded = ctx.decode(interpolation_latents(means[0], means[1], ctx.settings.interpolation_steps))
    names = (class_name(data.class_names, int(data.y_test[a])), class_name(data.class_names, int(data.y_test[b])))
    ctx.written["interpolation.png"] = plot_interpolation(data.x_test[a], data.x_test[b], decoded, names,
                                                          ctx.out_dir / "interpolation.png", ctx.prefix)


@dataclass(frozen=True)
class FigureStep:
    """One step of :func:`make_figures`: the files it may write (the first names it in
    ``FigureSettings.skip``) and the function that draws them."""

    files: tuple[str, ...]
    draw: Callable[[FigureContext], None]


# The plot stage's figures, in the order they are drawn.
FIGURES: tuple[FigureStep, ...] = (
    FigureStep(("loss_curves.png",), _loss_curves),
    FigureStep(("reconstructions.png",), _reconstructions),
    FigureStep(("samples.png",), _prior_samples),
    *(FigureStep((f"samples_{name}.png",), _ex_post_samples(name)) for name in SAMPLERS if name != "prior"),
    FigureStep(("progress.gif", "progress_last.png"), _training_progress),
    FigureStep(("nearest_neighbours.png",), _novelty),
    FigureStep(("latent_space.png", "latent_tsne.png"), _latent_space),
    FigureStep(("manifold.png",), _manifold),
    FigureStep(("interpolation.png",), _interpolation),
)
# Every file the plot stage may write (some only for some latent sizes or settings).
FIGURE_FILES = tuple(file for step in FIGURES for file in step.files)


def make_figures(out_dir: str | Path, data, history: dict[str, np.ndarray], progress: np.ndarray,
                 model: ModelFunctions, settings: FigureSettings, name: str = "") -> dict[str, tuple[int, int]]:
    """Draw every figure of :data:`FIGURES` for one dataset into the existing folder ``out_dir``.

    ``data``: a :class:`vaelab.core.prepared.PreparedData`; ``history`` and ``progress``: the train
    stage's (:mod:`vaelab.model.outputs`). Returns ``{file name: (width, height) px}`` of the
    files written (manifold.png is absent for latent sizes other than 2 and 3, latent_tsne.png
    unless ``settings.tsne``, samples_<sampler>.png without that sampler). Random choices use streams of
    ``settings.seed``.
    """
    from tqdm import tqdm

    ctx = FigureContext(Path(out_dir), data, history, progress, model, settings, name or "model")
    todo = [step for step in FIGURES if step.files[0] not in settings.skip]
    for step in tqdm(todo, desc=f"figures {name}".strip(), unit="figure", disable=not settings.progress_bar):
        step.draw(ctx)
    return ctx.written
