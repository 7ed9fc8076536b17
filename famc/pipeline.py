"""``famc build``: config → data + supernet → search → family → members on disk.

``prepare`` does every check that needs no search (config, data, checkpoint fits the preset, latency
tables cover the space, budgets are ordered) — it is all ``famc validate`` runs. ``build`` then
searches the REG-NAS family and the baseline family and writes the release into a temporary
directory that is renamed into place only when complete.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from famc import __version__
from famc.config import Budget, DataConfig, FamilyConfig, load_family_config
from famc.data import DataSplits, ImageSet, load_dataset, to_input
from famc.errors import FamcError
from famc.export import ArtifactRecord, Preprocessing, export_member
from famc.family import FamilyManifest, load_member, member_info, write_member
from famc.io import replace, sha256_path, tmp_sibling, write_text
from famc.latency import LatencyTable
from famc.latency.profile import measure_archs
from famc.latency.target import Target, load_target
from famc.metrics import pairwise, top1
from famc.report import write_report
from famc.report.gates import check_gates
from famc.search.cache import ResultCache, result_key
from famc.search.evolution import Constraint, EvolutionSettings
from famc.search.family import FoundMember, MemberSpec, search_family
from famc.space import Arch, SearchSpace, flops, get_space, params
from famc.supernet import ElasticMBV3, build_supernet, load_checkpoint
from famc.supernet.evaluate import Evaluator


@dataclass
class MemberPlan:
    name: str
    target_path: str
    target: Target
    budget: Budget
    table: LatencyTable | None
    constraint: Constraint

    def predicted_ms(self, space: SearchSpace, arch: Arch) -> float | None:
        return None if self.table is None else self.table.predict(arch, space)


@dataclass
class Prepared:
    config_path: Path
    cfg: FamilyConfig
    space: SearchSpace
    data: DataSplits
    net: ElasticMBV3
    supernet_sha256: str
    plans: list[MemberPlan]
    calib: ImageSet
    search_split: ImageSet


def _constraint(name: str, budget: Budget, table: LatencyTable | None,
                space: SearchSpace) -> Constraint:  # fmt: skip
    if budget.kind == "latency_ms":
        assert table is not None
        return Constraint(lambda a: table.predict(a, space), budget.value,
                          lambda v: f"{v:.3f} ms", name)  # fmt: skip
    if budget.kind == "mflops":
        return Constraint(lambda a: flops(space, a) / 1e6, budget.value,
                          lambda v: f"{v:.2f} MFLOPs", name)  # fmt: skip
    return Constraint(lambda a: params(space, a) / 1e6, budget.value,
                      lambda v: f"{v:.3f} M params", name)  # fmt: skip


def _plan_member(cfg: FamilyConfig, space: SearchSpace, index: int) -> MemberPlan:
    member = cfg.members[index]
    target = load_target(member.target)
    budget = member.budget
    if budget is None:
        raise FamcError(
            f"member `{member.name}`: no budget; add `budget: {{latency_ms: ...}}` (needs a "
            f"latency table in {member.target}) or `budget: {{mflops: ...}}` / `{{mparams: ...}}`"
        )
    # a latency budget needs the target's table (its errors say how to measure one); with a
    # FLOPs/params budget the table, when there is one, still gives the predicted latency
    has_table = space.name in target.tables and target.budget in (None, "latency_ms")
    table = target.table(space) if budget.kind == "latency_ms" or has_table else None
    if table is not None:
        table.check_covers(space)
    return MemberPlan(member.name, member.target, target, budget, table,
                      _constraint(member.name, budget, table, space))  # fmt: skip


def _check_order(plans: list[MemberPlan], space: SearchSpace) -> None:
    """Members are listed smallest first: a larger member's budget must admit more."""
    for lo, hi in zip(plans, plans[1:], strict=False):
        same_model = lo.budget.kind == hi.budget.kind and (
            lo.budget.kind != "latency_ms" or lo.table is hi.table or (
                lo.table is not None and hi.table is not None and lo.table.source == hi.table.source
            )
        )  # fmt: skip
        if same_model and hi.budget.value < lo.budget.value:
            raise FamcError(
                f"members must be listed smallest first, but `{hi.name}`'s budget "
                f"{hi.constraint.describe(hi.budget.value)} is below `{lo.name}`'s "
                f"{lo.constraint.describe(lo.budget.value)}: reorder the members or fix the budgets"
            )


