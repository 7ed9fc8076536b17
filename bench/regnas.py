"""REG-NAS's comparisons on the example family, measured: mean ± std over search seeds.

Each setting searches the whole family of ``examples/fashion/family.yaml`` (its supernet, split,
budgets and search size) once per seed and scores the members on the test split, like REG-NAS's
Table 4.2 and its §4.4 fine-tuning:

    R0         λ1 = 1, λ2 = 0, no CAS: plain NAS, the baseline and Top-1 paragon
    R1         λ1 = 0, λ2 = 1, no CAS: the NFR paragon
    R2         λ1 = 1, λ2 = 1, no CAS
    R2+CAS     REG-NAS (selection: reward)
    eps+CAS    selection: epsilon (``--epsilon`` points below the same seed's R0 member), CAS
    ... +FD    the family above fine-tuned with FD-KD against the member below (famc.finetune)
    R2+CAS +CE the same fine-tuning with cross-entropy only: what FD's reference term adds
    R0 +FD     the baseline family fine-tuned with FD-KD: plain NAS plus Positive-Congruent
               Training, the comparison REG-NAS §4.4 also makes

Every setting's row: NFR of each smaller → larger pair, mean Top-1, the mean pairwise NFR's
reduction against R0 (%), the Top-1 it costs against R0 (points) and the worst member's Top-1
against R0's member of the same budget (points), each mean ± std over seeds. ``--settings`` runs a
subset (R0 always); ``--standalone-epochs 0`` skips the stand-alone training.
Finally the members that ``--standalone-of`` (default eps+CAS, the example's rule) chose for seed 0
are trained from scratch (``famc.train.standalone``, cross-entropy, ``--standalone-epochs``) and
their pairwise NFR printed: what weight sharing alone buys. Results also go to ``OUT/regnas.json``.

Run (many hours on 2 cores; schedule it):
``nice -n 19 .venv/bin/python bench/regnas.py --seeds 3 --out runs/regnas``. ``--smoke`` runs every
step in minutes (population 6, 1 generation, a few hundred images, one epoch on 256 training
images): a pipeline check, not a measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from famc.config import FinetuneConfig  # noqa: E402
from famc.evaluate.cache import CachedEvaluation  # noqa: E402
from famc.evaluate.stage import Evaluated, FamilyResult, MemberResult, family_result  # noqa: E402
from famc.finetune.stage import finetune  # noqa: E402
from famc.metrics import pairwise  # noqa: E402
from famc.prepare import Prepared, prepare  # noqa: E402
from famc.progress import Reporter  # noqa: E402
from famc.search.family import search_family  # noqa: E402
from famc.search.stage import evolution_settings, member_specs  # noqa: E402
from famc.train.standalone import StandaloneRecipe, train_standalone  # noqa: E402

FAMILY = ROOT / "examples" / "fashion" / "family.yaml"

#: setting → (search overrides, CAS, whether NFR enters the search at all)
SEARCHES: dict[str, tuple[dict[str, Any], bool, bool]] = {
    "R0": ({"lambda1": 1.0, "lambda2": 0.0}, False, False),
    "R1": ({"lambda1": 0.0, "lambda2": 1.0}, False, True),
    "R2": ({"lambda1": 1.0, "lambda2": 1.0}, False, True),
    "R2+CAS": ({"lambda1": 1.0, "lambda2": 1.0}, True, True),
    "eps+CAS": ({"lambda1": 1.0, "lambda2": 1.0, "selection": "epsilon"}, True, True),
}
#: fine-tuned setting → (searched setting it starts from, method)
TUNED = {"R2+CAS +FD": ("R2+CAS", "fd-kd"), "eps+CAS +FD": ("eps+CAS", "fd-kd"),
         "R2+CAS +CE": ("R2+CAS", "ce"), "R0 +FD": ("R0", "fd-kd")}  # fmt: skip


def _with(p: Prepared, **sections: Any) -> Prepared:
    """``p`` with config sections replaced (search settings, fine-tuning)."""
    return dataclasses.replace(p, cfg=p.cfg.model_copy(update=sections))


def smoke(p: Prepared, tmp: Path) -> Prepared:
    """Few images everywhere and a tiny search, with a private evaluation cache."""
    d = p.data
    data = dataclasses.replace(d, train=d.train.subset(range(256)), test=d.test.subset(range(500)))
    search = p.cfg.search.model_copy(update={"population": 6, "generations": 1})
    evaluation = p.cfg.evaluation.model_copy(update={"cache_dir": str(tmp / "evals")})
    return dataclasses.replace(
        _with(p, search=search, evaluation=evaluation), data=data,
        search_split=p.search_split.subset(range(200)), calib=p.calib.subset(range(100)),
    )  # fmt: skip


def run_search(p: Prepared, ev: CachedEvaluation, setting: str, seed: int,
               r0: FamilyResult | None = None) -> FamilyResult:  # fmt: skip
    """One family under ``setting``, scored on the test split; ``r0`` (the same seed's R0
    family) gives each budget's Top-1 paragon, as ``famc build`` takes it from its baseline."""
    overrides, cas, nfr = SEARCHES[setting]
    q = _with(p, search=p.cfg.search.model_copy(update={**overrides, "seed": seed}))
    s = q.cfg.search
    paragons = None if r0 is None else [m.found.best.score.top1 for m in r0.members]
    found = search_family(q.space, member_specs(q), ev.search_vectors, evolution_settings(q),
                          regnas=nfr, lambda1=s.lambda1, lambda2=s.lambda2,
                          reference=s.reference, seed=seed, reporter=Reporter("lines"),
                          cas=cas, paragons=paragons)  # fmt: skip
    return family_result(
        [MemberResult(plan, m, ev.correct(m.best.arch, "test"))
         for plan, m in zip(q.plans, found, strict=True)]
    )  # fmt: skip


