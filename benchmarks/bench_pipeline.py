"""The whole pipeline at a dataset's real size: wall time and peak memory of every stage.

Generates the dataset's canonical archives at full size (cached under ``--work``), with image
content that is not pure noise:

* ``mnist`` / ``fashion_mnist``: 60,000 + 10,000 idx images of 28x28, 2-4 random pen strokes each;
* ``cifar10``: 50,000 + 10,000 binary records of 32x32x3 smooth colour fields with texture;
* ``caltech101``: CaltechDATA's zip around ``101_ObjectCategories.tar.gz``: 101 classes (and
  ``BACKGROUND_Google``) of ~9,100 JPEGs from 120 to 500 px a side, 8% of them greyscale;

then copies the project into a temporary git repository, keeps only that dataset in the
committed ``params.yaml`` (every other param as committed; ``fid.network: random`` at 299 px,
which costs what the real network costs and needs no weights file), points
``VAELAB_DATA_MIRROR``/``VAELAB_SOURCES`` at the archives, and runs the real ``dvc repro`` one
stage at a time in DAG order (``dvc repro -s <stage>@<dataset>``), each in a child process whose
wall time and peak RSS (``ru_maxrss`` of the child and everything it waited for, from
``wait4``) it prints, then the whole ``dvc repro``, which must find nothing to do.

    python benchmarks/bench_pipeline.py --dataset mnist        # figures: docs/costs.md
    python benchmarks/bench_pipeline.py --dataset cifar10
    python benchmarks/bench_pipeline.py --dataset caltech101
    python benchmarks/bench_pipeline.py --smoke    # a minute: the benchmark runs (a test runs it)

Target: no stage of a default run needs more than ~4 GB.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("stages", "vaelab", "dvc.yaml", ".dvc/config", ".dvc/.gitignore", ".dvcignore", ".gitignore",
                 "params.yaml")
STAGES = ("download", "preprocess", "train", "fit_gmm", "fit_two_stage", "reference_stats", "score_prior", "score_gmm",
          "score_two_stage", "score_reconstructions", "evaluate", "plot")
MEMORY_TARGET_MB = 4096


def strokes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 uint8 images of 2-4 thick random strokes (digit-like, not noise) and labels 0-9."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images = np.empty((n, 28, 28), np.uint8)
    for i in range(n):
        canvas = Image.new("L", (28, 28), 0)
        draw = ImageDraw.Draw(canvas)
        points = rng.integers(5, 23, size=(int(rng.integers(4, 8)), 2))
        draw.line([tuple(map(int, p)) for p in points], fill=int(rng.integers(180, 256)), width=int(rng.integers(2, 5)))
        images[i] = np.asarray(canvas)
    return images, rng.integers(0, 10, n).astype(np.uint8)


def colour_fields(n: int, size: int, seed: int, block: int = 1000) -> np.ndarray:
    """n (size, size, 3) uint8 images: a random 4x4 colour grid, bilinearly upsampled, plus texture."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    t = np.linspace(0, 3, size)
    low = np.minimum(t.astype(int), 2)  # the grid cell each pixel falls in
    w = (t - low)[None, :, None, None]  # its weight towards the next cell
    for start in range(0, n, block):
        m = min(block, n - start)
        grid = rng.uniform(0, 255, (m, 4, 4, 3))
        rows = grid[:, low] * (1 - w) + grid[:, low + 1] * w  # (m, size, 4, 3)
        w_cols = w.transpose(0, 2, 1, 3)  # (1, 1, size, 1)
        fields = rows[:, :, low] * (1 - w_cols) + rows[:, :, low + 1] * w_cols  # (m, size, size, 3)
        out[start:start + m] = np.clip(fields + rng.normal(0, 12, fields.shape), 0, 255).astype(np.uint8)
    return out