def prepare(config_path: str | Path) -> Prepared:
    """Every check a build needs before searching; fast (seconds)."""
    config_path = Path(config_path)
    cfg = load_family_config(config_path)
    space = get_space(cfg.space)
    plans = [_plan_member(cfg, space, i) for i in range(len(cfg.members))]
    _check_order(plans, space)
    d = cfg.data
    data = load_dataset(d.name, d.root, search_size=d.search_size, calib_size=d.calib_size,
                        seed=d.seed, image_size=d.image_size, channels=d.channels)  # fmt: skip
    if data.channels != space.preset.in_channels or data.num_classes != space.preset.num_classes:
        raise FamcError(
            f"{config_path}: dataset {data.name} has {data.channels} channel(s) and "
            f"{data.num_classes} classes but space {space.name} expects "
            f"{space.preset.in_channels} and {space.preset.num_classes}: pick a matching preset"
        )
    net = build_supernet(space)
    load_checkpoint(net, cfg.supernet)
    ev = cfg.evaluation
    calib = (
        data.calib
        if ev.calib_images is None
        else data.calib.subset(range(min(ev.calib_images, len(data.calib))))
    )
    search_split = (
        data.search
        if ev.search_images is None
        else data.search.subset(range(min(ev.search_images, len(data.search))))
    )
    return Prepared(config_path, cfg, space, data, net.eval(), sha256_path(Path(cfg.supernet)),
                    plans, calib, search_split)  # fmt: skip


class CachedEvaluation:
    """Correctness vectors per (arch, split), computed once and kept on disk across builds."""

    def __init__(self, p: Prepared, cache_dir: Path | None) -> None:
        ev = p.cfg.evaluation
        self.evaluator = Evaluator(p.net, p.calib, p.data.mean, p.data.std,
                                   batch_size=ev.batch_size,
                                   bn_convention=ev.bn_convention)  # type: ignore[arg-type]  # fmt: skip
        fingerprint = p.data.fingerprint()
        self.context = (
            f"famc-eval-v2|{p.supernet_sha256}|{fingerprint}|bn={ev.bn_convention}"
            f"|calib={len(p.calib)}|batch={ev.batch_size}"
        )
        path = None
        if cache_dir is not None:
            path = cache_dir / f"{p.space.name}-{p.supernet_sha256[:12]}-{fingerprint[:12]}.jsonl"
        self.cache = ResultCache(path)
        self.splits = {"search": p.search_split, "test": p.data.test}
        self.evaluated = 0

    def correct(self, arch: Arch, split: str) -> torch.Tensor:
        images = self.splits[split]
        key = result_key(arch, f"{self.context}|{split}={len(images)}")
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        vec = self.evaluator.correct(arch, images)
        self.evaluated += 1
        self.cache.put(key, vec)
        return vec


