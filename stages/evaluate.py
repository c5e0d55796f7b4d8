"""Stage evaluate: one dataset's metrics file, joined from its score stages' parts.

    python -m stages.evaluate --dataset mnist --scores metrics/mnist/prior.json metrics/mnist/gmm.json \
        metrics/mnist/two_stage.json metrics/mnist/reconstructions.json \
        --out metrics/mnist.json --provenance metrics/mnist.provenance.json

Writes the metrics nested per sampler (``prior.fid``, ``gmm.fid``, ``two_stage.fid``,
``reconstruction.fid``, ``test.elbo``, ...; :func:`vaelab.metrics.evaluation.join_scores`) for `dvc
metrics`, and beside them what made them. Computes nothing: a changed sampler re-runs its own
score stage and this join.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from vaelab.core.cli import run_cli, stage_parser
from vaelab.core.errors import VaelabError


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, out="metrics .json to write")
    parser.add_argument("--scores", nargs="+", required=True, help="the score stages' parts, in the order to list them")
    parser.add_argument("--provenance", required=True,
                        help="what made the metrics (network, weights and hash, preprocessing, counts): .json to write")
    args = parser.parse_args(argv)

    from vaelab.metrics.evaluation import join_scores, write_metrics

    parts = []
    for path in args.scores:
        try:
            parts.append(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise VaelabError(f"score part {path} not found; run `dvc repro evaluate@{args.dataset}`") from None
        except (OSError, ValueError) as error:
            raise VaelabError(f"score part {path} is damaged ({error}); delete it and re-run its score stage") from None
    try:
        result = join_scores(parts)
    except (KeyError, TypeError, ValueError) as error:
        raise VaelabError(f"the score parts of {args.dataset} do not join ({error})") from None
    write_metrics(result.provenance, args.provenance)
    write_metrics(result.metrics, args.out)
    metrics = result.metrics
    samplers = [name for name in metrics if name not in ("reconstruction", "test")]
    logging.getLogger(__name__).info(
        "%s: fid %s, precision %.3f, recall %.3f (prior), reconstruction fid %.3f, test elbo %.2f nats -> %s",
        args.dataset, ", ".join(f"{name} {metrics[name]['fid']:.3f}" for name in samplers),
        metrics["prior"]["precision"], metrics["prior"]["recall"], metrics["reconstruction"]["fid"],
        metrics["test"]["elbo"], args.out)


if __name__ == "__main__":
    run_cli(main)