def caltech_images(seed: int, per_class_mean: int = 90):
    # per_class_mean 90: about 101 * 90 = 9,100 images, Caltech101's size
    """(class, file, JPEG) of a Caltech101-shaped set: 101 classes + BACKGROUND_Google, mixed sizes and modes."""
    from PIL import Image

    from vaelab.data.kinds import KINDS

    rng = np.random.default_rng(seed)
    classes = [KINDS["caltech101"].drop_classes[0]] + [f"class_{k:03d}" for k in range(101)]
    for name in classes:
        for i in range(int(rng.integers(per_class_mean // 3, 2 * per_class_mean))):
            width, height = (int(v) for v in rng.integers(120, 501, size=2))
            small = rng.uniform(0, 255, (5, 5, 3)).astype(np.uint8)
            field = np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC), np.int16)
            pixels = np.clip(field + rng.normal(0, 10, (height, width, 3)), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels)
            if rng.random() < 0.08:  # Caltech101 holds some greyscale JPEGs
                image = image.convert("L")
            buffer = io.BytesIO()
            image.save(buffer, format="jpeg", quality=85)
            yield name, f"image_{i + 1:04d}.jpg", buffer.getvalue()


def write_archives(kind: str, folder: Path, scale: float = 1.0) -> list[Path]:
    """The canonical archives of ``kind`` at ``scale`` times the real size in ``folder`` (written
    once, then reused)."""
    from vaelab.data.dataset_files import write_caltech101_archive, write_cifar10_dataset, write_idx_dataset
    from vaelab.data.kinds import KINDS

    done = folder / ".complete"
    if done.exists():
        return [folder / name for name in done.read_text().split()]
    start = time.perf_counter()
    if kind in ("mnist", "fashion_mnist"):
        (x_train, y_train), (x_test, y_test) = strokes(round(60_000 * scale), 0), strokes(round(10_000 * scale), 1)
        paths = write_idx_dataset(folder, x_train, y_train, x_test, y_test)
    elif kind == "cifar10":
        rng = np.random.default_rng(2)
        n_train, n_test = round(50_000 * scale), round(10_000 * scale)
        paths = [write_cifar10_dataset(folder, colour_fields(n_train, 32, 0), rng.integers(0, 10, n_train),
                                       colour_fields(n_test, 32, 1), rng.integers(0, 10, n_test),
                                       KINDS["cifar10"].class_names)]
    elif kind == "caltech101":
        paths = [write_caltech101_archive(folder, caltech_images(0, max(3, round(90 * scale))))]
    else:
        raise SystemExit(f"--dataset {kind}: the benchmark generates mnist, fashion_mnist, cifar10 or caltech101")
    done.write_text(" ".join(p.name for p in paths))
    size = sum(p.stat().st_size for p in paths) / 2**20
    print(f"generated {', '.join(p.name for p in paths)} ({size:.0f} MB) in {time.perf_counter() - start:.0f} s",
          flush=True)
    return paths


SMOKE_PARAMS = {"epochs": 1, "batch_size": 32, "hidden_dim": 16, "conv": {"filters": [8, 16], "dropout": 0.0},
                "fid": {"network": "random", "num_samples": 32, "batch_size": 16, "image_size": 75,
                        "precision": "float32"},
                "gmm": {"components": 2}, "two_stage": {"epochs": 1, "width": 16, "learning_rate": 0.001},
                "plots": {"tsne": False, "num_latent_points": 64}}


def make_repo(repo: Path, dataset: str, quick: bool = False, smoke: bool = False) -> None:
    """A git repository holding the project, with only ``dataset`` in its committed params
    (``quick``: 2 epochs and 256 FID samples; ``smoke``: :data:`SMOKE_PARAMS`, seconds a stage,
    for a check that the benchmark itself runs)."""
    for name in PROJECT_FILES:
        source, target = PROJECT_ROOT / name, repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["datasets"] = {dataset: params["datasets"][dataset]}
    params["fid"]["network"] = "random"  # same cost as inception2015 at 299 px, no weights file needed
    if quick:
        params["epochs"], params["fid"]["num_samples"] = 2, 256
    if smoke:
        params.update(SMOKE_PARAMS)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.email=bench@vaelab.invalid", "-c", "user.name=bench",
                                                  "commit", "-qm", "project"]):
        subprocess.run(["git", *args], cwd=repo, check=True)


