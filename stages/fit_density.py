"""Stage fit_density: a Gaussian mixture fitted to the encoder means of the training images.

    python -m stages.fit_density --dataset mnist --data data/prepared/mnist.npz \
        --models models/mnist --out models/mnist.gmm.npz

The ex-post density of Ghosh et al. (2020) (see :mod:`vaelab.model.density`), fitted once per model;
the evaluate stage (gmm.fid, gmm.precision, gmm.recall, ...) and the plot stage (samples_gmm.png)
both sample from this file.
"""

from __future__ import annotations

import argparse
import logging

from vaelab.core.cli import run_cli, stage_params, stage_parser, start_tensorflow


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return stage_parser(__doc__, ("data", "models"), out="mixture .npz to write").parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raw = stage_params(args)

    from vaelab.core.params import shared_params
    from vaelab.model import networks
    from vaelab.model.density import gmm_params

    shared, gmm = shared_params(raw), gmm_params(raw)
    from vaelab.core.prepared import load_prepared
    from vaelab.model.density import fit_density, save_density
    from vaelab.model.outputs import load_vae

    data = load_prepared(args.data)
    start_tensorflow()
    vae = load_vae(args.models)
    means = networks.encode_mean(vae, data.x_train, shared.batch_size)
    density = fit_density(means, gmm.components, shared.seed)
    save_density(density, args.out)
    logging.getLogger(__name__).info(
        "fit_density %s: %d-component Gaussian mixture on %d encoder means (latent_dim %d) -> %s",
        args.dataset, density.components, density.num_points, density.latent_dim, args.out)


if __name__ == "__main__":
    run_cli(main)