def run_tuned(p: Prepared, ev: CachedEvaluation, searched: FamilyResult, method: str,
              tune: FinetuneConfig, seed: int) -> FamilyResult:  # fmt: skip
    q = _with(p, finetune=tune.model_copy(update={"method": method}),
              search=p.cfg.search.model_copy(update={"seed": seed}))  # fmt: skip
    tuned = finetune(q, Evaluated(searched, None), ev, print)
    assert tuned is not None
    return tuned.evaluated.family


def row(runs: Sequence[FamilyResult], base: Sequence[FamilyResult]) -> dict[str, list[float]]:
    """Per seed: each pair's NFR, mean Top-1, NFR reduction, Top-1 cost and the largest drop of
    one member's Top-1 against R0's member of the same budget."""
    out: dict[str, list[float]] = {}
    for fam, b in zip(runs, base, strict=True):
        f, s = fam.summary(), b.summary()
        values = {f"{x.ref}→{x.target}": x.nfr for x in fam.pairwise}
        values |= {"mean Top-1": f.mean_top1,
                   "NFR reduction (%)": 100 * (1 - f.mean_pairwise_nfr / s.mean_pairwise_nfr)
                   if s.mean_pairwise_nfr else 0.0,
                   "Top-1 cost (pt)": s.mean_top1 - f.mean_top1,
                   "worst member vs R0 (pt)": min(m.top1 - r.top1 for m, r
                                                  in zip(fam.members, b.members, strict=True))}  # fmt: skip
        for k, v in values.items():
            out.setdefault(k, []).append(v)
    return out


