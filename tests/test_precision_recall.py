"""Improved precision and recall (Kynkäänniemi et al. 2019) on hand-made point sets with exact answers."""

from __future__ import annotations

import numpy as np
import pytest

from vaelab.metrics import precision_recall as pr
from vaelab.metrics.precision_recall import kth_neighbour_radii, manifold_coverage, precision_recall


def line(*xs: float) -> np.ndarray:
    """Points on a line embedded in 3-d (the other coordinates 0)."""
    points = np.zeros((len(xs), 3))
    points[:, 0] = xs
    return points


def test_kth_neighbour_radii_exact():
    points = line(0, 1, 3, 7)
    np.testing.assert_array_equal(kth_neighbour_radii(points, k=1), [1, 1, 2, 4])
    np.testing.assert_array_equal(kth_neighbour_radii(points, k=2), [3, 2, 3, 6])
    # A duplicate is a neighbour at distance 0.
    np.testing.assert_array_equal(kth_neighbour_radii(line(5, 5, 9), k=1), [0, 0, 4])
    with pytest.raises(ValueError, match="more than k points"):
        kth_neighbour_radii(points, k=4)


def test_hand_made_sets_give_known_precision_and_recall():
    real = line(0, 1, 2, 3, 10)  # k = 1 radii: 1, 1, 1, 1, 7
    generated = line(0.5, 2.5, 3.5, 5)  # k = 1 radii: 2, 1, 1, 1.5
    # Every generated point lies in a real ball (5 in the ball of 10, radius 7): precision 1.
    # The real point 10 lies in no generated ball (5's reaches 6.5): recall 4/5.
    assert precision_recall(real, generated, k=1) == (1.0, 0.8)
    # Swapped roles: 10 is now generated, outside every ball of the former generated set.
    assert precision_recall(generated, real, k=1) == (0.8, 1.0)
    assert manifold_coverage(line(0.5, 20), real, kth_neighbour_radii(real, 1)) == 0.5


def test_identical_sets_score_one_and_one():
    x = np.random.default_rng(0).standard_normal((50, 2048)).astype(np.float32) * 0.3 + 1.0
    assert precision_recall(x, x.copy()) == (1.0, 1.0)


def test_a_collapsed_generator_is_precise_but_recalls_one_point_in_n():
    real = np.random.default_rng(1).standard_normal((40, 16))
    collapsed = np.repeat(real[:1], 40, axis=0)  # every sample is the same real image
    # Inside the real manifold (at a real point), but its own balls have radius 0: it covers only that point.
    assert precision_recall(real, collapsed) == (1.0, 1 / 40)


def test_far_samples_have_zero_precision_and_recall():
    real = np.random.default_rng(2).standard_normal((30, 8))
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)


def test_blocks_never_hold_the_whole_distance_matrix_and_do_not_change_the_answer(monkeypatch):
    rng = np.random.default_rng(3)
    real, generated = rng.standard_normal((23, 5)), rng.standard_normal((17, 5)) * 1.3
    whole = precision_recall(real, generated, block_rows=1000)
    shapes = []
    original = pr._squared_distances

    def spy(a, a_norms, b, b_norms):
        shapes.append((len(a), len(b)))
        return original(a, a_norms, b, b_norms)

    monkeypatch.setattr(pr, "_squared_distances", spy)
    assert precision_recall(real, generated, block_rows=4) == whole
    assert max(rows for rows, _ in shapes) == 4 and len(shapes) > 4
    assert 0.0 < whole[0] < 1.0 and 0.0 < whole[1] < 1.0


def test_given_real_radii_are_used_and_bad_shapes_are_refused():
    real, generated = line(0, 1, 2, 3, 10), line(0.5, 2.5, 3.5, 5)
    assert precision_recall(real, generated, k=1, real_radii=np.zeros(5)) == (0.0, 0.8)
    with pytest.raises(ValueError, match="feature dimensions differ"):
        precision_recall(real, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="do not fit together"):
        manifold_coverage(generated, real, np.zeros(3))
