"""plot stage: draw the figures of one dataset's trained VAE into one folder.

    python -m stages.plot --dataset mnist --data data/prepared/mnist.npz --models models/mnist \
        --density models/mnist.gmm.npz --two-stage models/mnist.two_stage \
        --history plots/mnist/history.csv --out plots/mnist/images

Writes loss_curves.png, reconstructions.png, samples.png, samples_gmm.png and
samples_two_stage.png (decoded samples of each latent sampler), progress.gif, progress_last.png,
nearest_neighbours.png, latent_space.png, latent_tsne.png (plots.tsne and latent_dim > 2),
manifold.png (latent_dim 2 or 3; otherwise the log says why not) and interpolation.png.
The folder is built beside ``--out`` and renamed into place only when every figure is drawn.
"""

from __future__ import annotations

import logging

from vaelab.core.cli import run_cli, stage_params, stage_parser, start_tensorflow


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, ("data", "models", "density", "two_stage", "history"),
                          out="folder of figures to write")
    args = parser.parse_args(argv)

    from vaelab.core.io import atomic_path
    from vaelab.core.params import shared_params
    from vaelab.core.prepared import load_prepared
    from vaelab.figures.params import plot_params
    from vaelab.figures.table import FigureSettings, ModelFunctions, make_figures
    from vaelab.model.outputs import load_progress, load_vae, read_history
    from vaelab.model.samplers import SAMPLERS, load_samplers

    raw = stage_params(args)
    params, plots = shared_params(raw), plot_params(raw)
    data = load_prepared(args.data)
    history = read_history(args.history)
    progress = load_progress(args.models)

    # TensorFlow only once every cheap input has been checked.
    from vaelab.model import networks

    start_tensorflow()
    vae = load_vae(args.models)
    latent_dim = vae.config.latent_dim
    samplers = load_samplers(latent_dim, args.density, args.two_stage, args.dataset)
    model = ModelFunctions(
        latent_dim=latent_dim,
        encode=lambda images: networks.encode_mean(vae, images),
        decode=lambda z: networks.decode_uint8(vae, z),
        sample_prior=lambda n: networks.sample_prior(latent_dim, n, params.seed),
        ex_post={name: (lambda n, draw=draw: draw(n, params.seed), SAMPLERS[name])
                 for name, draw in samplers.items() if name != "prior"},
    )
    settings = FigureSettings(seed=params.seed, num_latent_points=plots.num_latent_points,
                              tsne=plots.tsne, progress_bar=True)
    with atomic_path(args.out) as tmp:
        tmp.mkdir()
        written = make_figures(tmp, data, history, progress, model, settings, name=args.dataset)
    logging.getLogger(__name__).info("plot %s: wrote %d figures to %s (%s)", args.dataset, len(written), args.out,
                                     ", ".join(written))


if __name__ == "__main__":
    run_cli(main)
