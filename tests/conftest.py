"""Shared fixtures and the registered markers.

Markers:
  slow: drives the CLI (dvc, stage scripts); deselect with -m "not slow".
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
