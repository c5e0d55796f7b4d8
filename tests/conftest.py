"""Shared fixtures and the registered markers.

Markers:
  slow: drives the CLI (dvc, stage scripts); deselect with -m "not slow".
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = PROJECT_ROOT.parent / "shared" / "data" / "mnist-t10k"
SHARED_INCEPTION = PROJECT_ROOT.parent / "shared" / "fid-inception-2015"

# Quiet TensorFlow's C++ start-up chatter in test output; set before any test imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: drives the CLI (dvc, stage scripts); deselect with -m 'not slow'")


@pytest.fixture
def shared_mnist() -> Path:
    """The real MNIST test set beside the checkout, or a skip saying why it is absent."""
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST test set not found at {SHARED_MNIST} (it lives in ../shared beside the checkout)")
    return SHARED_MNIST


@pytest.fixture(scope="session")
def shared_inception() -> Path:
    """The FID Inception weights (default_1.pt) and golden features beside the checkout, or a skip
    saying why they are absent."""
    if not (SHARED_INCEPTION / "default_1.pt").is_file() or not (SHARED_INCEPTION / "golden.npz").is_file():
        pytest.skip(f"FID Inception weights and golden features not found at {SHARED_INCEPTION} "
                    f"(default_1.pt and golden.npz live in ../shared beside the checkout)")
    return SHARED_INCEPTION


def tiny_params(**overrides: Any) -> dict:
    """The project's params.yaml (so every key a stage reads is there), shrunk for tests: MNIST
    only, tiny models, 2 epochs, the seeded random Inception at its smallest input, few FID
    samples, a 3-component mixture. ``overrides`` replace top-level keys; a mapping given for a
    section (``fid={...}``) updates that section, except ``datasets``, which it replaces."""
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params.update(seed=7, data_seed=7, latent_dim=2, hidden_dim=16, epochs=2, batch_size=32)
    params["datasets"] = {"mnist": params["datasets"]["mnist"]}
    params["conv"] = {"filters": [8, 16], "dropout": 0.0}
    params["fid"] = {"network": "random", "num_samples": 64, "batch_size": 32, "image_size": 75, "precision": "float32"}
    params["gmm"] = {"components": 3}
    params["two_stage"] = {"epochs": 1, "width": 16, "learning_rate": 0.001}
    params["plots"] = {"tsne": False, "num_latent_points": 64}
    for key, value in overrides.items():
        if isinstance(value, dict) and key != "datasets" and isinstance(params.get(key), dict):
            params[key] = {**params[key], **value}
        else:
            params[key] = value
    return params


@pytest.fixture
def write_params(tmp_path: Path) -> Callable[..., Path]:
    """``write_params(**overrides)`` writes :func:`tiny_params` to a new file under tmp_path; returns its path."""
    count = itertools.count()

    def write(**overrides: Any) -> Path:
        path = tmp_path / f"params-{next(count)}.yaml"
        path.write_text(yaml.safe_dump(tiny_params(**overrides), sort_keys=False))
        return path

    return write
