"""The array half-space trees against river's HalfSpaceTrees: same trees, same scores."""

from __future__ import annotations

import random

import pytest
from river import anomaly

from detectors.behaviour._hst import HalfSpaceTrees

NAMES = ("requests", "tokens", "chars", "models", "refusals", "hour_dev", "hour_sin", "hour_cos", "extra")


@pytest.mark.parametrize(("seed", "n_trees", "height", "window"), [(42, 10, 8, 250), (1, 5, 4, 50), (7, 3, 3, 7)])
def test_scores_equal_rivers_exactly(seed: int, n_trees: int, height: int, window: int) -> None:
    rng = random.Random(seed)
    ours = HalfSpaceTrees(NAMES, n_trees=n_trees, height=height, window_size=window, seed=seed)
    river_hst = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window, seed=seed)
    scored = []
    for i in range(2000):
        outlier = rng.random() < 0.02
        x = [rng.random() if outlier else rng.betavariate(2, 5) for _ in NAMES]
        as_dict = dict(zip(NAMES, x))
        if i % 3 == 0:  # test-then-train, as the detector does
            expected = river_hst.score_one(as_dict)
            assert ours.score_one(x) == expected, i
            scored.append(expected)
        river_hst.learn_one(as_dict)
        ours.learn_one(x)
    assert scored[0] == 0 and max(scored) > 0.5  # the first window scores 0, outliers stand out


def test_outlier_scores_above_inliers() -> None:
    hst = HalfSpaceTrees(("a", "b"), n_trees=10, height=6, window_size=100, seed=3)
    rng = random.Random(3)
    for _ in range(300):
        hst.learn_one((rng.gauss(0.3, 0.05), rng.gauss(0.6, 0.05)))
    assert hst.score_one((0.95, 0.05)) > 0.9
    assert hst.score_one((0.3, 0.6)) < 0.5


def test_feature_names_must_be_distinct() -> None:
    with pytest.raises(ValueError, match="distinct"):
        HalfSpaceTrees(("a", "a"))
