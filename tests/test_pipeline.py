"""End to end: the real `dvc` CLI on a temporary git copy of the project, fed tiny generated
archives through the offline mirror and a test source table (their own real checksums).

Asserts what DVC prints and writes: `dvc repro` runs every stage, `dvc exp run -S
latent_dim=3` re-runs only training and what follows it, `dvc metrics diff` shows FID moving,
and `dvc plots show` writes its HTML page with the declared plots. And, on the project's own
params.yaml with every dataset (stand-in outputs recorded by `dvc commit`, nothing trained),
which stages `dvc status` finds stale after each kind of knob change.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests import archive_factory
from tests.conftest import PROJECT_ROOT, tiny_params

pytestmark = pytest.mark.slow

# What a user's checkout holds: everything git tracks that the pipeline needs.
PROJECT_FILES = ("stages", "vaelab", "scripts", "dvc.yaml", ".dvc/config", ".dvc/.gitignore", ".dvcignore", ".gitignore")


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} failed ({result.returncode}):\n{output[-4000:]}"
    return output


def _dvc(*args: str, cwd: Path, env: dict[str, str]) -> str:
    return _run([sys.executable, "-m", "dvc", *args], cwd, env)


def _git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    return _run(["git", *args], cwd, env)


def _copy_project(repo: Path) -> None:
    for name in PROJECT_FILES:
        source = PROJECT_ROOT / name
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A git repo holding a copy of the project with tiny params, and the env pointing at a generated mirror."""
    repo = tmp_path / "repo"
    _copy_project(repo)
    params = tiny_params()
    # MNIST's own epochs go, so that the seed sweep below can add them back with `+`.
    params["datasets"]["mnist"]["model"].pop("epochs")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    mirror = tmp_path / "mirror"
    files = archive_factory.write_mnist_like(mirror, n_train=96, n_test=48, seed=0)
    table = archive_factory.write_source_table(tmp_path / "sources.json", {"mnist": files})

    # dvc.yaml's commands say `python`: make it the interpreter running the tests, whatever
    # `python` on PATH is. A wrapper, not a symlink: a symlink to a virtual environment's
    # interpreter loses the environment (pyvenv.cfg is looked up beside the link).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    wrapper.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "VAELAB_DATA_MIRROR": str(mirror),
        "VAELAB_SOURCES": str(table),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "DVC_NO_ANALYTICS": "1",
    }
    _git("init", "-q", cwd=repo, env=env)
    _git("add", "-A", cwd=repo, env=env)
    _git("commit", "-qm", "project", cwd=repo, env=env)
    return repo, env


