"""Which sub-networks a sandwich step trains between the largest and the smallest.

``uniform`` draws every gene uniformly (the sandwich rule's default). ``attentive`` is AttentiveNAS
(seed 002): draw a FLOPs bucket from the empirical FLOPs prior of random architectures, draw ``k``
candidates in that bucket from a per-gene proposal conditioned on the bucket (rejection-sampled, with
a cap), score them by the current minibatch loss (no gradient) or an accuracy predictor, and train
the best (BestUp) or the worst (WorstUp). Samplers draw from the step's view of the space
(``famc.train.schedule.View``), so they compose with progressive shrinking and sub-supernet
enhancing; ``attentive`` reads the view's per-stage choice lists, so it needs an ``Unlocked`` one
(the config refuses it on other spaces).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from famc.predictor import AccuracyPredictor
from famc.space import Arch, SearchSpace, flops
from famc.train.schedule import Unlocked, View

if TYPE_CHECKING:  # the config names the samplers, so it imports this module
    from famc.train.config import AttentiveConfig, TrainConfig

#: Minibatch loss of each architecture (no gradient), averaged over DDP ranks.
LossFn = Callable[[Sequence[Arch]], list[float]]


class Sampler(Protocol):
    def sample(self, view: View, rng: random.Random, n: int, loss: LossFn) -> list[Arch]:
        """``n`` architectures of ``view`` to train this step (besides the largest and smallest)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class UniformSampler:
    """Every gene uniformly at random."""

    def __init__(self, cfg: TrainConfig, space: SearchSpace) -> None:
        pass

    def sample(self, view: View, rng: random.Random, n: int, loss: LossFn) -> list[Arch]:
        return [view.sample(rng) for _ in range(n)]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class FlopsPrior:
    """AttentiveNAS's FLOPs-conditioned proposal over one unlocked set.

    ``samples`` random architectures give the prior over equal-width FLOPs buckets (between the
    set's smallest and largest) and, per bucket, how often each gene (``SearchSpace.genes``) takes
    each allowed value; a proposal draws every gene independently from those counts (+1 smoothing).
    """

    def __init__(
        self, space: SearchSpace, view: Unlocked, buckets: int, samples: int, seed: str
    ) -> None:
        self.space, self.view = space, view
        self.lo, self.hi = flops(space, view.smallest()), flops(space, view.largest())
        self.buckets = buckets if self.hi > self.lo else 1
        rng = random.Random(seed)
        archs = [view.sample(rng) for _ in range(samples)]
        genes = np.array([space.genes(a) for a in archs])
        which = np.array([self.bucket(flops(space, a)) for a in archs])
        self.prior = np.bincount(which, minlength=self.buckets) / samples
        self.allowed = self._allowed()
        self.weights = [
            [[float((genes[which == b, g] == v).sum()) + 1 for v in values]
             for g, values in enumerate(self.allowed)]
            for b in range(self.buckets)
        ]  # fmt: skip

    def _allowed(self) -> list[tuple[float, ...]]:
        """Allowed values of every gene, in ``SearchSpace.genes`` order."""
        v, m = self.view, self.space.preset.max_depth
        slots = [vals for k, e in zip(v.kernels, v.expands, strict=True) for vals in (k, e) * m]
        return [v.resolutions, *v.depths, *slots]

    def bucket(self, value: int) -> int:
        if self.buckets == 1:
            return 0
        return min(int((value - self.lo) / (self.hi - self.lo) * self.buckets), self.buckets - 1)

    def draw_bucket(self, rng: random.Random) -> int:
        return rng.choices(range(self.buckets), weights=list(self.prior))[0]

    def propose(self, rng: random.Random, bucket: int) -> Arch:
        genes = [rng.choices(vals, weights=w)[0]
                 for vals, w in zip(self.allowed, self.weights[bucket], strict=True)]  # fmt: skip
        n, m = self.space.num_stages, self.space.preset.max_depth
        depths, slots = [int(d) for d in genes[1 : 1 + n]], genes[1 + n :]
        ks = tuple(tuple(int(slots[2 * (s * m + i)]) for i in range(depths[s])) for s in range(n))
        es = tuple(tuple(slots[2 * (s * m + i) + 1] for i in range(depths[s])) for s in range(n))
        return Arch(ks=ks, e=es, resolution=int(genes[0]))

    def sample(self, rng: random.Random, bucket: int, max_tries: int) -> tuple[Arch, bool]:
        """An architecture in ``bucket`` and True, or — after ``max_tries`` misses — the proposal
        nearest to the bucket and False (never an endless loop)."""
        best: tuple[float, Arch] | None = None
        edge = (self.hi - self.lo) / self.buckets
        lo = self.lo + bucket * edge
        for _ in range(max_tries):
            arch = self.propose(rng, bucket)
            f = flops(self.space, arch)
            if self.bucket(f) == bucket:
                return arch, True
            miss = min(abs(f - lo), abs(f - lo - edge))
            if best is None or miss < best[0]:
                best = (miss, arch)
        assert best is not None
        return best[1], False


