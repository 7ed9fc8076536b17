"""An accuracy predictor: architecture encoding → Top-1, as AttentiveNAS trains one (seed 002).

A random forest (100 trees of depth ≤ 15, bootstrap samples, every feature considered at every
split: scikit-learn's regressor defaults, which the paper used) fitted on (``SearchSpace.encode``,
supernet Top-1) pairs of random architectures. It is written in numpy and stored as flat arrays in
a safetensors file, so a predictor loads without pickle, and fits in seconds on a CPU.

Used to score BestUp/WorstUp candidates during training (``attentive: {score: predictor}``) and to
pre-screen candidates in the family search (``search: {prescreen: ...}``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from famc.errors import FamcError
from famc.io import atomic_path, first_line
from famc.metrics import kendall_tau, top1
from famc.space import Arch, SearchSpace
from famc.supernet.checkpoint import read_state_dict

FOREST_ARRAYS = ("feature", "threshold", "left", "right", "value", "roots")


@dataclass(frozen=True)
class Forest:
    """Regression trees as flat arrays: node ``i`` splits on ``feature[i]`` (−1: a leaf holding
    ``value[i]``) at ``threshold[i]``, going to ``left[i]`` when ``x <= threshold``."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    roots: np.ndarray  # first node of every tree

    def check(self, source: str) -> None:
        """Refuse arrays ``predict`` cannot walk safely: unequal lengths, children that do not
        come after their parent (a cycle would never end), values that are not finite."""
        problem = self._problem()
        if problem is not None:
            raise FamcError(f"{source}: not a valid accuracy predictor ({problem}); make it "
                            f"again with `famc predictor`")  # fmt: skip

    def _problem(self) -> str | None:
        n = self.feature.shape[0] if self.feature.ndim == 1 else -1
        if any(a.ndim != 1 or a.shape[0] != n for a in (self.threshold, self.left, self.right,
                                                        self.value)) or self.roots.ndim != 1:  # fmt: skip
            return "arrays of unequal length or rank"
        ints = (self.feature, self.left, self.right, self.roots)
        if not all(np.issubdtype(a.dtype, np.integer) for a in ints):
            return "node indices that are not integers"
        if self.roots.size == 0 or ((self.roots < 0) | (self.roots >= n)).any():
            return "no trees, or a root outside the nodes"
        idx, inner = np.arange(n), self.feature >= 0
        children = (self.left, self.right)
        if any((inner & ((c <= idx) | (c >= n))).any() for c in children):
            return "a child that does not follow its parent"
        if not (np.isfinite(self.threshold).all() and np.isfinite(self.value).all()):
            return "values that are not finite"
        return None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Mean of the trees' leaf values for every row of ``x``."""
        node = np.broadcast_to(self.roots, (x.shape[0], self.roots.size)).copy()
        rows = np.arange(x.shape[0])[:, None]
        while True:
            feat = self.feature[node]
            inner = feat >= 0
            if not inner.any():
                return self.value[node].mean(axis=1)
            go_left = x[rows, np.where(inner, feat, 0)] <= self.threshold[node]
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)


def _best_split(x: np.ndarray, y: np.ndarray) -> tuple[int, float] | None:
    """The (feature, threshold) minimising the children's summed squared error, or None."""
    m = y.size
    order = np.argsort(x, axis=0, kind="stable")
    xs = np.take_along_axis(x, order, axis=0)
    left_sum = np.cumsum(y[order], axis=0)[:-1]
    n_left = np.arange(1, m)[:, None]
    gain = left_sum**2 / n_left + (y.sum() - left_sum) ** 2 / (m - n_left)
    gain = np.where(xs[1:] > xs[:-1], gain, -np.inf)
    pos, feat = np.unravel_index(int(np.argmax(gain)), gain.shape)
    if not np.isfinite(gain[pos, feat]):
        return None
    return int(feat), float((xs[pos, feat] + xs[pos + 1, feat]) / 2)