def test_repro_exp_run_metrics_diff_and_plots(project):
    repo, env = project

    out = _dvc("repro", cwd=repo, env=env)
    for stage in ("download", "preprocess", "train", "fit_gmm", "fit_two_stage", "reference_stats", "score_prior", "score_gmm",
                  "score_two_stage", "score_reconstructions", "evaluate", "plot"):
        assert f"Running stage '{stage}@mnist'" in out

    with np.load(repo / "data/prepared/mnist.npz") as prepared:
        assert prepared["x_train"].shape == (96, 28, 28, 1) and prepared["x_train"].dtype == np.uint8
        assert prepared["x_test"].shape == (48, 28, 28, 1)
        assert list(prepared["class_names"]) == [str(d) for d in range(10)]
    assert {p.name for p in (repo / "models/mnist").iterdir()} >= {"encoder.keras", "decoder.keras"}
    history = (repo / "plots/mnist/history.csv").read_text().splitlines()
    assert history[0].split(",")[0] == "epoch" and len(history) == 1 + 2
    metrics = json.loads((repo / "metrics/mnist.json").read_text())
    for sampler in ("prior", "gmm", "two_stage"):
        for key in ("fid", "kid", "precision", "recall"):
            assert np.isfinite(metrics[sampler][key]), (sampler, key)
    for key in ("elbo", "reconstruction", "kl"):
        assert np.isfinite(metrics["test"][key]), key
    assert np.isfinite(metrics["reconstruction"]["fid"]) and metrics["prior"]["fid"] > 0
    assert metrics["test"]["elbo"] < 0  # a log-likelihood bound of 784 pixels
    provenance = json.loads((repo / "metrics/mnist.provenance.json").read_text())
    assert provenance["feature_network"] == "random" and provenance["fid_num_samples"] == 64
    images = {p.name for p in (repo / "plots/mnist/images").iterdir()}
    assert {"loss_curves.png", "samples.png", "samples_gmm.png", "samples_two_stage.png", "reconstructions.png",
            "progress.gif"} <= images

    # A second repro has nothing to do.
    assert "Data and pipelines are up to date." in _dvc("repro", cwd=repo, env=env)

    # A change to one kind's sources re-runs that kind's downloads only: another kind's file is
    # no dep here, and MNIST's is a dep of download@mnist alone.
    sources = repo / "vaelab/data/sources"
    with (sources / "cifar10.toml").open("a") as handle:
        handle.write("# a new comment\n")
    assert "Data and pipelines are up to date." in _dvc("status", cwd=repo, env=env)
    with (sources / "mnist.toml").open("a") as handle:
        handle.write("# a new comment\n")
    status = json.loads(_dvc("status", "--json", cwd=repo, env=env))
    assert list(status) == ["download@mnist"], status
    assert status["download@mnist"] == [{"changed deps": {"vaelab/data/sources/mnist.toml": "modified"}}], status
    _git("checkout", "--", "vaelab/data/sources", cwd=repo, env=env)

    _git("add", "-A", cwd=repo, env=env)
    _git("commit", "-qm", "baseline", cwd=repo, env=env)

    out = _dvc("exp", "run", "-S", "latent_dim=3", cwd=repo, env=env)
    for stage in ("download", "preprocess", "reference_stats"):
        assert f"Stage '{stage}@mnist' didn't change, skipping" in out, out[-3000:]
    for stage in ("train", "fit_gmm", "fit_two_stage", "score_prior", "score_gmm", "score_two_stage",
                  "score_reconstructions", "evaluate", "plot"):
        assert f"Running stage '{stage}@mnist'" in out

    diff = _dvc("metrics", "diff", "--json", cwd=repo, env=env)
    changed = json.loads(diff)["metrics/mnist.json"]
    assert "prior.fid" in changed and changed["prior.fid"]["diff"] != 0
    # Every sampler's metrics, side by side in `dvc metrics diff --all` (which also lists the
    # unchanged ones), and no provenance strings among them.
    every = json.loads(_dvc("metrics", "diff", "--all", "--json", cwd=repo, env=env))["metrics/mnist.json"]
    assert {f"{sampler}.{key}" for sampler in ("prior", "gmm", "two_stage") for key in ("fid", "kid", "precision", "recall")} \
        <= set(every)
    assert not any("feature" in key or "weights" in key for key in every), sorted(every)
    assert every["gmm.fid"]["old"] == pytest.approx(metrics["gmm"]["fid"]) and every["prior.fid"] == changed["prior.fid"]
    assert changed["prior.fid"]["old"] == pytest.approx(metrics["prior"]["fid"])

    exp_diff = _dvc("exp", "diff", cwd=repo, env=env)
    assert "latent_dim" in exp_diff and "prior.fid" in exp_diff

    # The sweep figure from real `dvc exp show --json` output: the baseline (2) and the experiment (3).
    out = _run([sys.executable, "-m", "scripts.plot_sweep", "--param", "latent_dim", "--metrics",
                "prior.fid,gmm.fid,prior.precision,prior.recall", "--out", "sweep.png"], repo, env)
    rows = [line.split() for line in out.splitlines()[1:-1]]
    assert sorted(int(row[1]) for row in rows) == [2, 3], out
    assert (repo / "sweep.png").stat().st_size > 10_000

    # A sampler's own knob re-fits and re-scores that sampler alone; the other samplers' numbers,
    # from their stages' cache, stay to the last digit.
    before = json.loads((repo / "metrics/mnist.json").read_text())
    out = _dvc("exp", "run", "-S", "two_stage.epochs=2", cwd=repo, env=env)
    for stage in ("reference_stats", "train", "fit_gmm", "score_prior", "score_gmm", "score_reconstructions"):
        assert f"Stage '{stage}@mnist' didn't change, skipping" in out, out[-3000:]
    for stage in ("fit_two_stage", "score_two_stage", "evaluate", "plot"):
        assert f"Running stage '{stage}@mnist'" in out
    after = json.loads((repo / "metrics/mnist.json").read_text())
    assert {key: after[key] for key in ("prior", "gmm", "reconstruction", "test")} == \
        {key: before[key] for key in ("prior", "gmm", "reconstruction", "test")}
    assert after["two_stage"]["fid"] != before["two_stage"]["fid"]

    # Error bars: a seed sweep re-runs training and after, never the data stages or the reference
    # statistics, and ends in mean ± std per metric. Its `+` adds a key that params.yaml lacks (MNIST's
    # own epochs, which the top-level 2 replaces anyway), which DVC then applies to the workspace: the second seed must start from the sweep's params again.
    out = _run([sys.executable, "-m", "scripts.seed_sweep", "--seeds", "5,6", "--metrics", "prior.fid,test.elbo",
                "-S", "+datasets.mnist.model.epochs=2", "--targets", "evaluate@mnist"], repo, env)
    for stage in ("download", "preprocess", "reference_stats"):
        assert out.count(f"Stage '{stage}@mnist' didn't change, skipping") == 2, out[-3000:]
    assert out.count("Running stage 'train@mnist'") == 2
    summary = [line for line in out.splitlines() if "(mean ± std over 2 seeds)" in line]
    assert [line.split(":")[0] for line in summary] == ["prior.fid", "test.elbo"], out[-2000:]

    _dvc("plots", "show", "-o", "report", cwd=repo, env=env)
    html = (repo / "report/index.html").read_text()
    assert "plots/mnist/history.csv" in html
    assert "progress.gif" in html and "samples.png" in html