class AttentiveSampler:
    """BestUp-k / WorstUp-k over FLOPs-conditioned candidates (AttentiveNAS)."""

    def __init__(self, cfg: TrainConfig, space: SearchSpace) -> None:
        assert cfg.attentive is not None  # the config fills in the defaults
        self.cfg: AttentiveConfig = cfg.attentive
        self.space, self.seed = space, cfg.seed
        self.priors: dict[Unlocked, FlopsPrior] = {}
        self.predictor = (
            AccuracyPredictor.load(Path(self.cfg.predictor), space) if self.cfg.predictor else None
        )
        self.misses = 0  # draws that fell outside their bucket after max_tries

    def prior(self, view: Unlocked) -> FlopsPrior:
        """The view's prior, estimated once per view from a generator seeded by the view itself,
        so it is the same after a resume and on every DDP rank."""
        if view not in self.priors:
            c = self.cfg
            self.priors[view] = FlopsPrior(self.space, view, c.flops_buckets, c.prior_samples,
                                           f"{self.seed}:flops-prior:{view}")  # fmt: skip
        return self.priors[view]

    def scores(self, candidates: list[Arch], loss: LossFn) -> list[float]:
        """Lower is better: the minibatch loss, or minus the predicted Top-1."""
        if self.predictor is None:
            return loss(candidates)
        return [-acc for acc in self.predictor.predict(self.space, candidates)]

    def sample(self, view: View, rng: random.Random, n: int, loss: LossFn) -> list[Arch]:
        assert isinstance(view, Unlocked), "the config refuses it without per-layer choices"
        prior, out = self.prior(view), []
        for _ in range(n):
            bucket = prior.draw_bucket(rng)
            candidates = []
            for _ in range(self.cfg.k):
                arch, hit = prior.sample(rng, bucket, self.cfg.max_tries)
                candidates.append(arch)
                self.misses += not hit
            s = self.scores(candidates, loss)
            pick = min if self.cfg.mode == "bestup" else max
            out.append(candidates[pick(range(len(s)), key=s.__getitem__)])
        return out

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"misses": self.misses}
        if self.predictor is not None:  # the predictor the run started with, file or not
            state["predictor"] = self.predictor.tensors()
            state["predictor_info"] = self.predictor.info
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.misses = int(state["misses"])
        if "predictor" in state:
            tensors: dict[str, torch.Tensor] = state["predictor"]
            self.predictor = AccuracyPredictor.from_tensors(self.space.name, tensors,
                                                            state["predictor_info"])  # fmt: skip


SAMPLERS: dict[str, Callable[[TrainConfig, SearchSpace], Sampler]] = {
    "uniform": UniformSampler,
    "attentive": AttentiveSampler,
}
