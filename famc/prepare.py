"""Build stage 1, prepare: config → data, supernet and one plan per member.

``prepare`` does every check that needs no search (config, data, checkpoint fits the preset, targets
can cost the space, budgets are ordered); it is all ``famc validate`` runs, in seconds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints

from famc.config import FamilyConfig, MemberName, load_family_config
from famc.cost import COST_MODELS, CostModel
from famc.data import DataConfig, DataSplits, Images, split_indices
from famc.errors import FamcError
from famc.io import Strict, sha256_path
from famc.latency import LatencyTable, Target, load_target
from famc.predictor import AccuracyPredictor
from famc.space import Arch, SearchSpace, get_space
from famc.supernet import ElasticNet, build_supernet, load_checkpoint


@dataclass(frozen=True)
class MemberPlan:
    """One member to build: its target, cost model and budget, and the table that predicts its
    latency (when its target has one for the space)."""

    name: str
    target_path: str
    target: Target
    cost_model: CostModel
    budget: float
    table: LatencyTable | None

    def cost(self, space: SearchSpace, arch: Arch) -> float:
        return self.cost_model.cost(space, arch, self.table)

    def predicted_ms(self, space: SearchSpace, arch: Arch) -> float | None:
        return None if self.table is None else self.table.predict(arch, space)

    def cost_range(self, space: SearchSpace) -> tuple[float, float]:
        """The cost of the smallest and of the largest sub-network under this member's model."""
        small = space.smallest()
        return self.cost(space, small), self.cost(space, space.largest())


class Inputs(Strict):
    """What the build read, by hash, so a release can be traced back to its inputs."""

    config: str
    config_sha256: str
    supernet: str
    supernet_sha256: str
    data: str
    data_fingerprint: str
    tables: dict[Annotated[str, StringConstraints(min_length=1)], str] = Field(
        description="latency table path -> sha256"
    )
    targets: dict[MemberName, str] = Field(description="member name -> target file")


@dataclass(frozen=True)
class Prepared:
    """Everything the later stages need, checked."""

    config_path: Path
    cfg: FamilyConfig
    space: SearchSpace
    data: DataSplits
    net: ElasticNet
    plans: list[MemberPlan]
    calib: Images
    search_split: Images
    inputs: Inputs
    notes: list[str]  # what validate and build should tell the user
    split_overlap_allowed: bool = False
    predictor: AccuracyPredictor | None = None  # pre-screens search candidates

    def input_paths(self) -> list[Path]:
        """Every file or directory the build reads, so no output may swallow one."""
        i, screen = self.inputs, self.cfg.search.prescreen
        paths = [
            Path(i.config),
            Path(i.supernet),
            *map(Path, i.tables),
            *map(Path, i.targets.values()),
            *([Path(screen.predictor)] if screen is not None else []),
        ]
        return paths + ([Path(self.cfg.data.root)] if self.cfg.data.root else [])


def _plan_member(cfg: FamilyConfig, space: SearchSpace, index: int) -> MemberPlan:
    member = cfg.members[index]
    target = load_target(member.target)
    budget = member.budget
    if budget is None:
        keys = " / ".join(f"{{{name}: ...}}" for name in COST_MODELS)
        raise FamcError(
            f"member `{member.name}`: no budget; add `budget:` with one of {keys} (latency_ms "
            f"needs a latency table in {member.target})"
        )
    model = budget.model
    if model.needs_table:
        target.cost_model(space)  # says how to measure a table when the target lacks one
    # with an analytic budget the table, when there is one, still gives the predicted latency
    has_table = space.name in target.tables and target.budget in (None, "latency_ms")
    table = target.table(space) if model.needs_table or has_table else None
    if table is not None:
        table.check_covers(space)
    return MemberPlan(member.name, member.target, target, model, budget.value, table)


def _check_order(plans: list[MemberPlan]) -> None:
    """Members are listed smallest first: a larger member's budget must admit more."""
    for lo, hi in zip(plans, plans[1:], strict=False):
        same_model = lo.cost_model is hi.cost_model and (
            not lo.cost_model.needs_table
            or (
                lo.table is not None and hi.table is not None and lo.table.source == hi.table.source
            )
        )
        if same_model and hi.budget < lo.budget:
            raise FamcError(
                f"members must be listed smallest first, but `{hi.name}`'s budget "
                f"{hi.cost_model.describe(hi.budget)} is below `{lo.name}`'s "
                f"{lo.cost_model.describe(lo.budget)}: reorder the members or fix the budgets"
            )