def _stage_paths(dvc_yaml: dict, params: dict) -> set[str]:
    """Every dep and out that dvc.yaml's stages name, for every dataset of ``params``."""
    paths = set()
    for stage in dvc_yaml["stages"].values():
        for name, entry in params["datasets"].items():
            for path in [*stage["do"].get("deps", []), *stage["do"].get("outs", []), *stage["do"].get("metrics", [])]:
                path = path if isinstance(path, str) else next(iter(path))
                paths.add(path.replace("${key}", name).replace("${item.data.kind}", entry["data"]["kind"]))
    return paths


@pytest.fixture
def locked_project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A git copy of the project with its own params.yaml (every dataset), every stage's data
    deps and outs stood in by small files and recorded in dvc.lock by `dvc commit`: `dvc status`
    then compares params as after a real run, without one."""
    repo = tmp_path / "repo"
    _copy_project(repo)
    shutil.copy2(PROJECT_ROOT / "params.yaml", repo / "params.yaml")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}
    _git("init", "-q", cwd=repo, env=env)
    _git("add", "-A", cwd=repo, env=env)
    _git("commit", "-qm", "project", cwd=repo, env=env)
    for path in _stage_paths(yaml.safe_load((repo / "dvc.yaml").read_text()),
                             yaml.safe_load((repo / "params.yaml").read_text())):
        target = repo / path
        if target.exists():
            continue
        if target.suffix in (".npz", ".json", ".csv"):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path)
        else:
            target.mkdir(parents=True)
            (target / "stand-in").write_text(path)
    _dvc("commit", "--force", "--quiet", cwd=repo, env=env)
    return repo, env


# (what `-S` sets, the stages it must make stale, the effective (latent_dim, epochs) per dataset)
OWN = {"mnist": (16, 5), "fashion_mnist": (16, 5), "cifar10": (64, 6), "caltech101": (64, 35)}
KNOB_CHANGES = [
    ({"latent_dim": 10}, {"train"}, {name: (10, epochs) for name, (_, epochs) in OWN.items()}),
    ({"epochs": 3}, {"train"}, {name: (latent, 3) for name, (latent, _) in OWN.items()}),
    ({"datasets.mnist.model.latent_dim": 8}, {"train@mnist"}, {**OWN, "mnist": (8, 5)}),
    ({"datasets.cifar10.model.epochs": 9}, {"train@cifar10"}, {**OWN, "cifar10": (64, 9)}),
    ({"two_stage.epochs": 20}, {"fit_two_stage"}, OWN),
    ({"gmm.components": 5}, {"fit_gmm"}, OWN),
    ({"fid.num_samples": 10000}, {"score_prior", "score_gmm", "score_two_stage", "score_reconstructions"}, OWN),
    ({"seed": 1}, {"train", "fit_gmm", "fit_two_stage", "score_prior", "score_gmm", "score_two_stage",
                   "score_reconstructions", "plot"}, OWN),
]


@pytest.mark.parametrize("change, stale, effective", KNOB_CHANGES, ids=lambda v: str(v) if isinstance(v, dict) and
                         len(v) == 1 else None)
def test_a_knob_makes_stale_only_the_stages_it_changes(locked_project, change, stale, effective):
    """A top-level latent_dim or epochs means every dataset (and each train stage re-runs); a
    dataset's own value moves that dataset alone; a sampler or FID knob leaves training alone."""
    from vaelab.params import load_params

    repo, env = locked_project
    assert json.loads(_dvc("status", "--json", cwd=repo, env=env)) == {}
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in change.items():  # as `dvc exp run -S dotted=value` writes it
        *parents, leaf = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[leaf] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    resolved = load_params(repo / "params.yaml")
    assert {name: (entry.model.latent_dim, entry.train.epochs) for name, entry in resolved.datasets.items()} == effective

    status = json.loads(_dvc("status", "--json", cwd=repo, env=env))
    expected = {stage if "@" in stage else f"{stage}@{name}" for stage in stale
                for name in (OWN if "@" not in stage else [None])}
    assert set(status) == expected, status
    for entry in status.values():
        assert list(entry) == [{"changed deps": {"params.yaml": entry[0]["changed deps"]["params.yaml"]}}]
