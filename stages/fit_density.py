"""Stage fit_density: the ex-post latent samplers, fitted to where the encoder puts the training images.

    python -m stages.fit_density --dataset mnist --data data/prepared/mnist.npz \
        --models models/mnist --out models/mnist.gmm.npz --two-stage models/mnist.two_stage

A Gaussian mixture on the encoder means (Ghosh et al. 2020, :mod:`vaelab.model.density`) and the
second VAE of the Two-Stage VAE on codes drawn from the encoder's posteriors (Dai & Wipf 2019,
:mod:`vaelab.model.two_stage`), fitted once per model; the evaluate stage (gmm.fid,
two_stage.fid, ...) and the plot stage (samples_gmm.png, samples_two_stage.png) sample from them.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys

from vaelab.core.cli import fd2_without, run_cli, stage_params, stage_parser, start_tensorflow


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = stage_parser(__doc__, ("data", "models"), out="mixture .npz to write")
    parser.add_argument("--two-stage", required=True, help="folder of the two-stage sampler to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raw = stage_params(args)

    from vaelab.core.params import shared_params
    from vaelab.core.prepared import load_prepared
    from vaelab.model import networks
    from vaelab.model.density import fit_density, gmm_params, save_density
    from vaelab.model.outputs import load_vae
    from vaelab.model.two_stage import fit_two_stage, save_two_stage, two_stage_params

    shared, gmm, second = shared_params(raw), gmm_params(raw), two_stage_params(raw)

    data = load_prepared(args.data)
    start_tensorflow(pooled_allocator=False)  # dense layers of small tensors train faster from malloc
    vae = load_vae(args.models)
    means, log_vars = networks.encode(vae, data.x_train, shared.batch_size)
    density = fit_density(means, gmm.components, shared.seed)
    save_density(density, args.out)
    verbose = 1 if sys.stderr.isatty() else 2  # asked before fd 2 becomes the filter's pipe
    with fd2_without():  # TensorFlow's harmless NodeDef line when fit builds its input pipeline
        two_stage = fit_two_stage(means, log_vars, second, seed=shared.seed, batch_size=shared.batch_size,
                                  verbose=verbose)
    save_two_stage(two_stage, args.two_stage)
    logging.getLogger(__name__).info(
        "fit_density %s: %d-component Gaussian mixture on %d encoder means (latent_dim %d) -> %s; two-stage "
        "sampler (%d epochs, width %d, gamma_z %.4f) -> %s", args.dataset, density.components, density.num_points,
        density.latent_dim, args.out, second.epochs, second.width, math.exp(two_stage.log_gamma), args.two_stage)


if __name__ == "__main__":
    run_cli(main)