def default_cache_dir() -> Path:
    root = os.environ.get("FAMC_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "famc") / "evals"


def _member_records(p: Prepared, found: list[FoundMember], ce: CachedEvaluation,
                    with_paths: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:  # fmt: skip
    records, vectors = [], []
    for plan, m in zip(p.plans, found, strict=True):
        arch = m.best.arch
        test = ce.correct(arch, "test")
        vectors.append((m.name, test))
        records.append({
            "name": m.name,
            "target": Path(plan.target_path).stem,
            "arch": arch.to_dict(),
            "contains": m.contains,
            "top1": round(top1(test), 3),
            "search_top1": round(m.best.score.top1, 3),
            "latency_ms": {
                "predicted": None if plan.table is None else round(plan.predicted_ms(p.space, arch), 4),  # type: ignore[arg-type]
                "budget": plan.budget.value if plan.budget.kind == "latency_ms" else None,
            },
            "budget": {plan.budget.kind: plan.budget.value},
            "flops": flops(p.space, arch),
            "params": params(p.space, arch),
            "path": f"members/{m.name}" if with_paths else None,
        })  # fmt: skip
    return records, pairwise(vectors)


def _summary(members: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "mean_top1": round(sum(m["top1"] for m in members) / len(members), 3),
        "mean_pairwise_nfr": round(sum(x["nfr"] for x in pairs) / len(pairs), 4) if pairs else 0.0,
    }


class GateFailure(FamcError):
    """The release was written, but some of its ``gates:`` failed (exit code 3)."""

    exit_code = 3

    def __init__(self, lines: list[str], release: Path) -> None:
        super().__init__("\n".join([*lines, f"release written to {release} (see report.md)"]))
        self.release = release


def build(config_path: str | Path, *, out: str | Path | None = None, force: bool = False,
          gates: bool = True, progress: bool = True,
          log: Callable[[str], None] = print) -> Path:  # fmt: skip
    """Search, export and report the family; returns the release directory. Raises
    ``GateFailure`` after writing everything when a gate fails."""
    started = time.perf_counter()
    p = prepare(config_path)
    out_dir = Path(out if out is not None else p.cfg.out)
    if out_dir.exists() and not force:
        raise FamcError(f"{out_dir} already exists: pass --force to replace it, or --out DIR")
    cache_dir = (
        Path(p.cfg.evaluation.cache_dir) if p.cfg.evaluation.cache_dir else default_cache_dir()
    )
    ce = CachedEvaluation(p, cache_dir)
    s = p.cfg.search
    settings = EvolutionSettings(s.population, s.generations, s.parent_ratio, s.mutation_ratio,
                                 s.mutate_prob, s.max_tries)  # fmt: skip
    specs = [MemberSpec(plan.name, plan.constraint) for plan in p.plans]

    def search_correct(a: Arch) -> torch.Tensor:
        return ce.correct(a, "search")

    common = dict(lambda1=s.lambda1, lambda2=s.lambda2, reference=s.reference, seed=s.seed,
                  progress=progress)  # fmt: skip
    family = search_family(p.space, specs, search_correct, settings, regnas=True, **common)  # type: ignore[arg-type]
    baseline = (
        search_family(p.space, specs, search_correct, settings, regnas=False, **common)  # type: ignore[arg-type]
        if s.baseline == "r0"
        else None
    )
    log(f"evaluating {len(family)} members on {len(p.data.test)} test images")
    members, pairs = _member_records(p, family, ce, with_paths=True)
    summary: dict[str, Any] = {"family": _summary(members, pairs)}
    baseline_block = None
    if baseline is not None:
        b_members, b_pairs = _member_records(p, baseline, ce, with_paths=False)
        baseline_block = {"members": b_members, "pairwise": b_pairs}
        summary["baseline"] = _summary(b_members, b_pairs)
        f, b = summary["family"], summary["baseline"]
        summary["nfr_reduction_pct"] = (
            round(100 * (1 - f["mean_pairwise_nfr"] / b["mean_pairwise_nfr"]), 2)
            if b["mean_pairwise_nfr"] > 0 else None
        )  # fmt: skip
        summary["top1_cost"] = round(b["mean_top1"] - f["mean_top1"], 3)
    pre = {
        "channels": p.data.channels,
        "mean": list(p.data.mean),
        "std": list(p.data.std),
        "resize": "bilinear",
        "layout": "NCHW",
        "resolution": {m.name: m.best.arch.resolution for m in family},
        "class_names": list(p.data.classes),
    }
    manifest = FamilyManifest.model_validate({
        "famc_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "space": p.space.name,
        "preprocessing": pre,
        "members": members,
        "pairwise": pairs,
        "baseline": baseline_block,
        "summary": summary,
        "search": {**s.model_dump(), "evaluation": p.cfg.evaluation.model_dump(exclude={"cache_dir"}),
                   "search_images": len(p.search_split), "calib_images": len(p.calib)},
        "inputs": _inputs(p),
    })  # fmt: skip
    tmp = tmp_sibling(out_dir.resolve(), ".build")
    try:
        data = manifest.model_dump(mode="json")
        records = {r["name"]: r for r in data["members"]}
        measured = _measure_members(p, family, progress)
        for plan, m in zip(p.plans, family, strict=True):
            member_dir = tmp / "members" / m.name
            model = ce.evaluator.model(m.best.arch).to(memory_format=torch.contiguous_format)
            member_pre = {**pre, "resolution": m.best.arch.resolution}
            write_member(member_dir, p.space.name, m.best.arch.to_dict(), model, member_pre,
                         p.cfg.data.model_dump())  # fmt: skip
            log(f"exporting {m.name} ({', '.join(plan.target.export)}) with parity on "
                f"{len(p.data.test)} test images")  # fmt: skip
            artifacts = export_member(
                model, member_dir, Preprocessing.model_validate(member_pre),
                list(plan.target.export), _test_batches(p, m.best.arch.resolution),
                coreml_precision=plan.target.precision,
            )  # fmt: skip
            records[m.name]["artifacts"] = {
                fmt: {**rec.model_dump(mode="json"),
                      "path": None if rec.path is None else str(Path(rec.path).relative_to(tmp))}
                for fmt, rec in artifacts.items()
            }  # fmt: skip
            records[m.name]["latency_ms"]["measured"] = round(measured[m.name], 4)
            records[m.name]["latency_ms"]["measured_on"] = (
                f"{plan.target.runtime}, {plan.target.threads} thread(s), this host"
            )
        trace = [
            {"family": fam, "member": m.name, **c.to_dict()}
            for fam, found in (("reg-nas", family), ("baseline", baseline or []))
            for m in found
            for c in m.trace
        ]
        write_text(tmp / "trace.jsonl", "".join(json.dumps(t) + "\n" for t in trace))
        data["gates"] = check_gates(data, p.cfg.gates) if gates else None
        data["summary"]["build_seconds"] = round(time.perf_counter() - started, 1)
        data["summary"]["evaluations"] = {"run": ce.evaluated, "cache_hits": ce.cache.hits}
        write_text(tmp / "family.json", json.dumps(data, indent=2) + "\n")
        write_report(tmp)
        replace(tmp, out_dir)  # --force: the old release is swapped out only now, complete
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    failed = [g for g in data["gates"] or [] if not g["passed"]]
    if failed:
        raise GateFailure([f"gate {g['name']} failed: {g['detail']}" for g in failed], out_dir)
    return out_dir


def _test_batches(p: Prepared, resolution: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The full test split, preprocessed exactly as family.json tells consumers to."""
    return [
        (to_input(x, resolution, p.data.mean, p.data.std, channels_last=False), y)
        for x, y in p.data.test.batches(p.cfg.evaluation.batch_size)
    ]


def _measure_members(p: Prepared, found: list[FoundMember], progress: bool) -> dict[str, float]:
    """End-to-end latency of every member on its target's runtime, on this host (ms)."""
    out: dict[str, float] = {}
    for plan, m in zip(p.plans, found, strict=True):
        t = plan.target
        out[m.name] = measure_archs(p.space, [m.best.arch], t.runtime, t.threads, batch=1)[0]
    return out


def export_one(member: Path, formats: list[str], precision: str) -> dict[str, ArtifactRecord]:
    """``famc export``: one member, parity on the full test split of the data it was built on."""
    info = member_info(member)
    model = load_member(member)
    pre = Preprocessing.model_validate(info["preprocessing"])
    d = DataConfig.model_validate(info["data"])
    data = load_dataset(d.name, d.root, search_size=d.search_size, calib_size=d.calib_size,
                        seed=d.seed, image_size=d.image_size, channels=d.channels)  # fmt: skip
    batches = [
        (to_input(x, pre.resolution, pre.mean, pre.std, channels_last=False), y)
        for x, y in data.test.batches(500)
    ]
    return export_member(model, member, pre, formats, batches,
                         coreml_precision=precision)  # type: ignore[arg-type]  # fmt: skip


def _inputs(p: Prepared) -> dict[str, Any]:
    tables = {pl.table.source: sha256_path(Path(pl.table.source)) for pl in p.plans if pl.table}
    return {
        "config": str(p.config_path),
        "config_sha256": hashlib.sha256(p.config_path.read_bytes()).hexdigest(),
        "supernet": p.cfg.supernet,
        "supernet_sha256": p.supernet_sha256,
        "data": p.data.name,
        "data_fingerprint": p.data.fingerprint(),
        "tables": tables,
        "targets": {pl.name: pl.target_path for pl in p.plans},
    }
