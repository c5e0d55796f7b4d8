"""Does training repeat bit for bit on this machine? The dataset's model trained twice (or more),
each run in a fresh process, compared after every step.

    python -m scripts.repeat_training --dataset mnist --data data/prepared/mnist.npz --steps 150

Each run builds the model that ``params.yaml`` gives the dataset, as the train stage does
(:func:`vaelab.model.determinism.make_reproducible`, the same input pipeline), trains ``--steps``
batches and records a digest of every weight and Adam slot after each one. Then it prints
``identical: ...`` (exit status 0) or the first step at which two runs part and the variables
that differ there (exit status 1): where to start looking when a new layer or op brings a
timing-dependent sum back (docs/reproducibility.md has what it found before the fix).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from vaelab.core.cli import run_cli, stage_params, stage_parser
from vaelab.core.errors import VaelabError


def first_difference(runs: Sequence[dict[str, Any]]) -> str | None:
    """None if every run's per-step digests equal the first run's, else a line naming the first
    step (1-based) and the variables at which a run parts from run 1. ``runs``: the children's
    records, ``{"names": [...], "steps": [[digest per variable], ...]}``."""
    first = runs[0]
    for number, other in enumerate(runs[1:], start=2):
        for step, (a, b) in enumerate(zip(first["steps"], other["steps"]), start=1):
            if a != b:
                differ = [name for name, x, y in zip(first["names"], a, b) if x != y]
                return f"runs 1 and {number} part at step {step}: {len(differ)} variables differ ({', '.join(differ[:8])}" \
                       f"{', ...' if len(differ) > 8 else ''})"
    return None


def run_child(raw: Any, dataset: str, data: str, steps: int, out: str) -> None:
    """One run of the params ``raw``: train ``steps`` batches, write the per-step digests to ``out`` (JSON)."""
    import numpy as np

    from vaelab.core.cli import start_tensorflow
    from vaelab.core.params import shared_params
    from vaelab.core.prepared import load_prepared
    from vaelab.model.networks import arch_config
    from vaelab.model.params import model_params
    from vaelab.training.hardware import trains_faster_from_the_pool
    from vaelab.training.loop import check_training_inputs, train_config, train_dataset
    from vaelab.training.params import train_params

    train = train_config(shared_params(raw), train_params(raw, dataset))
    prepared = load_prepared(data)
    check_training_inputs(train, len(prepared.x_train), len(prepared.x_test), dataset)
    config = arch_config(model_params(raw, dataset), prepared.image_shape)
    start_tensorflow(pooled_allocator=trains_faster_from_the_pool(config.architecture))
    import keras

    from vaelab.model.determinism import make_reproducible
    from vaelab.training.vae import build_vae

    make_reproducible(train.seed)
    model = build_vae(config, train)
    digests: list[list[str]] = []

    class Digest(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            # Adam's slots exist from the first step on: read the optimizer's variables afresh.
            digests.append([hashlib.sha1(np.asarray(v).tobytes()).hexdigest()[:12]
                            for v in [*model.weights, *model.optimizer.variables]])

    per_epoch = len(prepared.x_train) // train.batch_size
    epochs = -(-steps // per_epoch)
    batches = train_dataset(prepared.x_train, train.batch_size, train.seed, 0, epochs).take(steps)
    model.fit(batches, steps_per_epoch=steps, epochs=1, callbacks=[Digest()], verbose=0, shuffle=False)
    names = [f"model/{v.path}" for v in model.weights] + [f"optimizer/{v.path}" for v in model.optimizer.variables]
    Path(out).write_text(json.dumps({"names": names, "steps": digests}))


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, ("data",))
    parser.add_argument("--steps", type=int, default=150, help="batches per run (default 150)")
    parser.add_argument("--runs", type=int, default=2, help="fresh processes to compare (default 2)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.runs < 2:
        raise VaelabError(f"--steps {args.steps} and --runs {args.runs}: need at least 1 step and 2 runs")
    raw = stage_params(args)
    if args.child:
        run_child(raw, args.dataset, args.data, args.steps, args.child)
        return
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for number in range(1, args.runs + 1):
            out = Path(folder) / f"run{number}.json"
            print(f"run {number} of {args.runs}: {args.steps} steps of {args.dataset}", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, "-m", "scripts.repeat_training", "--dataset", args.dataset, "--data",
                            args.data, "--params", args.params, "--steps", str(args.steps), "--child", str(out)],
                           check=True)
            runs.append(json.loads(out.read_text()))
    problem = first_difference(runs)
    if problem:
        print(problem)
        raise SystemExit(1)
    names = runs[0]["names"]
    optimizer = sum(name.startswith("optimizer/") for name in names)
    print(f"identical: {args.runs} runs of {args.steps} steps; {len(names) - optimizer} model and {optimizer} optimizer "
          f"variables after every step")
    print(f"reproduce: python -m scripts.repeat_training --dataset {args.dataset} --data {args.data} "
          f"--params {args.params} --steps {args.steps} --runs {args.runs}")


if __name__ == "__main__":
    run_cli(main)
