"""``SearchSpace``: sampling, mutation, crossover and the CAS containment relation over ``Arch``.

Every random operation takes an explicit ``random.Random`` so searches are reproducible from a seed.
The ``*_containing`` variants only ever produce architectures that contain a reference architecture
(REG-NAS's CAS: deeper stages, larger kernels, larger expand ratios, wider outputs, layers and
channels as prefixes), which is what keeps a larger family member a weight-superset of the one
below. Spaces whose reference draws kernel and expand ratio once per stage (``genes_per="stage"``,
AttentiveNAS) keep every stage uniform under all of these operations.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from famc.errors import FamcError
from famc.space.arch import Arch, ArchRecord, expand_ratio
from famc.space.interop import CONFIG_FORMATS, Config, ConfigFormat
from famc.space.presets import Preset, width_choices

T = TypeVar("T")


class SearchSpace:
    """The architectures one preset's supernet can run."""

    def __init__(self, preset: Preset) -> None:
        self.preset = preset
        self.widths = tuple(width_choices(w) for w in preset.width_genes)  # choices per Arch.w

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
        total = len(p.resolutions)
        for stage in p.stages:
            per_layer = len(p.kernel_choices) * len(p.expands(stage))
            if p.genes_per == "stage":
                total *= sum(per_layer if d else 1 for d in p.depths(stage))
            else:
                total *= sum(per_layer**d for d in p.depths(stage))
        for choices in self.widths:
            total *= len(choices)
        return total

    # --- canonical members ---------------------------------------------------------------------
    def _extreme(self, pick: Callable[[tuple[Any, ...]], Any]) -> Arch:
        p = self.preset
        depths = [pick(p.depths(s)) for s in p.stages]
        return Arch(
            ks=tuple((pick(p.kernel_choices),) * d for d in depths),
            e=tuple((pick(p.expands(s)),) * d for s, d in zip(p.stages, depths, strict=True)),
            resolution=pick(p.resolutions),
            w=tuple(pick(c) for c in self.widths),
        )

    def largest(self) -> Arch:
        return self._extreme(max)

    def smallest(self) -> Arch:
        return self._extreme(min)

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

    def _outside(self, what: str) -> FamcError:
        return FamcError(f"architecture outside {self.name}: {what}")

    def validate(self, arch: Arch) -> Arch:
        """Return ``arch`` or raise naming the first gene outside the space and its allowed values."""
        p = self.preset
        if arch.resolution not in p.resolutions:
            raise self._outside(f"resolution {arch.resolution} not in {list(p.resolutions)}")
        if len(arch.ks) != self.num_stages:
            raise self._outside(f"{len(arch.ks)} stages, the space has {self.num_stages}")
        if len(arch.w) != len(self.widths):
            raise self._outside(f"{len(arch.w)} widths, the space has {len(self.widths)}")
        for j, (w, choices) in enumerate(zip(arch.w, self.widths, strict=True)):
            if w not in choices:
                raise self._outside(f"w[{j}]={w} not in {list(choices)}")
        for s, (stage, ks, es) in enumerate(zip(p.stages, arch.ks, arch.e, strict=True)):
            if len(ks) not in p.depths(stage):
                raise self._outside(f"d[{s}]={len(ks)} not in {list(p.depths(stage))}")
            for i, (k, e) in enumerate(zip(ks, es, strict=True)):
                if k not in p.kernel_choices:
                    raise self._outside(f"ks[{s}][{i}]={k} not in {list(p.kernel_choices)}")
                if e not in p.expands(stage):
                    raise self._outside(f"e[{s}][{i}]={e} not in {list(p.expands(stage))}")
            if p.genes_per == "stage" and (len(set(ks)) > 1 or len(set(es)) > 1):
                raise self._outside(
                    f"stage {s} mixes kernels {list(ks)} or expand ratios {list(es)}; "
                    f"{self.name} chooses one of each per stage"
                )
        return arch

    def arch_from_dict(self, data: Mapping[str, Any] | ArchRecord) -> Arch:
        """Parse the ``Arch.to_dict()`` form (as read from JSON, or as an ``ArchRecord``) and
        validate it against the space."""
        if isinstance(data, ArchRecord):
            data = data.model_dump()
        try:
            ks = tuple(tuple(int(k) for k in stage) for stage in data["ks"])
            es = tuple(tuple(expand_ratio(e) for e in stage) for stage in data["e"])
            resolution = int(data["resolution"])
            w = tuple(int(x) for x in data.get("w") or ())
            arch = Arch(ks=ks, e=es, resolution=resolution, w=w)
        except (KeyError, TypeError, ValueError) as exc:
            keys = "resolution, d, ks, e (per-stage lists)" + (", w" if self.widths else "")
            raise FamcError(
                f"malformed architecture {dict(data)!r}: expected keys {keys} ({exc})"
            ) from None
        if "d" in data and list(data["d"]) != list(arch.d):
            raise FamcError(f"malformed architecture: d={list(data['d'])} but ks has {arch.d}")
        return self.validate(arch)

    # --- the references' configuration formats (famc.space.interop) ----------------------------
    def _format(self, family: str) -> ConfigFormat:
        fmt = CONFIG_FORMATS[self.preset.config_format]
        if fmt.family != family:
            raise FamcError(
                f"space {self.name} reads {fmt.family} configurations, not {family}'s: use "
                f"from_{fmt.family} / to_{fmt.family}"
            )
        return fmt

    def from_ofa(self, cfg: Config, resolution: int) -> Arch:
        """Convert an OFA configuration (``OFAMobileNetV3``: ``ks``/``e`` per block slot and ``d``
        per stage; ``OFAResNets``: ``d``, ``e`` per block and width-multiplier indices ``w``)."""
        return self._format("ofa").decode(self, {**cfg, "resolution": resolution})

    def to_ofa(self, arch: Arch) -> dict[str, list[Any]]:
        """OFA's padded form; inactive slots repeat the stage's last active layer (OFA ignores them)."""
        return self._format("ofa").encode(self, arch)

    def from_attentivenas(self, cfg: Config) -> Arch:
        """Convert an AttentiveNAS configuration: ``resolution``, ``width`` per elastic position,
        ``depth``, ``kernel_size`` and ``expand_ratio`` per stage."""
        return self._format("attentivenas").decode(self, cfg)

    def to_attentivenas(self, arch: Arch) -> dict[str, Any]:
        return self._format("attentivenas").encode(self, arch)

    # --- CAS -----------------------------------------------------------------------------------
    def contains(self, small: Arch, big: Arch) -> bool:
        """CAS: ``big`` holds every weight ``small`` uses (depth, kernel, expand and width all ≥;
        a layer's channels are a prefix of the wider layer's)."""
        for sk, se, bk, be in zip(small.ks, small.e, big.ks, big.e, strict=True):
            if len(bk) < len(sk):
                return False
            for i in range(len(sk)):
                if bk[i] < sk[i] or be[i] < se[i]:
                    return False
        return all(b >= s for s, b in zip(small.w, big.w, strict=True))

    # --- sampling ------------------------------------------------------------------------------
    def sample(self, rng: random.Random) -> Arch:
        """Uniform over each gene independently (OFA's ``sample_active_subnet``)."""
        return self.sample_containing(self.smallest_skeleton(), rng)

    def smallest_skeleton(self) -> Arch:
        """The least architecture under CAS with a free resolution gene: constrains nothing."""
        s = self.smallest()
        return Arch(ks=s.ks, e=s.e, resolution=0, w=s.w)

    def _genes(self, d: int) -> int:
        """How many (kernel, expand) pairs a stage of depth ``d`` draws."""
        return d if self.preset.genes_per == "layer" else min(d, 1)

    @staticmethod
    def _spread(genes: list[T], d: int) -> tuple[T, ...]:
        """A stage's ``d`` layer genes from its drawn ones (one per layer, or one for all)."""
        return tuple(genes) if len(genes) == d else tuple(genes[:1] * d)

    def sample_containing(self, ref: Arch, rng: random.Random) -> Arch:
        """A random architecture that contains ``ref`` (genes drawn uniformly from the allowed ones)."""
        p = self.preset
        ks: list[tuple[int, ...]] = []
        es: list[tuple[float, ...]] = []
        for s, stage in enumerate(p.stages):
            d = rng.choice([d for d in p.depths(stage) if d >= len(ref.ks[s])])
            n = self._genes(d)
            ks.append(self._spread([rng.choice(self._kernels_at(ref, s, i)) for i in range(n)], d))
            es.append(self._spread([rng.choice(self._expands_at(ref, s, i)) for i in range(n)], d))
        resolution = rng.choice(p.resolutions)
        w = tuple(rng.choice(self._widths_at(ref, j)) for j in range(len(self.widths)))
        return Arch(ks=tuple(ks), e=tuple(es), resolution=resolution, w=w)

    def _kernels_at(self, ref: Arch, s: int, i: int) -> list[int]:
        lo = ref.ks[s][i] if i < len(ref.ks[s]) else 0
        return [k for k in self.preset.kernel_choices if k >= lo]

    def _expands_at(self, ref: Arch, s: int, i: int) -> list[float]:
        lo = ref.e[s][i] if i < len(ref.e[s]) else 0
        return [e for e in self.preset.expands(self.preset.stages[s]) if e >= lo]

    def _widths_at(self, ref: Arch, j: int) -> list[int]:
        return [w for w in self.widths[j] if w >= ref.w[j]]

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
        es: list[tuple[float, ...]] = []
        for s, stage in enumerate(p.stages):
            d = len(arch.ks[s])
            if rng.random() < prob:
                d = rng.choice([x for x in p.depths(stage) if x >= len(ref.ks[s])])
            stage_k: list[int] = []
            stage_e: list[float] = []
            for i in range(self._genes(d)):
                k_opts, e_opts = self._kernels_at(ref, s, i), self._expands_at(ref, s, i)
                old_k = arch.ks[s][i] if i < len(arch.ks[s]) else None
                old_e = arch.e[s][i] if i < len(arch.e[s]) else None
                stage_k.append(
                    old_k if old_k is not None and rng.random() >= prob else rng.choice(k_opts)
                )
                stage_e.append(
                    old_e if old_e is not None and rng.random() >= prob else rng.choice(e_opts)
                )
            ks.append(self._spread(stage_k, d))
            es.append(self._spread(stage_e, d))
        resolution = arch.resolution
        if rng.random() < prob:
            resolution = rng.choice(p.resolutions)
        w = tuple(
            rng.choice(self._widths_at(ref, j)) if rng.random() < prob else old
            for j, old in enumerate(arch.w)
        )
        return Arch(ks=tuple(ks), e=tuple(es), resolution=resolution, w=w)

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        """Uniform crossover: every gene from either parent.

        A layer present in only one parent comes from that parent, so when both parents contain a
        reference the child does too (each inherited gene is ≥ the reference's).
        """
        ks: list[tuple[int, ...]] = []
        es: list[tuple[float, ...]] = []
        for s in range(self.num_stages):
            d = rng.choice([len(a.ks[s]), len(b.ks[s])])
            stage_k: list[int] = []
            stage_e: list[float] = []
            for i in range(self._genes(d)):
                donors = [x for x in (a, b) if i < len(x.ks[s])]
                stage_k.append(rng.choice(donors).ks[s][i])
                stage_e.append(rng.choice(donors).e[s][i])
            ks.append(self._spread(stage_k, d))
            es.append(self._spread(stage_e, d))
        resolution = rng.choice([a.resolution, b.resolution])
        w = tuple(rng.choice(pair) for pair in zip(a.w, b.w, strict=True))
        return Arch(ks=tuple(ks), e=tuple(es), resolution=resolution, w=w)

    # --- genome --------------------------------------------------------------------------------
    def genes(self, arch: Arch) -> tuple[float, ...]:
        """OFA's padded genome as one flat tuple: resolution, each stage's depth, then kernel and
        expand of every layer slot (0 where the stage is shallower than the slot)."""
        m = self.preset.max_depth
        out: list[float] = [arch.resolution, *arch.d]
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
        one-hot depth per stage, one-hot resolution, one-hot width per elastic position."""
        p = self.preset
        out: list[float] = []
        for s, stage in enumerate(p.stages):
            for i in range(p.max_depth):
                active = i < len(arch.ks[s])
                out += [float(active and arch.ks[s][i] == k) for k in p.kernel_choices]
                out += [float(active and arch.e[s][i] == e) for e in p.expands(stage)]
            out += [float(len(arch.ks[s]) == d) for d in p.depths(stage)]
        out += [float(arch.resolution == r) for r in p.resolutions]
        for w, choices in zip(arch.w, self.widths, strict=True):
            out += [float(w == c) for c in choices]
        return out
