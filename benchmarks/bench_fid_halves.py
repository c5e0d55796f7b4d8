"""FID between two halves of the real MNIST test digits: the floor a perfect model would score,
and what fid.precision bfloat16 does to it and to the speed.

Features of all 10,000 canonical t10k digits (28x28 grey, tiled to RGB by the network's input
path) are computed once per precision, streamed in batches; then FID between

* two random halves (5,000 / 5,000, split by a seeded permutation): one distribution, so the
  value is the finite-sample floor of FID at this size (a perfect generator scores about this);
* the first and second 5,000 (MNIST's test set was written by two different groups of people,
  so these differ by a little more than sampling).

    python benchmarks/bench_fid_halves.py --mnist ../shared/data/mnist-t10k \
        --weights ../shared/fid-inception-2015/default_1.pt

Prints FID for each split in float32 and bfloat16, their relative difference, and the features'
images/s under each precision (wall clock, whole pipeline). Also, in float32, the improved
precision and recall (k = 3) of 2,000 real digits against 2,000 others (as many points as the
proxy rows of docs/results.md use), and against 2,000 others blurred by a 3x3 box filter: what
real and blurry images score. With ``--prepared`` and ``--reference`` (a dataset's prepared file and its
reference statistics), also the metrics of its training images against that reference: what a
generator reproducing the training set would score in exactly the pipeline's setup.

    python benchmarks/bench_fid_halves.py --mnist ../shared/data/mnist-t10k \
        --prepared data/prepared/mnist.npz --reference data/reference/mnist.npz [--precisions none]
    python benchmarks/bench_fid_halves.py --smoke     # seconds: the benchmark runs (a test runs it)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def features_of(images: np.ndarray, network: str, precision: str, batch_size: int,
                image_size: int = 299) -> tuple[np.ndarray, float]:
    """float32 (N, 2048) features of ``images`` and the images/s it took."""
    from vaelab.metrics.feature_stats import compute_activations
    from vaelab.metrics.features import build_feature_extractor

    extractor = build_feature_extractor(network, image_size, seed=0, precision=precision)
    start = time.perf_counter()
    features = np.concatenate(list(compute_activations(images, extractor, batch_size,
                                                       description=f"{network} {precision}")))
    return features, len(images) / (time.perf_counter() - start)


def fid_between(a: np.ndarray, b: np.ndarray) -> float:
    from vaelab.metrics.distances import frechet_distance

    return frechet_distance(a.mean(0, dtype=np.float64), np.cov(a, rowvar=False),
                            b.mean(0, dtype=np.float64), np.cov(b, rowvar=False))


def precision_recall_anchors(images: np.ndarray, order: np.ndarray, network: str, batch_size: int,
                             points: int, image_size: int = 299) -> None:
    """Precision/recall of real digits against other real digits, sharp and 3x3-box-blurred."""
    from scipy.ndimage import uniform_filter

    from vaelab.metrics.precision_recall import precision_recall

    real, other = images[order[:points]], images[order[-points:]]
    blurred = np.clip(uniform_filter(other.astype(np.float32), size=(1, 3, 3, 1)), 0, 255).astype(np.uint8)
    features = {name: features_of(x, network, "float32", batch_size, image_size)[0]
                for name, x in (("real", real), ("other", other), ("blurred", blurred))}
    for name in ("other", "blurred"):
        p, r = precision_recall(features["real"], features[name])
        label = "other real digits" if name == "other" else "other real digits, 3x3 box blur"
        print(f"{network}: precision {p:.3f}, recall {r:.3f} (k = 3) of {points} {label} against {points} real digits",
              flush=True)


def training_images_against_reference(prepared: Path, reference_path: Path, network: str, batch_size: int,
                                      seed: int, image_size: int = 299, count: int | None = None) -> None:
    """FID, KID, precision and recall of a prepared dataset's training images (``count`` of them,
    drawn without replacement by ``seed``; all when None) against its reference statistics, as the
    score stages compute them for samples: the floor a perfect generator would reach."""
    from vaelab.core.prepared import load_prepared
    from vaelab.metrics.evaluation import sample_metrics
    from vaelab.metrics.reference import FEATURE_SAMPLE_SIZE, check_reference, load_reference
    from vaelab.metrics.feature_stats import compute_statistics
    from vaelab.metrics.features import build_feature_extractor

    reference = load_reference(reference_path)
    extractor = build_feature_extractor(network, image_size, seed=seed)
    check_reference(reference, extractor.metadata, reference_path)
    x_train = load_prepared(prepared).x_train
    if count is not None and count < len(x_train):
        x_train = x_train[np.sort(np.random.default_rng(seed).choice(len(x_train), count, replace=False))]
    stats = compute_statistics(x_train, extractor, batch_size, keep=FEATURE_SAMPLE_SIZE, seed=seed,
                               description="training images")
    metrics = sample_metrics(stats, reference, seed, {})
    print(f"{network}: the {stats.n} training images of {prepared} against its {reference.n}-image reference: "
          + ", ".join(f"{key} {value:.4f}" for key, value in metrics.items()), flush=True)


def smoke_digits() -> Path:
    """A temporary folder with a canonical t10k-images-idx3-ubyte.gz of 64 random 28x28 digits."""
    import tempfile

    from vaelab.data.dataset_files import write_idx_dataset

    folder = Path(tempfile.mkdtemp(prefix="bench-fid-halves-"))
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), rng.integers(0, 10, 64, dtype=np.uint8)
    write_idx_dataset(folder, x[:8], y[:8], x, y)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, help="folder with t10k-images-idx3-ubyte.gz (required unless --smoke)")
    parser.add_argument("--image-size", type=int, default=299, help="network input size (299 for inception2015)")
    parser.add_argument("--smoke", action="store_true",
                        help="a check that the benchmark runs: 64 generated digits in a temporary idx file, the "
                             "random network at 75 px")
    parser.add_argument("--weights", help="the 2015 network's weights file (sets $VAELAB_FID_WEIGHTS)")
    parser.add_argument("--network", default="inception2015")
    parser.add_argument("--images", type=int, default=10000, help="use the first N digits (even)")
    parser.add_argument("--precisions", default="float32,bfloat16",
                        help="precisions of the halves' FID; 'none' skips the halves and the precision/recall anchors "
                             "(with --prepared: the training images' floor alone)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pr-points", type=int, default=2000, help="points per set for precision/recall")
    parser.add_argument("--prepared", type=Path, help="a prepared .npz: score its training images against --reference")
    parser.add_argument("--reference", type=Path, help="the reference statistics of that dataset")
    parser.add_argument("--floor-images", type=int, help="score this many training images, drawn by --pipeline-seed "
                                                         "(default: all; the papers' floor: 10000)")
    parser.add_argument("--pipeline-seed", type=int, default=42, help="the seed the pipeline ran with (params.yaml)")
    args = parser.parse_args()
    if args.smoke:
        args = parser.parse_args([*sys.argv[1:], "--network", "random", "--image-size", "75", "--images", "64",
                                  "--batch-size", "16", "--pr-points", "16", "--mnist", str(smoke_digits())])
    if args.mnist is None:
        parser.error("--mnist is required (a folder with MNIST's t10k-images-idx3-ubyte.gz), unless --smoke")
    if args.precisions == "none" and not (args.prepared and args.reference):
        parser.error("--precisions none skips the halves: give --prepared and --reference, whose floor is then all "
                     "it computes")
    if args.weights:
        os.environ["VAELAB_FID_WEIGHTS"] = os.path.abspath(args.weights)
    from vaelab.core.cli import tensorflow_environment

    tensorflow_environment()  # the allocator a stage runs with
    print(f"reproduce: python benchmarks/bench_fid_halves.py {' '.join(sys.argv[1:])}  (cpu cores: {os.cpu_count()})",
          flush=True)

    from vaelab.data.preprocess import IDX_IMAGES_MAGIC, read_idx

    # (N, 28, 28) idx digits -> (N, 28, 28, 1) images
    images = read_idx(args.mnist / "t10k-images-idx3-ubyte.gz", IDX_IMAGES_MAGIC, "mnist")[: args.images, :, :, None]
    half = len(images) // 2
    order = np.random.default_rng(args.seed).permutation(len(images))
    splits = {"random halves": (order[:half], order[half:2 * half]),
              "first vs second half": (np.arange(half), np.arange(half, 2 * half))}
    results: dict[str, dict[str, float]] = {}
    speed: dict[str, float] = {}
    for precision in ([] if args.precisions == "none" else args.precisions.split(",")):
        features, speed[precision] = features_of(images, args.network, precision, args.batch_size, args.image_size)
        results[precision] = {name: fid_between(features[a], features[b]) for name, (a, b) in splits.items()}
        for name, value in results[precision].items():
            print(f"{args.network} {precision}: FID {name} ({half} vs {half} real test digits) = {value:.4f}",
                  flush=True)
        print(f"{args.network} {precision}: {speed[precision]:.1f} images/s (features of {len(images)} digits)",
              flush=True)
    if "float32" in results:
        precision_recall_anchors(images, order, args.network, args.batch_size, args.pr_points, args.image_size)
    if args.prepared and args.reference:
        training_images_against_reference(args.prepared, args.reference, args.network, args.batch_size,
                                          args.pipeline_seed, args.image_size, args.floor_images)
    if {"float32", "bfloat16"} <= set(results):
        for name in splits:
            f32, bf16 = results["float32"][name], results["bfloat16"][name]
            print(f"bfloat16 vs float32, {name}: {bf16:.4f} vs {f32:.4f} = {100 * (bf16 - f32) / f32:+.2f}%", flush=True)
        print(f"bfloat16 speed: {speed['bfloat16'] / speed['float32']:.2f}x float32", flush=True)


if __name__ == "__main__":
    main()
