"""train stage: fit the dataset's VAE and write the model folder and the per-epoch history.

    python -m stages.train --dataset mnist --data data/prepared/mnist.npz --out models/mnist \
        --history plots/mnist/history.csv --backup checkpoints/mnist [--params params.yaml]

An interrupted run resumes from ``--backup`` (a folder DVC does not own) at the last finished
epoch; the backup is deleted once the outputs are written.
"""

from __future__ import annotations

import os

from vaelab.core.cli import run_cli, stage_params, stage_parser, start_tensorflow
from vaelab.core.errors import VaelabError


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, ("data",), out="model folder to write")
    parser.add_argument("--history", required=True, help="per-epoch history CSV to write")
    parser.add_argument("--backup", required=True, help="folder for the per-epoch backup (resume)")
    args = parser.parse_args(argv)

    from vaelab.core.params import shared_params
    from vaelab.core.prepared import load_prepared
    from vaelab.model.networks import arch_config
    from vaelab.model.params import model_params
    from vaelab.training.hardware import trains_faster_from_the_pool
    from vaelab.training.loop import check_training_inputs, run_training, train_config
    from vaelab.training.params import train_params

    raw = stage_params(args)
    model = model_params(raw, args.dataset)
    train = train_config(shared_params(raw), train_params(raw, args.dataset))
    data = load_prepared(args.data)
    # Every check that can fail runs before TensorFlow is even imported.
    check_training_inputs(train, len(data.x_train), len(data.x_test), args.dataset)
    config = arch_config(model, data.image_shape)
    if os.path.abspath(args.backup) in (os.path.abspath(args.out), os.path.abspath(args.history)):
        raise VaelabError(f"--backup {args.backup} must differ from --out and --history")

    start_tensorflow(pooled_allocator=trains_faster_from_the_pool(config.architecture))
    run_training(data.x_train, data.x_test, config, train, args.out, args.history, args.backup, dataset=args.dataset)


if __name__ == "__main__":
    run_cli(main)
