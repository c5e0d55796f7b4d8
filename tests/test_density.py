"""The ex-post latent density (Ghosh et al. 2020): a seeded Gaussian mixture, sampled with numpy."""

from __future__ import annotations

import numpy as np
import pytest

from vaelab.model.density import GaussianMixtureDensity, fit_density, load_density, sample_density, save_density
from vaelab.core.errors import VaelabError


def two_clusters(n: int = 600, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal([-4.0, 0.0], 0.5, (n // 3, 2))
    b = rng.normal([4.0, 2.0], [1.0, 0.3], (n - n // 3, 2))
    return np.concatenate([a, b])


def test_fit_recovers_well_separated_clusters_and_is_seeded():
    density = fit_density(two_clusters(), components=2, seed=3)
    order = np.argsort(density.means[:, 0])
    np.testing.assert_allclose(density.weights[order], [1 / 3, 2 / 3], atol=1e-9)
    np.testing.assert_allclose(density.means[order], [[-4.0, 0.0], [4.0, 2.0]], atol=0.15)
    np.testing.assert_allclose(np.sqrt(np.diagonal(density.covariances[order], axis1=1, axis2=2)),
                               [[0.5, 0.5], [1.0, 0.3]], rtol=0.15)
    again = fit_density(two_clusters(), components=2, seed=3)
    np.testing.assert_array_equal(again.means, density.means)
    np.testing.assert_array_equal(again.covariances, density.covariances)
    assert (density.components, density.latent_dim, density.num_points, density.seed) == (2, 2, 600, 3)


def test_samples_follow_the_mixture_exactly_as_specified():
    density = GaussianMixtureDensity(weights=np.array([0.25, 0.75]), means=np.array([[0.0, 10.0], [5.0, -5.0]]),
                                     covariances=np.array([np.eye(2) * 4.0, [[1.0, 0.5], [0.5, 1.0]]]),
                                     num_points=0, seed=0)
    z = sample_density(density, 5, seed=11)
    rng = np.random.default_rng(11)
    components = rng.choice(2, size=5, p=[0.25, 0.75])
    eps = rng.standard_normal((5, 2))
    expected = density.means[components] + np.einsum("nij,nj->ni", np.linalg.cholesky(density.covariances)[components], eps)
    np.testing.assert_allclose(z, expected.astype(np.float32))
    assert z.dtype == np.float32
    many = sample_density(density, 40000, seed=1)
    first = many[:, 1] > 2.5  # the first component sits at y = 10, the second at y = -5
    assert first.mean() == pytest.approx(0.25, abs=0.01)
    np.testing.assert_allclose(np.cov(many[~first], rowvar=False), [[1.0, 0.5], [0.5, 1.0]], atol=0.03)
    np.testing.assert_array_equal(sample_density(density, 5, seed=11), z)


def test_round_trip_and_damaged_files(tmp_path):
    density = fit_density(two_clusters(90), components=3, seed=0)
    path = tmp_path / "models" / "mnist.gmm.npz"
    save_density(density, path)
    loaded = load_density(path)
    for field in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(density, field))
    assert (loaded.num_points, loaded.seed) == (90, 0)
    with pytest.raises(VaelabError, match="not found; run `dvc repro fit_gmm@<dataset>` first"):
        load_density(tmp_path / "absent.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, weights=np.ones(2), means=np.zeros((3, 2)), covariances=np.zeros((3, 2, 2)), num_points=1, seed=0)
    with pytest.raises(VaelabError, match=r"damaged \(weights \(2,\), means \(3, 2\)"):
        load_density(bad)


def test_too_few_points_is_a_clear_error():
    with pytest.raises(VaelabError, match="needs at least 10 finite latent points"):
        fit_density(np.zeros((5, 2)), components=10, seed=0)
