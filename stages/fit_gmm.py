"""Stage fit_gmm: the ex-post Gaussian mixture, fitted to where the encoder puts the training images.

    python -m stages.fit_gmm --dataset mnist --data data/prepared/mnist.npz --models models/mnist \
        --out models/mnist.gmm.npz

A full-covariance Gaussian mixture on the encoder means of the training images (Ghosh et al.
2020, :mod:`vaelab.model.density`); ``score_gmm`` scores its samples and ``plot`` draws them.
"""

from __future__ import annotations

import logging

from vaelab.core.cli import run_cli, stage_params, stage_parser, start_tensorflow


def main(argv: list[str] | None = None) -> None:
    args = stage_parser(__doc__, ("data", "models"), out="mixture .npz to write").parse_args(argv)
    raw = stage_params(args)

    from vaelab.core.params import shared_params
    from vaelab.core.prepared import load_prepared
    from vaelab.model import networks
    from vaelab.model.density import fit_density, gmm_params, save_density
    from vaelab.model.outputs import load_vae

    shared, gmm = shared_params(raw), gmm_params(raw)
    data = load_prepared(args.data)
    start_tensorflow(pooled_allocator=False)  # the encoder's inference alone: small tensors
    vae = load_vae(args.models)
    means, _ = networks.encode(vae, data.x_train, shared.batch_size)
    density = fit_density(means, gmm.components, shared.seed)
    save_density(density, args.out)
    logging.getLogger(__name__).info("fit_gmm %s: %d-component Gaussian mixture on %d encoder means (latent_dim %d) -> %s",
                                     args.dataset, density.components, density.num_points, density.latent_dim, args.out)


if __name__ == "__main__":
    run_cli(main)