def timed(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[float, float, int]:
    """Run ``args``; (wall seconds, peak RSS MB of it and all it waited for, exit status)."""
    start = time.perf_counter()
    with open(log, "ab") as out:
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - start, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist", help="a dataset of params.yaml: mnist, fashion_mnist, cifar10, "
                                                           "caltech101")
    parser.add_argument("--scale", type=float, default=1.0, help="dataset size as a fraction of the real one")
    parser.add_argument("--quick", action="store_true", help="2 epochs and 256 FID samples: a smoke run")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "vaelab-bench-pipeline",
                        help="cache of the generated archives, and the run's repository")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated stages to time, run in DAG order (default: all of {','.join(STAGES)})")
    parser.add_argument("--smoke", action="store_true",
                        help="a check that the benchmark runs: --scale 0.002, tiny models and FID, a temporary --work")
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke and not args.generate_only:
        args = parser.parse_args([*sys.argv[1:], "--scale", "0.002", "--work",
                                  tempfile.mkdtemp(prefix="bench-pipeline-")])
    stages = [stage for stage in STAGES if stage in args.stages.split(",")]
    if unknown := set(args.stages.split(",")) - set(STAGES):
        raise SystemExit(f"--stages {args.stages}: unknown {', '.join(sorted(unknown))}; choose from {', '.join(STAGES)}")

    from vaelab.params import load_params

    kind = load_params(PROJECT_ROOT / "params.yaml").dataset(args.dataset).data.kind
    mirror = args.work / f"mirror-{args.scale:g}"
    if args.generate_only:
        write_archives(kind, mirror / kind, args.scale)
        return
    extra = ((f" --scale {args.scale}" if args.scale != 1.0 else "") + (" --quick" if args.quick else "")
             + (" --smoke" if args.smoke else "")
             + (f" --stages {','.join(stages)}" if stages != list(STAGES) else ""))
    print(f"reproduce: python benchmarks/bench_pipeline.py --dataset {args.dataset}{extra} --work {args.work}  "
          f"(cpu cores: {os.cpu_count()})", flush=True)

    from vaelab.data.download import local_source
    from vaelab.data.kinds import save_source_table

    # Generated in a child: on Linux a child's peak RSS starts from its parent's at fork, so this
    # process stays small and every stage's figure below is the stage's own.
    subprocess.run([sys.executable, __file__, "--dataset", args.dataset, "--scale", str(args.scale), "--work",
                    str(args.work), "--generate-only", *(["--smoke"] if args.smoke else [])], check=True)
    paths = write_archives(kind, mirror / kind, args.scale)  # the child's files, read back
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = save_source_table(args.work / "sources.json", {kind: tuple(local_source(p) for p in paths)})
    repo = args.work / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    make_repo(repo, args.dataset, args.quick, args.smoke)
    # dvc.yaml says `python`: make it this interpreter. A wrapper, not a symlink: a symlink to a
    # virtual environment's interpreter loses the environment (pyvenv.cfg is found beside the link).
    bin_dir = args.work / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "VAELAB_DATA_MIRROR": str(mirror), "VAELAB_SOURCES": str(table), "DVC_NO_ANALYTICS": "1"}
    log = args.work / f"{args.dataset}.log"
    log.write_text("")

    print(f"(a stage's peak RSS cannot read below this process's own {floor:.0f} MB, which its child starts from)",
          flush=True)
    total, largest = 0.0, 0.0
    for stage in stages:
        seconds, peak, status = timed([sys.executable, "-m", "dvc", "repro", "-s", f"{stage}@{args.dataset}"],
                                      repo, env, log)
        total, largest = total + seconds, max(largest, peak)
        print(f"{stage + '@' + args.dataset:28s} {seconds:8.1f} s   peak RSS {peak:7.0f} MB"
              f"{'' if status == 0 else f'   FAILED (exit {status}; see {log})'}", flush=True)
        if status != 0:
            raise SystemExit(1)
    if stages != list(STAGES):
        print(f"{'these stages':28s} {total:8.1f} s   largest peak {largest:.0f} MB", flush=True)
        return
    seconds, _, status = timed([sys.executable, "-m", "dvc", "repro"], repo, env, log)
    up_to_date = "Data and pipelines are up to date." in log.read_text()
    print(f"{'all stages':28s} {total:8.1f} s   largest peak {largest:.0f} MB (target <= {MEMORY_TARGET_MB} MB: "
          f"{'PASS' if largest <= MEMORY_TARGET_MB else 'FAIL'}); then `dvc repro`: "
          f"{'up to date' if up_to_date and status == 0 else 'NOT up to date'} ({seconds:.0f} s)", flush=True)
    with open(repo / "metrics" / f"{args.dataset}.json") as handle:
        print(f"metrics/{args.dataset}.json: {handle.read().strip()[:400]}...")


if __name__ == "__main__":
    main()