def pm(values: Sequence[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {sd:.2f}"


def standalone(p: Prepared, fam: FamilyResult, epochs: int, log: Callable[[str], None]) -> dict:
    """The chosen architectures trained from scratch (cross-entropy), their pairwise NFR."""
    recipe = StandaloneRecipe(epochs=epochs, batch_size=min(256, len(p.data.train)))
    vectors = []
    for m in fam.members:
        log(f"stand-alone: training {m.plan.name} for {epochs} epoch(s)")
        r = train_standalone(p.space, m.found.best.arch, p.data, recipe)
        vectors.append((m.plan.name, r.correct_vector()))
    pairs = pairwise(vectors)
    return {"recipe": recipe.to_dict(), "pairs": {f"{x.ref}→{x.target}": x.nfr for x in pairs},
            "mean_pairwise_nfr": statistics.fmean(x.nfr for x in pairs)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, default=FAMILY)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epsilon", type=float, default=0.5, help="eps+CAS's points (the example's)")
    ap.add_argument("--finetune-epochs", type=int, default=1)  # the example's
    ap.add_argument("--standalone-epochs", type=int, default=StandaloneRecipe.epochs)
    ap.add_argument("--standalone-of", default="eps+CAS", choices=list(SEARCHES),
                    help="the searched setting whose seed-0 members are trained from scratch")  # fmt: skip
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "regnas")
    ap.add_argument("--smoke", action="store_true", help="minutes: a pipeline check only")
    ap.add_argument("--settings", default=",".join([*SEARCHES, *TUNED]),
                    help="comma-separated subset of the settings (R0 is always run)")  # fmt: skip
    args = ap.parse_args()
    wanted = {"R0", *args.settings.split(",")}
    if args.standalone_epochs > 0:
        wanted.add(args.standalone_of)
    if unknown := wanted - set(SEARCHES) - set(TUNED):
        ap.error(f"unknown setting(s) {sorted(unknown)}; choose from {[*SEARCHES, *TUNED]}")
    wanted |= {TUNED[name][0] for name in wanted & set(TUNED)}  # a tuned family needs its search
    args.out.mkdir(parents=True, exist_ok=True)
    p = prepare(args.config)
    p = _with(p, search=p.cfg.search.model_copy(update={"epsilon_pt": args.epsilon}))
    tune = FinetuneConfig(epochs=args.finetune_epochs)
    if args.smoke:
        p = smoke(p, args.out)
        tune, args.standalone_epochs = tune.model_copy(update={"epochs": 1, "batch_size": 64}), 1
    torch.manual_seed(0)
    ev = CachedEvaluation(p)
    runs = {"R0": [run_search(p, ev, "R0", s) for s in range(args.seeds)]}
    for name in [n for n in SEARCHES if n in wanted and n != "R0"]:
        runs[name] = [run_search(p, ev, name, s, r0) for s, r0 in enumerate(runs["R0"])]
    for name, (start, method) in TUNED.items():
        if name in wanted:
            runs[name] = [run_tuned(p, ev, fam, method, tune, s)
                          for s, fam in enumerate(runs[start])]  # fmt: skip
    table = {name: row(fams, runs["R0"]) for name, fams in runs.items()}
    alone = None
    if args.standalone_epochs > 0:
        alone = standalone(p, runs[args.standalone_of][0], args.standalone_epochs, print)
    columns = list(next(iter(table.values())))
    print(
        f"\n{args.seeds} seed(s), mean ± std; NFR and Top-1 in % of the test split "
        f"({len(p.data.test)} images)" + (" — SMOKE: not a measurement" if args.smoke else "")
    )
    print(" | ".join(["setting", *columns]))
    for name, values in table.items():
        print(" | ".join([name, *(pm(values[c]) for c in columns)]))
    if alone is not None:
        print(f"stand-alone (seed 0 {args.standalone_of} archs, {args.standalone_epochs} epoch(s)): "
              + ", ".join(f"{k} {v:.2f}" for k, v in alone["pairs"].items())
              + f"; mean {alone['mean_pairwise_nfr']:.2f}")  # fmt: skip
    result = {"seeds": args.seeds, "smoke": args.smoke, "epsilon_pt": args.epsilon,
              "finetune": tune.model_dump(), "table": table, "standalone": alone}  # fmt: skip
    (args.out / "regnas.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
