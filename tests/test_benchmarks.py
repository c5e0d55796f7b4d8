"""Every benchmark runs, in its smoke mode: a refactor that breaks one fails here, not months later.

Each script is run as a user runs it (``python benchmarks/<name>.py --smoke``, from the project
root) and must exit 0, print the command that reproduces it, and print the figures it exists
for. The smoke sizes say nothing about speed; the figures themselves come from full runs (docs/costs.md).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

# Each benchmark and lines its smoke run must print (substrings).
BENCHMARKS = {
    "bench_features": ["reproduce: python benchmarks/bench_features.py --smoke",
                       "(b) growth from N = 8 to 16", "(a) before ", "(a) after ", "(a) after/before pipeline:",
                       "GFLOP/s", "features after vs before:", "(a) bfloat16 bare pass"],
    "bench_fid_halves": ["reproduce: python benchmarks/bench_fid_halves.py --smoke",
                         "random float32: FID random halves (32 vs 32 real test digits) =",
                         "random bfloat16: FID first vs second half", "bfloat16 speed:", "precision", "recall"],
    "bench_fid_samples": ["reproduce: python benchmarks/bench_fid_samples.py --smoke",
                          "features of 64 prior samples", "n =     16: FID of the first n samples",
                          "4 disjoint sets of n: mean", "FID at n = 32 minus FID at n = 64:"],
    "bench_train": ["reproduce: python benchmarks/bench_train.py --smoke", "reference Keras example conv VAE",
                    "ours, same architecture, float32", "XLA", "ours, default params, MNIST mlp",
                    "ours, default params, CIFAR-10 conv", "ours, default params, MNIST infogan",
                    "two-stage sampler (two_stage params as committed", "allocator, default params, MNIST conv",
                    "pooled (BFC)"],
    "bench_preprocess": ["image folder: 24 JPEGs -> 64x64", "idx files: 600 + 100 images",
                         "reproduce: python3 benchmarks/bench_preprocess.py --smoke"],
    "bench_pipeline": ["reproduce: python benchmarks/bench_pipeline.py --dataset mnist --scale 0.002 --smoke",
                       "download@mnist", "train@mnist", "reference_stats@mnist", "evaluate@mnist", "plot@mnist",
                       "then `dvc repro`: up to date", "metrics/mnist.json:"],
}


def test_every_benchmark_is_covered() -> None:
    assert sorted(p.stem for p in (PROJECT_ROOT / "benchmarks").glob("bench_*.py")) == sorted(BENCHMARKS)


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_benchmark_smoke(name: str) -> None:
    result = subprocess.run([sys.executable, f"benchmarks/{name}.py", "--smoke"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{name} --smoke failed ({result.returncode}):\n{output[-4000:]}"
    missing = [line for line in BENCHMARKS[name] if line not in output]
    assert not missing, f"{name} --smoke did not print {missing}:\n{output[-4000:]}"


@pytest.mark.parametrize("mode", ["quick", "smoke"])
def test_bench_pipeline_short_modes_train_the_short_epochs(tmp_path, mode: str) -> None:
    """A dataset's own epochs (Caltech101's 35) must not outlast --quick's 2 or --smoke's 1: the
    top-level number replaces them."""
    import importlib.util

    import yaml

    spec = importlib.util.spec_from_file_location("bench_pipeline", PROJECT_ROOT / "benchmarks" / "bench_pipeline.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.make_repo(tmp_path, "caltech101", **{mode: True})
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert list(params["datasets"]) == ["caltech101"]
    assert params["epochs"] == {"quick": 2, "smoke": 1}[mode]
    from vaelab.params import load_params

    assert load_params(tmp_path / "params.yaml").dataset("caltech101").train.epochs == params["epochs"]
