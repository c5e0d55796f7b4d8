"""Fréchet distance, streamed statistics and KID against closed forms and direct computations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg

from vaelab.core.errors import VaelabError
from vaelab.metrics.distances import FidBiasWarning, frechet_distance, kernel_inception_distance
from vaelab.metrics.feature_stats import RunningStats


def random_covariance(dims: int, seed: int, rank: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((dims, rank or dims))
    return a @ a.T / (rank or dims)


def test_diagonal_gaussians_match_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    # 1 + 0 + 6.25 + (1 + 9 - 6) + (4 + 1 - 4) + 0 = 12.25
    assert expected == pytest.approx(12.25)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(12.25, rel=1e-12)


def test_equal_covariances_give_squared_mean_distance():
    sigma = random_covariance(40, seed=1)
    mu1 = np.linspace(-1, 1, 40)
    mu2 = mu1 + 0.1
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(40 * 0.01, rel=1e-9)


def test_scaled_covariance_closed_form():
    # S2 = c^2 S1 commutes with S1: tr(S1 + S2 - 2 c S1) = (1 - c)^2 tr(S1).
    sigma = random_covariance(30, seed=2)
    assert frechet_distance(np.zeros(30), sigma, np.zeros(30), 9 * sigma) == pytest.approx(
        4 * np.trace(sigma), rel=1e-9)


def test_matches_scipy_sqrtm_on_full_rank_covariances():
    s1, s2 = random_covariance(25, seed=3), random_covariance(25, seed=4)
    mu1, mu2 = np.full(25, 0.3), np.zeros(25)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = 25 * 0.09 + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_symmetric_and_zero_on_itself():
    s1, s2 = random_covariance(20, seed=5), random_covariance(20, seed=6)
    mu1, mu2 = np.arange(20.0) / 20, np.zeros(20)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-10)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-10)


def test_fid_of_samples_with_itself_is_zero():
    x = np.random.default_rng(7).standard_normal((500, 16)) * 3 + 1
    mu, sigma = x.mean(0), np.cov(x, rowvar=False)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_singular_covariances_are_finite_and_correct():
    # Rank 5 in 50 dimensions, as from fewer samples than feature dimensions.
    sigma = random_covariance(50, seed=8, rank=5)
    assert np.linalg.matrix_rank(sigma) == 5
    mu = np.zeros(50)
    assert frechet_distance(mu, sigma, mu + 0.2, sigma) == pytest.approx(50 * 0.04, rel=1e-7)
    assert frechet_distance(mu, sigma, mu, 4 * sigma) == pytest.approx(np.trace(sigma), rel=1e-7)
    other = random_covariance(50, seed=9, rank=3)
    value = frechet_distance(mu, sigma, mu, other)
    assert np.isfinite(value) and value > 0
    # The cross term of two covariances with orthogonal ranges is 0.
    a = np.diag([1.0, 2.0, 0.0, 0.0])
    b = np.diag([0.0, 0.0, 3.0, 4.0])
    assert frechet_distance(np.zeros(4), a, np.zeros(4), b) == pytest.approx(10.0, rel=1e-12)


def test_fewer_samples_than_dimensions_warns_and_stays_finite():
    rng = np.random.default_rng(10)
    a, b = rng.standard_normal((8, 32)), rng.standard_normal((8, 32)) + 0.5
    stats_a, stats_b = RunningStats(), RunningStats()
    stats_a.add(a)
    stats_b.add(b)
    with pytest.warns(FidBiasWarning, match="8 samples < 32 feature dimensions"):
        sigma_a = stats_a.covariance()
    with pytest.warns(FidBiasWarning):
        sigma_b = stats_b.covariance()
    value = frechet_distance(stats_a.mean, sigma_a, stats_b.mean, sigma_b)
    assert np.isfinite(value) and value > 0


def test_enough_samples_do_not_warn():
    stats = RunningStats()
    stats.add(np.random.default_rng(11).standard_normal((40, 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats.covariance()


def test_non_psd_covariance_is_an_imaginary_part_error():
    good = np.eye(2)
    bad = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3 and -1: its square root is imaginary
    with pytest.raises(VaelabError, match="imaginary part of 1"):
        frechet_distance(np.zeros(2), good, np.zeros(2), bad)
    with pytest.raises(VaelabError, match="imaginary part of 1"):
        frechet_distance(np.zeros(2), bad, np.zeros(2), good)
    with pytest.raises(VaelabError, match="negative variances"):
        frechet_distance(np.zeros(2), good, np.zeros(2), np.diag([1.0, -0.5]))


def test_rounding_level_negative_eigenvalues_are_clipped():
    sigma = random_covariance(30, seed=12, rank=4)
    noisy = sigma + np.diag(np.full(30, -1e-14))  # slightly negative null space, as rounding gives
    # The same covariance but for round-off: a distance of zero, not NaN nor a spurious positive.
    assert frechet_distance(np.zeros(30), noisy, np.zeros(30), sigma) == pytest.approx(0.0, abs=1e-8)


def test_bad_inputs():
    with pytest.raises(ValueError, match="do not match"):
        frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(VaelabError, match="NaN"):
        frechet_distance(np.array([np.nan, 0.0]), np.eye(2), np.zeros(2), np.eye(2))


def test_streamed_stats_equal_numpy_in_one_go():
    x = np.random.default_rng(13).standard_normal((257, 12)).astype(np.float32) * 2 + 5
    stats = RunningStats()
    for start in range(0, len(x), 50):
        stats.add(x[start:start + 50])
    assert stats.n == 257
    np.testing.assert_allclose(stats.mean, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.covariance(), np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10)
    assert stats.mean.dtype == np.float64 and stats.covariance().dtype == np.float64


@pytest.mark.parametrize("batch_size", [1, 7, 64, 1000])
def test_streamed_stats_do_not_depend_on_batch_size(batch_size):
    x = np.random.default_rng(14).standard_normal((300, 6))
    stats = RunningStats()
    for start in range(0, len(x), batch_size):
        stats.add(x[start:start + batch_size])
    np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(stats.covariance(), np.cov(x, rowvar=False), rtol=1e-11, atol=1e-14)


def test_streamed_stats_accurate_with_a_large_mean():
    # Sums of x and x x^T would lose the variance here to cancellation; the pairwise update does not.
    x = np.random.default_rng(15).standard_normal((1000, 3)) * 1e-3 + 1e6
    stats = RunningStats()
    for start in range(0, 1000, 10):
        stats.add(x[start:start + 10])
    np.testing.assert_allclose(stats.covariance(), np.cov(x, rowvar=False), rtol=1e-6)


def test_running_stats_rejects_bad_batches():
    stats = RunningStats()
    with pytest.raises(ValueError, match="2-d"):
        stats.add(np.zeros(3))
    stats.add(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="3"):
        stats.add(np.zeros((2, 4)))
    one = RunningStats()
    one.add(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        one.covariance()


def naive_kid(x: np.ndarray, y: np.ndarray) -> float:
    m, d = len(x), x.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_the_unbiased_mmd_formula():
    rng = np.random.default_rng(16)
    x, y = rng.standard_normal((12, 5)), rng.standard_normal((12, 5)) + 0.7
    value, std = kernel_inception_distance(x, y, num_subsets=10, subset_size=50)
    assert value == pytest.approx(naive_kid(x, y), rel=1e-12)
    assert std == 0.0  # one subset: the whole sets


def test_kid_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(17)
    a, b = rng.standard_normal((400, 8)), rng.standard_normal((400, 8))
    same, _ = kernel_inception_distance(a, b, num_subsets=20, subset_size=200, seed=1)
    shifted, _ = kernel_inception_distance(a, b + 1.0, num_subsets=20, subset_size=200, seed=1)
    assert abs(same) < 0.1 and shifted > 5.0
    again, _ = kernel_inception_distance(a, b + 1.0, num_subsets=20, subset_size=200, seed=1)
    assert again == shifted
