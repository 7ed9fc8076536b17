"""``SearchSpace``: sampling, mutation, crossover and the CAS containment relation over ``Arch``.

Every random operation takes an explicit ``random.Random`` so searches are reproducible from a seed.
The ``*_containing`` variants only ever produce architectures that contain a reference architecture
(REG-NAS's CAS: deeper stages, larger kernels, larger expand ratios, layers as prefixes), which is
what keeps a larger family member a weight-superset of the one below.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from famc.errors import FamcError
from famc.space.arch import Arch, ArchRecord
from famc.space.presets import Preset


class SearchSpace:
    """The architectures one preset's supernet can run."""

    def __init__(self, preset: Preset) -> None:
        self.preset = preset

    # --- basic facts ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.preset.name

    @property
    def num_stages(self) -> int:
        return len(self.preset.stages)

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r})"

    def size(self) -> int:
        """Number of distinct architectures (resolution included)."""
        p = self.preset
        per_layer = len(p.kernel_choices) * len(p.expand_choices)
        per_stage = sum(per_layer**d for d in p.depth_choices)
        return per_stage**self.num_stages * len(p.resolutions)

    # --- canonical members ---------------------------------------------------------------------
    def _uniform(self, k: int, e: int, d: int, r: int) -> Arch:
        n = self.num_stages
        return Arch(ks=((k,) * d,) * n, e=((e,) * d,) * n, resolution=r)

    def largest(self) -> Arch:
        p = self.preset
        return self._uniform(
            max(p.kernel_choices), max(p.expand_choices), max(p.depth_choices), max(p.resolutions)
        )

    def smallest(self) -> Arch:
        p = self.preset
        return self._uniform(
            min(p.kernel_choices), min(p.expand_choices), min(p.depth_choices), min(p.resolutions)
        )

    # --- validation ----------------------------------------------------------------------------
    def check_input(self, dataset: str, channels: int, num_classes: int, source: str) -> None:
        """Refuse data the supernet cannot consume (channels) or classify (classes)."""
        p = self.preset
        if (channels, num_classes) != (p.in_channels, p.num_classes):
            raise FamcError(
                f"{source}: dataset {dataset} has {channels} channel(s) and {num_classes} classes "
                f"but space {self.name} expects {p.in_channels} and {p.num_classes}: pick a "
                "matching preset"
            )

    def validate(self, arch: Arch) -> Arch:
        """Return ``arch`` or raise naming the first gene outside the space and its allowed values."""
        p = self.preset
        if arch.resolution not in p.resolutions:
            raise FamcError(
                f"architecture outside {self.name}: resolution {arch.resolution} not in "
                f"{list(p.resolutions)}"
            )
        if len(arch.ks) != self.num_stages:
            raise FamcError(
                f"architecture outside {self.name}: {len(arch.ks)} stages, the space has "
                f"{self.num_stages}"
            )
        for s, (ks, es) in enumerate(zip(arch.ks, arch.e, strict=True)):
            if len(ks) not in p.depth_choices:
                raise FamcError(
                    f"architecture outside {self.name}: d[{s}]={len(ks)} not in "
                    f"{list(p.depth_choices)}"
                )
            for i, (k, e) in enumerate(zip(ks, es, strict=True)):
                if k not in p.kernel_choices:
                    raise FamcError(
                        f"architecture outside {self.name}: ks[{s}][{i}]={k} not in "
                        f"{list(p.kernel_choices)}"
                    )
                if e not in p.expand_choices:
                    raise FamcError(
                        f"architecture outside {self.name}: e[{s}][{i}]={e} not in "
                        f"{list(p.expand_choices)}"
                    )
        return arch

    def arch_from_dict(self, data: Mapping[str, Any] | ArchRecord) -> Arch:
        """Parse the ``Arch.to_dict()`` form (as read from JSON, or as an ``ArchRecord``) and
        validate it against the space."""
        if isinstance(data, ArchRecord):
            data = data.model_dump()
        try:
            ks = tuple(tuple(int(k) for k in stage) for stage in data["ks"])
            es = tuple(tuple(int(e) for e in stage) for stage in data["e"])
            resolution = int(data["resolution"])
            arch = Arch(ks=ks, e=es, resolution=resolution)
        except (KeyError, TypeError, ValueError) as exc:
            raise FamcError(
                f"malformed architecture {dict(data)!r}: expected keys resolution, d, ks, e "
                f"(per-stage lists) ({exc})"
            ) from None
        if "d" in data and list(data["d"]) != list(arch.d):
            raise FamcError(f"malformed architecture: d={list(data['d'])} but ks has {arch.d}")
        return self.validate(arch)

    # --- OFA interop ---------------------------------------------------------------------------
    def from_ofa(self, cfg: Mapping[str, Sequence[int]], resolution: int) -> Arch:
        """Convert OFA's padded form (``ks``/``e`` per block slot, ``d`` per stage)."""
        n, m = self.num_stages, self.preset.max_depth
        ks, es, ds = list(cfg["ks"]), list(cfg["e"]), list(cfg["d"])
        if len(ks) != n * m or len(es) != n * m or len(ds) != n:
            raise FamcError(
                f"OFA config for {self.name} needs {n * m} ks, {n * m} e and {n} d entries; got "
                f"{len(ks)}, {len(es)}, {len(ds)}"
            )
        arch = Arch(
            ks=tuple(tuple(int(k) for k in ks[s * m : s * m + ds[s]]) for s in range(n)),
            e=tuple(tuple(int(e) for e in es[s * m : s * m + ds[s]]) for s in range(n)),
            resolution=int(resolution),
        )
        return self.validate(arch)

    def to_ofa(self, arch: Arch) -> dict[str, list[int]]:
        """OFA's padded form; inactive slots repeat the stage's last active layer (OFA ignores them)."""
        m = self.preset.max_depth
        ks: list[int] = []
        es: list[int] = []
        for stage_k, stage_e in zip(arch.ks, arch.e, strict=True):
            ks += list(stage_k) + [stage_k[-1]] * (m - len(stage_k))
            es += list(stage_e) + [stage_e[-1]] * (m - len(stage_e))
        return {"ks": ks, "e": es, "d": list(arch.d)}

    # --- CAS -----------------------------------------------------------------------------------
    def contains(self, small: Arch, big: Arch) -> bool:
        """CAS: ``big`` holds every weight ``small`` uses (depth, kernel and expand all ≥)."""
        for sk, se, bk, be in zip(small.ks, small.e, big.ks, big.e, strict=True):
            if len(bk) < len(sk):
                return False
            for i in range(len(sk)):
                if bk[i] < sk[i] or be[i] < se[i]:
                    return False
        return True

    # --- sampling ------------------------------------------------------------------------------
    def sample(self, rng: random.Random) -> Arch:
        """Uniform over each gene independently (OFA's ``sample_active_subnet``)."""
        return self.sample_containing(self.smallest_skeleton(), rng)

    def smallest_skeleton(self) -> Arch:
        """The least architecture under CAS with a free resolution gene: constrains nothing."""
        s = self.smallest()
        return Arch(ks=s.ks, e=s.e, resolution=0)

    def sample_containing(self, ref: Arch, rng: random.Random) -> Arch:
        """A random architecture that contains ``ref`` (genes drawn uniformly from the allowed ones)."""
        p = self.preset
        ks: list[tuple[int, ...]] = []
        es: list[tuple[int, ...]] = []
        for s in range(self.num_stages):
            d = rng.choice([d for d in p.depth_choices if d >= len(ref.ks[s])])
            ks.append(tuple(rng.choice(self._kernels_at(ref, s, i)) for i in range(d)))
            es.append(tuple(rng.choice(self._expands_at(ref, s, i)) for i in range(d)))
        return Arch(ks=tuple(ks), e=tuple(es), resolution=rng.choice(p.resolutions))

    def _kernels_at(self, ref: Arch, s: int, i: int) -> list[int]:
        lo = ref.ks[s][i] if i < len(ref.ks[s]) else 0
        return [k for k in self.preset.kernel_choices if k >= lo]

    def _expands_at(self, ref: Arch, s: int, i: int) -> list[int]:
        lo = ref.e[s][i] if i < len(ref.e[s]) else 0
        return [e for e in self.preset.expand_choices if e >= lo]

    def mutate(self, arch: Arch, rng: random.Random, prob: float) -> Arch:
        """Resample each gene with probability ``prob`` (OFA's evolution finder)."""
        return self.mutate_containing(self.smallest_skeleton(), arch, rng, prob)

    def mutate_containing(self, ref: Arch, arch: Arch, rng: random.Random, prob: float) -> Arch:
        """Mutate ``arch`` gene by gene, never leaving the set of architectures containing ``ref``.

        Layers that become active through a deeper stage get fresh random genes, as OFA's padded
        genes would be.
        """
        p = self.preset
        ks: list[tuple[int, ...]] = []
        es: list[tuple[int, ...]] = []
        for s in range(self.num_stages):
            d = len(arch.ks[s])
            if rng.random() < prob:
                d = rng.choice([x for x in p.depth_choices if x >= len(ref.ks[s])])
            stage_k: list[int] = []
            stage_e: list[int] = []
            for i in range(d):
                k_opts, e_opts = self._kernels_at(ref, s, i), self._expands_at(ref, s, i)
                old_k = arch.ks[s][i] if i < len(arch.ks[s]) else None
                old_e = arch.e[s][i] if i < len(arch.e[s]) else None
                stage_k.append(
                    old_k if old_k is not None and rng.random() >= prob else rng.choice(k_opts)
                )
                stage_e.append(
                    old_e if old_e is not None and rng.random() >= prob else rng.choice(e_opts)
                )
            ks.append(tuple(stage_k))
            es.append(tuple(stage_e))
        resolution = arch.resolution
        if rng.random() < prob:
            resolution = rng.choice(p.resolutions)
        return Arch(ks=tuple(ks), e=tuple(es), resolution=resolution)

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        """Uniform crossover: every gene from either parent.

        A layer present in only one parent comes from that parent, so when both parents contain a
        reference the child does too (each inherited gene is ≥ the reference's).
        """
        ks: list[tuple[int, ...]] = []
        es: list[tuple[int, ...]] = []
        for s in range(self.num_stages):
            d = rng.choice([len(a.ks[s]), len(b.ks[s])])
            stage_k: list[int] = []
            stage_e: list[int] = []
            for i in range(d):
                donors = [x for x in (a, b) if i < len(x.ks[s])]
                stage_k.append(rng.choice(donors).ks[s][i])
                stage_e.append(rng.choice(donors).e[s][i])
            ks.append(tuple(stage_k))
            es.append(tuple(stage_e))
        return Arch(ks=tuple(ks), e=tuple(es), resolution=rng.choice([a.resolution, b.resolution]))

    # --- genome --------------------------------------------------------------------------------
    def genes(self, arch: Arch) -> tuple[int, ...]:
        """OFA's padded genome as one flat tuple: resolution, each stage's depth, then kernel and
        expand of every layer slot (0 where the stage is shallower than the slot)."""
        m = self.preset.max_depth
        out = [arch.resolution, *arch.d]
        for ks, es in zip(arch.ks, arch.e, strict=True):
            for i in range(m):
                out += [ks[i], es[i]] if i < len(ks) else [0, 0]
        return tuple(out)

    def hamming(self, a: Arch, b: Arch) -> int:
        """Number of genes (of :meth:`genes`) in which two architectures differ."""
        return sum(x != y for x, y in zip(self.genes(a), self.genes(b), strict=True))

    # --- predictor encoding --------------------------------------------------------------------
    def encode(self, arch: Arch) -> list[float]:
        """Fixed-length numeric features: one-hot kernel/expand per layer slot (zeros if inactive),
        one-hot depth per stage, one-hot resolution."""
        p = self.preset
        out: list[float] = []
        for s in range(self.num_stages):
            for i in range(p.max_depth):
                active = i < len(arch.ks[s])
                out += [float(active and arch.ks[s][i] == k) for k in p.kernel_choices]
                out += [float(active and arch.e[s][i] == e) for e in p.expand_choices]
            out += [float(len(arch.ks[s]) == d) for d in p.depth_choices]
        out += [float(arch.resolution == r) for r in p.resolutions]
        return out
