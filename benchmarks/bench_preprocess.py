"""Benchmark the preprocess stage: a Caltech101-sized image folder and MNIST-sized idx files.

    python3 benchmarks/bench_preprocess.py [--images 9000] [--size 64] [--cache /tmp/vaelab-bench-preprocess]
    python3 benchmarks/bench_preprocess.py --smoke     # seconds: the benchmark runs (a test runs it)

1. Generates (once; cached under ``--cache``) about 9,000 JPEGs of random sizes 200-400 px
   per side (mean about 300x300, a little larger than Caltech101's typical 300x200, so the
   figure is conservative; smooth colour fields plus texture noise, so they compress like
   photos) in 101 class folders, and runs the real stage CLI
   ``python -m stages.preprocess`` on it as an ``image_folder`` dataset resized to ``--size``.
   Targets (issue 2): under 60 s wall time on 2 cores, peak RSS under 1.5 GB.
2. Generates MNIST-sized idx ``.gz`` files (60,000 train + 10,000 test) and runs the stage
   on them as ``mnist``. Target: under 10 s.

Each run is a child process, so its wall time includes interpreter start-up, decoding and
writing the compressed ``.npz``; peak RSS is the child's ``ru_maxrss`` (from ``wait4``).
Prints the figures and the command that reproduces them.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _make_jpegs(job: tuple[Path, int, int, int]) -> int:
    """Write ``count`` JPEGs into ``folder``; returns bytes written."""
    from PIL import Image

    folder, count, seed, _ = job
    rng = np.random.default_rng(seed)
    noise = rng.integers(-20, 21, size=(420, 420, 3), dtype=np.int16)
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for i in range(count):
        width, height = (int(v) for v in rng.integers(200, 401, size=2))
        colours = rng.integers(0, 256, size=(5, 5, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(colours).resize((width, height), Image.Resampling.BICUBIC), np.int16)
        dy, dx = (int(v) for v in rng.integers(0, 20, size=2))
        pixels = np.clip(base + noise[dy:dy + height, dx:dx + width], 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="jpeg", quality=85)
        (folder / f"image_{i + 1:04d}.jpg").write_bytes(buffer.getvalue())
        written += buffer.tell()
    return written


def caltech_like_folder(cache: Path, n_images: int, n_classes: int = 101, seed: int = 0) -> Path:
    """The cached folder of ``n_images`` JPEGs in ``n_classes`` class folders (generated once)."""
    folder = cache / f"caltech_like_{n_images}_{n_classes}_{seed}"
    marker = folder / ".complete"
    if marker.is_file():
        return folder
    print(f"generating {n_images} JPEGs in {folder} (cached for later runs) ...", flush=True)
    start = time.perf_counter()
    # Caltech101's classes are uneven (31 to 800 images); draw sizes to match that spread.
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.5, n_classes) + 0.3
    counts = np.maximum(1, np.floor(weights / weights.sum() * n_images)).astype(int)
    counts[np.argmax(counts)] += n_images - counts.sum()
    jobs = [(folder / f"class_{k:03d}", int(c), seed * 1000 + k, k) for k, c in enumerate(counts)]
    with multiprocessing.Pool(max(1, min(4, os.cpu_count() or 1))) as pool:
        total = sum(pool.map(_make_jpegs, jobs))
    marker.write_text(f"{n_images}\n")
    print(f"  {n_images} JPEGs, {total / n_images / 1024:.1f} KiB each on average, "
          f"in {time.perf_counter() - start:.0f} s", flush=True)
    return folder


def mnist_sized_folder(cache: Path, n_train: int = 60_000, n_test: int = 10_000) -> Path:
    """Cached MNIST-sized idx files (``n_train`` / ``n_test``): digit-like content, a bright blob
    on a black ground (mostly zeros, so the files compress as MNIST's do)."""
    from vaelab.data.dataset_files import write_idx_dataset

    folder = cache / f"mnist_like_{n_train}_{n_test}"
    if not (folder / ".complete").is_file():
        print(f"generating MNIST-sized idx files in {folder} ...", flush=True)
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[:28, :28]

        def digits(n: int) -> np.ndarray:
            centre = rng.uniform(9, 19, (n, 2, 1, 1))
            radius = rng.uniform(4, 8, (n, 1, 1))
            inside = (yy - centre[:, 0]) ** 2 + (xx - centre[:, 1]) ** 2 < radius ** 2
            return np.where(inside, rng.integers(128, 256, (n, 28, 28)), 0).astype(np.uint8)

        write_idx_dataset(folder, digits(n_train), rng.integers(0, 10, n_train), digits(n_test),
                          rng.integers(0, 10, n_test))
        (folder / ".complete").write_text(f"{n_train} {n_test}\n")
    return folder


def run_stage(dataset: str, raw: Path, out: Path, params: Path) -> tuple[float, float]:
    """Run the preprocess stage CLI in a child; (wall seconds, peak RSS in MiB)."""
    command = [sys.executable, "-m", "stages.preprocess", "--dataset", dataset, "--raw", str(raw),
               "--out", str(out), "--params", str(params)]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=PROJECT_ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"stage failed with exit status {process.returncode}: {shlex.join(command)}")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=9000, help="JPEGs in the Caltech-like folder")
    parser.add_argument("--size", type=int, default=64, help="image_size to resize to")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "vaelab-bench-preprocess",
                        help="where generated inputs are kept between runs")
    parser.add_argument("--skip-mnist", action="store_true", help="only the image-folder benchmark")
    parser.add_argument("--classes", type=int, default=101, help="class folders of the Caltech-like folder")
    parser.add_argument("--mnist-images", default="60000,10000", help="train,test images of the idx files")
    parser.add_argument("--smoke", action="store_true", help="a check that the benchmark runs: 24 JPEGs in 3 classes, "
                                                             "600 + 100 idx images, in a temporary cache")
    args = parser.parse_args()
    if args.smoke:
        args = parser.parse_args([*sys.argv[1:], "--images", "24", "--classes", "3", "--mnist-images", "600,100", "--cache",
                                  tempfile.mkdtemp(prefix="bench-preprocess-")])
    n_train, n_test = (int(n) for n in args.mnist_images.split(","))

    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    folder = caltech_like_folder(cache, args.images, args.classes)
    with tempfile.TemporaryDirectory(prefix="vaelab-bench-") as tmp:
        tmp = Path(tmp)
        params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
        params["datasets"] = {
            "bench_folder": {"data": {"kind": "image_folder", "path": str(folder), "image_size": args.size,
                                      "test_fraction": 0.2}},
            "mnist": {"data": {"kind": "mnist"}},
        }
        params_path = tmp / "params.yaml"
        params_path.write_text(yaml.safe_dump(params))

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"machine: {cores} usable cores, python {sys.version.split()[0]}", flush=True)
        wall, rss = run_stage("bench_folder", folder, tmp / "bench_folder.npz", params_path)
        size_mb = (tmp / "bench_folder.npz").stat().st_size / 2**20
        ok = wall < 60 and rss < 1536
        print(f"image folder: {args.images} JPEGs -> {args.size}x{args.size}: {wall:.1f} s wall, "
              f"peak RSS {rss:.0f} MiB, output {size_mb:.0f} MiB  (targets < 60 s, < 1536 MiB: "
              f"{'PASS' if ok else 'FAIL'})")
        if not args.skip_mnist:
            mnist = mnist_sized_folder(cache, n_train, n_test)
            wall_m, rss_m = run_stage("mnist", mnist, tmp / "mnist.npz", params_path)
            print(f"idx files: {n_train:,} + {n_test:,} images -> {wall_m:.1f} s wall, peak RSS {rss_m:.0f} MiB  "
                  f"(target < 10 s: {'PASS' if wall_m < 10 else 'FAIL'})")
    print("reproduce: python3 benchmarks/bench_preprocess.py " + shlex.join(sys.argv[1:]))


if __name__ == "__main__":
    main()