def _check_feasible(plans: list[MemberPlan], space: SearchSpace) -> None:
    """A budget below the smallest sub-network is refused now, not after minutes of search."""
    for plan in plans:
        lo, _ = plan.cost_range(space)
        if plan.budget < lo:
            describe = plan.cost_model.describe
            raise FamcError(
                f"member `{plan.name}`: budget {describe(plan.budget)} is below the smallest "
                f"sub-network of {space.name} ({describe(lo)} on its cost model): raise the "
                "budget or pick a smaller space"
            )


def _trained_split(meta: dict[str, str]) -> DataConfig | None:
    """The data split a famc checkpoint was trained on (its metadata records its config)."""
    try:
        return DataConfig.model_validate(json.loads(meta["config"])["data"])
    except (KeyError, TypeError, ValueError):
        return None


def _check_split(config_path: Path, cfg: FamilyConfig, data: DataSplits, meta: dict[str, str],
                 allow_overlap: bool) -> str | None:  # fmt: skip
    """Refuse a search split holding images the supernet was trained on: ranking candidates on
    them would favour what the supernet memorised. Returns a note when it cannot be checked."""
    trained = _trained_split(meta)
    if trained is None or trained.name != data.name:
        return f"note: {cfg.supernet} does not record a training split on {data.name}; the " \
               "search split could not be checked against it"  # fmt: skip
    n_pool = len(data.train) + len(data.search)
    train_idx, _, _ = split_indices(n_pool, trained.search_size, trained.calib_size, trained.seed)
    overlap = len(set(train_idx.tolist()) & set(data.search_indices.tolist()))
    if overlap and not allow_overlap:
        fields = [f for f in ("seed", "search_size") if getattr(trained, f) != getattr(cfg.data, f)]
        raise FamcError(
            f"{config_path}: field `data.{(fields or ['seed'])[0]}`: the search split holds "
            f"{overlap} images the supernet was trained on (it was trained with data seed "
            f"{trained.seed}, search_size {trained.search_size}): use the training split's "
            "settings, or pass --allow-split-overlap to rank on them anyway"
        )
    return None


def first_images(images: Images, n: int | None) -> Images:
    """The first ``n`` images of a split (all when ``n`` is None): evaluation's subsets."""
    return images if n is None else images.subset(range(min(n, len(images))))


def prepare(config_path: str | Path, allow_split_overlap: bool = False) -> Prepared:
    """Every check a build needs before searching; fast (seconds)."""
    config_path = Path(config_path)
    cfg = load_family_config(config_path)
    space = get_space(cfg.space)
    plans = [_plan_member(cfg, space, i) for i in range(len(cfg.members))]
    _check_order(plans)
    _check_feasible(plans, space)
    data = cfg.data.load()
    space.check_input(data.name, data.channels, data.num_classes, str(config_path))
    net = build_supernet(space)
    meta = load_checkpoint(net, cfg.supernet)
    note = _check_split(config_path, cfg, data, meta, allow_split_overlap)
    ev = cfg.evaluation
    inputs = Inputs(
        config=str(config_path),
        config_sha256=hashlib.sha256(config_path.read_bytes()).hexdigest(),
        supernet=cfg.supernet,
        supernet_sha256=sha256_path(Path(cfg.supernet)),
        data=data.name,
        data_fingerprint=data.fingerprint(),
        tables={p.table.source: sha256_path(Path(p.table.source)) for p in plans if p.table},
        targets={p.name: p.target_path for p in plans},
    )
    screen = cfg.search.prescreen
    predictor = None if screen is None else AccuracyPredictor.load(screen.predictor, space)
    return Prepared(config_path, cfg, space, data, net.eval(), plans,
                    first_images(data.calib, ev.calib_images),
                    first_images(data.search, ev.search_images),
                    inputs, [note] if note else [], allow_split_overlap, predictor)  # fmt: skip
