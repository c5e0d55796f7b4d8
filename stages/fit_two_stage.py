"""Stage fit_two_stage: the Two-Stage VAE's second VAE, fitted to the first stage's latent codes.

    python -m stages.fit_two_stage --dataset mnist --data data/prepared/mnist.npz --models models/mnist \
        --out models/mnist.two_stage

The second VAE of Dai & Wipf 2019 (section 4, :mod:`vaelab.model.two_stage`), trained on codes
drawn from the encoder's posteriors of the training images; ``score_two_stage`` scores its
samples and ``plot`` draws them.
"""

from __future__ import annotations

import logging
import math
import sys

from vaelab.core.cli import fd2_without, run_cli, stage_params, stage_parser, start_tensorflow


def main(argv: list[str] | None = None) -> None:
    args = stage_parser(__doc__, ("data", "models"), out="two-stage sampler folder to write").parse_args(argv)
    raw = stage_params(args)

    from vaelab.core.params import shared_params
    from vaelab.core.prepared import load_prepared
    from vaelab.model import networks
    from vaelab.model.outputs import load_vae
    from vaelab.model.two_stage import fit_two_stage, save_two_stage, two_stage_params

    shared, second = shared_params(raw), two_stage_params(raw)
    data = load_prepared(args.data)
    start_tensorflow(pooled_allocator=False)  # dense layers of small tensors train faster from malloc
    vae = load_vae(args.models)
    means, log_vars = networks.encode(vae, data.x_train, shared.batch_size)
    verbose = 1 if sys.stderr.isatty() else 2  # asked before fd 2 becomes the filter's pipe
    with fd2_without():  # TensorFlow's harmless NodeDef line when fit builds its input pipeline
        two_stage = fit_two_stage(means, log_vars, second, seed=shared.seed, batch_size=shared.batch_size,
                                  verbose=verbose)
    save_two_stage(two_stage, args.out)
    logging.getLogger(__name__).info("fit_two_stage %s: second VAE (%d epochs, width %d, gamma_z %.4f) -> %s",
                                     args.dataset, second.epochs, second.width, math.exp(two_stage.log_gamma),
                                     args.out)


if __name__ == "__main__":
    run_cli(main)
