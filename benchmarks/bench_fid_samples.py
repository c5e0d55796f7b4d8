"""What ``fid.num_samples`` does to FID: one trained model's prior samples scored at several sizes.

FID is biased upwards at finite sample size (the sample covariance's noise adds to the trace
term; Chong & Forsyth 2020, "Effectively unbiased FID"), so a FID at 5,000 samples is not the
number at the papers' 10,000. This measures the gap for a real model instead of guessing it:

* draws ``--max-samples`` latent points from N(0, I) exactly as the evaluate stage does
  (:func:`vaelab.model.networks.sample_prior` with the pipeline's ``seed``: the first n of them
  are the n evaluate draws), decodes them, and computes their features once, streamed batch by
  batch (the features are kept: 80 MB at 10,000 x 2048 float32);
* for each n of ``--sizes``: FID of the first n samples against the model's reference
  statistics (at n = ``fid.num_samples`` this is evaluate's ``prior.fid``), and, where
  ``--max-samples`` holds several disjoint sets of n, their mean ± std: the spread one more
  seed of sampling would show.

Run it in the pipeline's repository after ``dvc repro`` (docs/results.md's proxy, for its rows):

    python benchmarks/bench_fid_samples.py --models models/mnist --reference data/reference/mnist.npz \
        --weights ../shared/fid-inception-2015/default_1.pt      # 10,000 samples: 12 min on 2 Zen 4 cores
    python benchmarks/bench_fid_samples.py --smoke   # seconds: the benchmark runs (a test runs it)

The feature network, image size, precision and seeds are read from ``params.yaml`` (``--params``),
as the evaluate stage reads them; the reference statistics must have been made by that network.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def fid_of(features: np.ndarray, reference) -> float:
    """FID of float32 (n, D) features against :class:`vaelab.metrics.feature_stats.FeatureStats`, through
    the float64 running statistics the evaluate stage uses."""
    from vaelab.metrics.distances import frechet_distance
    from vaelab.metrics.feature_stats import RunningStats

    stats = RunningStats()
    stats.add(features)
    return frechet_distance(stats.mean, stats.covariance("prior sample features"), reference.mu, reference.sigma)


def smoke_inputs(folder: Path) -> tuple[Path, Path, Path]:
    """An untrained tiny mlp VAE, the random network's reference statistics of 64 random 28x28
    images, and a params.yaml naming that network at 75 px: (models, reference, params)."""
    import yaml

    from vaelab.metrics.features import build_feature_extractor
    from vaelab.metrics.reference import compute_reference, save_reference
    from vaelab.model import networks
    from vaelab.model.outputs import save_vae

    import keras

    keras.utils.set_random_seed(0)  # the untrained weights, so a smoke run prints the same numbers
    config = networks.ArchConfig(image_shape=(28, 28, 1), latent_dim=2, hidden_dim=8)
    models = folder / "models"
    models.mkdir(parents=True)
    save_vae(networks.TrainedVae(networks.build_encoder(config), networks.build_decoder(config), config), models)
    params = {"seed": 1, "data_seed": 2, "batch_size": 16, "datasets": {"tiny": {"data": {"kind": "mnist"}}},
              "fid": {"network": "random", "image_size": 75, "batch_size": 16, "precision": "float32"}}
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1), dtype=np.uint8)
    extractor = build_feature_extractor("random", 75, seed=2)
    reference = folder / "reference.npz"
    save_reference(compute_reference(images, extractor, 16, seed=2, progress=False), reference)
    return models, reference, folder / "params.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, help="a trained model folder (the train stage's models/<dataset>)")
    parser.add_argument("--reference", type=Path, help="its reference statistics (data/reference/<dataset>.npz)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="the pipeline's params.yaml: seed, data_seed, batch_size and fid.*")
    parser.add_argument("--weights", help="the 2015 network's weights file (sets $VAELAB_FID_WEIGHTS)")
    parser.add_argument("--max-samples", type=int, default=10000, help="latent points drawn and scored")
    parser.add_argument("--sizes", default="2000,5000,10000", help="sample sizes n to score, each <= --max-samples")
    parser.add_argument("--smoke", action="store_true",
                        help="a check that the benchmark runs: an untrained tiny model, the random network at 75 px, "
                             "64 samples")
    args = parser.parse_args()
    from vaelab.core.cli import tensorflow_environment

    tensorflow_environment()  # the allocator a stage runs with, set before TensorFlow is imported
    if args.smoke:
        models, reference, params = smoke_inputs(Path(tempfile.mkdtemp(prefix="bench-fid-samples-")))
        args = parser.parse_args([*sys.argv[1:], "--models", str(models), "--reference", str(reference),
                                  "--params", str(params), "--max-samples", "64", "--sizes", "16,32,64"])
    if args.models is None or args.reference is None:
        parser.error("--models and --reference are required (a trained model folder and its reference "
                     "statistics), unless --smoke")
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    if sizes[0] < 2 or sizes[-1] > args.max_samples:
        parser.error(f"--sizes {args.sizes} must lie between 2 and --max-samples {args.max_samples}")
    if args.weights:
        os.environ["VAELAB_FID_WEIGHTS"] = os.path.abspath(args.weights)
    print(f"reproduce: python benchmarks/bench_fid_samples.py {' '.join(sys.argv[1:])}  (cpu cores: {os.cpu_count()})",
          flush=True)

    from vaelab.core.params import read_params, shared_params
    from vaelab.metrics.feature_stats import compute_activations
    from vaelab.metrics.features import build_feature_extractor, find_weights
    from vaelab.metrics.params import fid_params
    from vaelab.metrics.reference import check_reference, load_reference
    from vaelab.metrics.evaluation import generated_batches
    from vaelab.model import networks
    from vaelab.model.outputs import load_vae

    raw = read_params(args.params)
    params, fid = shared_params(raw), fid_params(raw)
    reference = load_reference(args.reference)
    weights = find_weights(fid.network, params.data_seed)
    extractor = build_feature_extractor(fid.network, fid.image_size, params.data_seed, fid.precision, weights)
    check_reference(reference, extractor.metadata, args.reference)
    vae = load_vae(args.models)
    z = networks.sample_prior(vae.config.latent_dim, args.max_samples, params.seed)
    batches = generated_batches(lambda start, count: networks.decode_uint8(vae, z[start:start + count],
                                                                           params.batch_size),
                                args.max_samples, fid.batch_size)
    start = time.perf_counter()
    features = np.concatenate(list(compute_activations(batches, extractor, fid.batch_size, total=args.max_samples,
                                                       description="prior sample features")))
    seconds = time.perf_counter() - start
    print(f"{fid.network} at {fid.image_size} px, {fid.precision}: features of {args.max_samples} prior samples of "
          f"{args.models} in {seconds:.0f} s ({args.max_samples / seconds:.1f} images/s); reference "
          f"{args.reference}: {reference.n} images; seed {params.seed}", flush=True)
    first = {}
    for n in sizes:
        first[n] = fid_of(features[:n], reference)
        line = f"n = {n:>6}: FID of the first n samples {first[n]:.3f}"
        sets = [fid_of(features[k * n:(k + 1) * n], reference) for k in range(args.max_samples // n)]
        if len(sets) > 1:
            line += (f"; {len(sets)} disjoint sets of n: mean {np.mean(sets):.3f} ± {np.std(sets, ddof=1):.3f} "
                     f"(min {min(sets):.3f}, max {max(sets):.3f})")
        print(line, flush=True)
    largest = sizes[-1]
    for n in sizes[:-1]:
        print(f"FID at n = {n} minus FID at n = {largest}: {first[n] - first[largest]:+.3f} "
              f"({100 * (first[n] - first[largest]) / first[largest]:+.1f}%)", flush=True)


if __name__ == "__main__":
    main()
