"""Half-space trees with node arrays: river's algorithm, its trees and its scores, learned in batches."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
from river.tree.padded import PaddedBranch, make_padded_tree

__all__ = ["HalfSpaceTrees"]


class HalfSpaceTrees:
    """Half-Space Trees (Tan, Ting & Liu, 2011) over fixed feature vectors in [0, 1].

    Same model as ``river.anomaly.HalfSpaceTrees`` (it builds the trees with river's
    ``make_padded_tree`` and the same seeded ``random.Random``, and scores alike, so the scores
    are identical), stored as arrays in heap order (node ``k`` has children ``2k+1``,
    ``2k+2``). What changes is the cost of learning: a score reads only the reference masses,
    which change only when a window of ``window_size`` learned vectors is complete, so
    ``learn_one`` just keeps the vector and the whole window is routed down every tree at once
    (a few numpy operations per level) when it completes. ``score_one`` walks the trees in plain
    Python (it stops early where the mass is small), as river does.

    Parameters
    ----------
    features
        Names of the vector's components, in the order ``learn_one``/``score_one`` receive them.
    n_trees, height, window_size, seed
        As in river.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> hst = HalfSpaceTrees(("a", "b"), n_trees=5, height=4, window_size=50, seed=1)
    >>> for _ in range(100):
    ...     hst.learn_one((rng.gauss(0.3, 0.05), rng.gauss(0.6, 0.05)))
    >>> round(hst.score_one((0.3, 0.6)), 3), round(hst.score_one((0.95, 0.05)), 3)
    (0.227, 0.963)
    """

    def __init__(self, features: Sequence[str], n_trees: int = 10, height: int = 8,
                 window_size: int = 250, seed: int | None = None) -> None:
        if len(set(features)) != len(features) or not features:
            raise ValueError(f"features must be distinct names, got {features!r}")
        self.features = tuple(features)
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed
        self._reset()

    def _reset(self) -> None:
        # river builds its trees on the first learn_one from sorted feature names; same rng draws.
        rng = random.Random(self.seed)
        column = {name: i for i, name in enumerate(self.features)}
        n_inner = 2**self.height - 1
        self._feature = np.zeros((self.n_trees, n_inner), np.intp)
        self._threshold = np.zeros((self.n_trees, n_inner), np.float64)
        for t in range(self.n_trees):
            root = make_padded_tree(limits={name: (0.0, 1.0) for name in sorted(self.features)},
                                    height=self.height, padding=0.15, rng=rng, r_mass=0, l_mass=0)
            stack = [(root, 0)]
            while stack:
                node, k = stack.pop()
                if isinstance(node, PaddedBranch):
                    self._feature[t, k] = column[node.feature]
                    self._threshold[t, k] = node.threshold
                    stack.append((node.children[0], 2 * k + 1))
                    stack.append((node.children[1], 2 * k + 2))
        self._feature_lists = self._feature.tolist()
        self._threshold_lists = self._threshold.tolist()
        self._r_mass: list[list[int]] = [[0] * (2 * n_inner + 1) for _ in range(self.n_trees)]
        self._window: list[Sequence[float]] = []
        self._first_window = True
        self._max_score = self.n_trees * self.window_size * (2 ** (self.height + 1) - 1)

    def learn_one(self, x: Sequence[float]) -> None:
        """Learn a vector (it counts in the reference masses once its window is complete)."""
        self._window.append(x)
        if len(self._window) == self.window_size:
            self._pivot()

    def _pivot(self) -> None:
        """Route the completed window down all trees; its node counts become the reference masses."""
        X = np.asarray(self._window, dtype=np.float64)  # (window, features)
        self._window = []
        n_trees, n_inner = self._feature.shape
        n_nodes = 2 * n_inner + 1
        rows = np.arange(len(X))
        tree_base = np.arange(n_trees)[:, None] * n_inner
        node = np.zeros((n_trees, len(X)), np.intp)
        visited = [node]
        for _ in range(self.height):
            flat = tree_base + node
            right = X[rows, self._feature.ravel()[flat]] >= self._threshold.ravel()[flat]
            node = 2 * node + 1 + right
            visited.append(node)
        counts = np.zeros((n_trees, n_nodes), np.int64)
        trees = np.broadcast_to(np.arange(n_trees)[:, None] * n_nodes, node.shape)
        for level in visited:
            counts.ravel()[:] += np.bincount((trees + level).ravel(), minlength=n_trees * n_nodes)
        self._r_mass = counts.tolist()
        self._first_window = False

    def score_one(self, x: Sequence[float]) -> float:
        """Anomaly score in [0, 1] (higher = more anomalous); 0 before the first full window."""
        if self._first_window:
            return 0.0
        size_limit = 0.1 * self.window_size
        height = self.height
        score = 0.0
        for features, thresholds, masses in zip(self._feature_lists, self._threshold_lists, self._r_mass):
            k, depth_pow = 0, 1
            for _ in range(height):
                r = masses[k]
                score += r * depth_pow
                if r < size_limit:
                    break
                k = 2 * k + 1 if x[features[k]] < thresholds[k] else 2 * k + 2
                depth_pow <<= 1
            else:
                score += masses[k] * depth_pow
        return 1 - score / self._max_score