def fit_forest(
    x: np.ndarray, y: np.ndarray, *, trees: int = 100, max_depth: int = 15, seed: int = 0
) -> Forest:
    """Fit a random forest regressor (bootstrap rows per tree, exhaustive splits)."""
    rng = np.random.default_rng(seed)
    nodes: list[list[float]] = []  # [feature, threshold, left, right, value]
    roots: list[int] = []

    def leaf(rows: np.ndarray) -> int:
        nodes.append([-1, 0.0, -1, -1, float(y[rows].mean())])
        return len(nodes) - 1

    for _ in range(trees):
        rows = rng.integers(0, y.size, y.size)
        roots.append(leaf(rows))
        stack = [(roots[-1], rows, 0)]
        while stack:
            node, idx, depth = stack.pop()
            if depth == max_depth or idx.size < 2 or np.ptp(y[idx]) == 0:
                continue
            split = _best_split(x[idx], y[idx])
            if split is None:
                continue
            goes_left = x[idx, split[0]] <= split[1]
            lo, hi = leaf(idx[goes_left]), leaf(idx[~goes_left])
            nodes[node][:4] = [split[0], split[1], lo, hi]
            stack += [(lo, idx[goes_left], depth + 1), (hi, idx[~goes_left], depth + 1)]
    cols = np.array(nodes, dtype=np.float64).reshape(-1, 5).T.copy()  # one contiguous row each
    return Forest(cols[0].astype(np.int32), cols[1], cols[2].astype(np.int32),
                  cols[3].astype(np.int32), cols[4], np.array(roots, np.int32))  # fmt: skip


class AccuracyPredictor:
    """Predicted Top-1 (%) of architectures of one space."""

    def __init__(self, space: str, forest: Forest, info: dict[str, str]) -> None:
        self.space, self.forest, self.info = space, forest, info

    def predict(self, space: SearchSpace, archs: Sequence[Arch]) -> list[float]:
        if space.name != self.space:
            raise FamcError(f"accuracy predictor is for space {self.space!r}, not {space.name!r}")
        x = np.array([space.encode(a) for a in archs], dtype=np.float64)
        if x.size and self.forest.feature.max(initial=-1) >= x.shape[1]:
            raise FamcError(f"accuracy predictor splits on features {space.name!r} does not "
                            f"encode; make it again with `famc predictor`")  # fmt: skip
        return [float(v) for v in self.forest.predict(x)]

    def tensors(self) -> dict[str, torch.Tensor]:
        """The forest as tensors (safetensors files and training checkpoints store these)."""
        return {k: torch.from_numpy(np.asarray(getattr(self.forest, k))) for k in FOREST_ARRAYS}

    @classmethod
    def from_tensors(
        cls, space: str, tensors: dict[str, torch.Tensor], info: dict[str, str],
        source: str = "accuracy predictor",
    ) -> AccuracyPredictor:  # fmt: skip
        try:
            forest = Forest(*(tensors[k].numpy() for k in FOREST_ARRAYS))
        except (KeyError, TypeError, AttributeError) as exc:  # a missing or non-numpy array
            raise FamcError(f"{source}: not a valid accuracy predictor ({first_line(exc)}); "
                            f"make it again with `famc predictor`") from None  # fmt: skip
        forest.check(source)
        return cls(space, forest, info)

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            save_file(self.tensors(), str(tmp), metadata={"space": self.space, **self.info})

    @classmethod
    def load(cls, path: Path | str, space: SearchSpace) -> AccuracyPredictor:
        tensors, meta = read_state_dict(path)
        if meta.get("kind") != "famc-accuracy-predictor" or set(tensors) != set(FOREST_ARRAYS):
            raise FamcError(f"{path}: not a famc accuracy predictor (made by `famc predictor`)")
        if meta.get("space") != space.name:
            raise FamcError(
                f"{path}: predictor for space {meta.get('space')!r}, not {space.name!r}"
            )
        info = {k: v for k, v in meta.items() if k != "space"}
        return cls.from_tensors(space.name, tensors, info, str(path))


def fit_predictor(
    space: SearchSpace,
    correct: Callable[[Arch], torch.Tensor],
    *,
    archs: int = 1024,
    seed: int = 0,
    trees: int = 100,
    max_depth: int = 15,
    advance: Callable[[], None] = lambda: None,
) -> AccuracyPredictor:
    """AttentiveNAS's recipe: ``archs`` distinct random architectures scored by ``correct`` (a
    supernet's correctness vector on held-out images), half to fit, half to report Kendall τ."""
    rng = random.Random(f"{seed}:predictor")
    pool: dict[Arch, None] = {}
    while len(pool) < archs:
        pool[space.sample(rng)] = None
    sample = list(pool)
    acc = []
    for a in sample:
        acc.append(top1(correct(a)))
        advance()
    x, y = np.array([space.encode(a) for a in sample]), np.array(acc)
    half = archs // 2
    forest = fit_forest(x[:half], y[:half], trees=trees, max_depth=max_depth, seed=seed)
    tau = kendall_tau(list(forest.predict(x[half:])), list(y[half:]))
    info = {"kind": "famc-accuracy-predictor", "n_fit": str(half),
            "n_heldout": str(archs - half), "kendall_tau_heldout": f"{tau:.4f}",
            "trees": str(trees), "max_depth": str(max_depth)}  # fmt: skip
    return AccuracyPredictor(space.name, forest, info)
