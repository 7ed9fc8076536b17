"""The ``famc`` command line: thin wrappers that parse arguments and call the library.

Every user-fixable problem surfaces as a ``FamcError`` and is printed as one line (exit code 2 unless
the error says otherwise); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from famc.errors import FamcError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


#: What the user can do about an OS error that the environment, not famc, caused.
_OS_FIXES = {
    errno.ENOSPC: "free disk space or choose another location",
    errno.EDQUOT: "free some of your disk quota or choose another location",
    errno.EROFS: "the filesystem is read-only: choose a writable location",
    errno.EACCES: "permission denied: choose a location you may write to",
    errno.EPERM: "operation not permitted: choose a location you may write to",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.ENOTDIR: "a part of the path is a file, not a directory: fix the path",
    errno.EISDIR: "a directory stands where a file is expected: fix the path",
}


def _error(lines: str) -> None:
    for line in lines.splitlines():
        err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)


def _clean_errors(fn: F) -> F:
    """User-caused failures become ``error:`` lines and an exit code; bugs keep their traceback."""

    @wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FamcError as exc:
            _error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            if exc.errno not in _OS_FIXES:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            _error(f"{where}{exc.strerror}; {_OS_FIXES[exc.errno]}")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            _error("interrupted: what was in progress was discarded, nothing half-written remains")
            raise typer.Exit(130) from None

    return run  # type: ignore[return-value]


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="print the version and exit")] = False,
) -> None:
    if version:
        from famc import __version__

        typer.echo(f"famc {__version__}")
        raise typer.Exit()


@app.command()
@_clean_errors
def train(
    config: Annotated[Path, typer.Argument(help="train.yaml")],
    out: Annotated[
        Path | None, typer.Option(help="output directory (overrides the config)")
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue a stopped run where it stopped")] = False,
    force: Annotated[
        bool, typer.Option(help="overwrite an existing run in the output dir")
    ] = False,
    max_steps: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="stop after N optimizer steps in all (checkpoint and metrics "
            "are still written; --resume continues)",
        ),
    ] = None,  # fmt: skip
    truth: Annotated[
        Path | None,
        typer.Option(
            help="stand-alone truth file: add ranking figures to the metrics (overrides eval.truth)"
        ),
    ] = None,  # fmt: skip
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda or auto: where to train (overrides `device`)")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show progress (bars, or lines in a log)")] = True,
) -> None:
    """Train a supernet with the sandwich rule and in-place distillation (plus the configured
    sampler, schedule, landmarks, SSE and CPT)."""
    from famc.train import load_train_config
    from famc.train import train as run_train

    cfg = load_train_config(config, device=device)
    if out is not None:
        cfg = cfg.model_copy(update={"out": str(out)})
    if truth is not None:
        cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"truth": str(truth)})})
    metrics = run_train(cfg, resume=resume, force=force, max_steps=max_steps, progress=progress)
    if metrics is not None:
        line = (
            f"largest {metrics['largest']['top1']:.2f} %  smallest "
            f"{metrics['smallest']['top1']:.2f} %  random "
            + ", ".join(f"{r['top1']:.2f}" for r in metrics["random"])
        )
        if "ranking" in metrics:
            line += f"  Kendall τ {metrics['ranking']['kendall_tau']:.3f}"
        typer.echo(f"{line}  → {Path(cfg.out) / 'supernet.metrics.json'}")


@app.command()
@_clean_errors
def rank(
    supernet: Annotated[Path, typer.Argument(help="supernet checkpoint (.safetensors)")],
    truth: Annotated[Path, typer.Option(help="stand-alone truth file (JSON)")],
    json_out: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    progress: Annotated[bool, typer.Option(help="show progress")] = True,
) -> None:
    """Ranking quality: supernet-inherited (BN re-calibrated) vs stand-alone Top-1."""
    from famc.evaluate.rank import rank_checkpoint
    from famc.progress import Reporter
    from famc.space import Arch

    report = rank_checkpoint(supernet, truth, Reporter.auto(progress))
    if json_out:
        typer.echo(report.model_dump_json(indent=2))
        return
    typer.echo(f"{'MFLOPs':>7} {'stand-alone':>11} {'supernet':>8}  architecture")
    for r in sorted(report.archs, key=lambda r: r.flops):
        arch = Arch(ks=tuple(map(tuple, r.arch.ks)), e=tuple(map(tuple, r.arch.e)),
                    resolution=r.arch.resolution)  # fmt: skip
        mark = "  (landmark, excluded)" if r.landmark else ""
        typer.echo(f"{r.flops / 1e6:>7.2f} {r.standalone:>11.2f} {r.supernet:>8.2f}  {arch}{mark}")
    typer.echo(
        f"n {report.n}: Kendall τ {report.kendall_tau:.3f}  Spearman ρ {report.spearman_rho:.3f}  "
        f"Pearson r {report.pearson_r:.3f}  top-5 overlap {report.top5_overlap:.2f}"
    )


@app.command()
@_clean_errors
def predictor(
    supernet: Annotated[Path, typer.Argument(help="supernet checkpoint (.safetensors)")],
    out: Annotated[Path, typer.Option(help="predictor file to write (.safetensors)")],
    archs: Annotated[
        int, typer.Option(min=8, help="random architectures: half fit, half test")
    ] = 1024,
    images: Annotated[
        int | None, typer.Option(min=1, help="first N images of the search split (default all)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the sampled architectures and the forest")] = 0,
    progress: Annotated[bool, typer.Option(help="show progress")] = True,
) -> None:
    """Fit an accuracy predictor (random forest) on a supernet's search-split accuracies."""
    from famc.evaluate.engine import load_trained
    from famc.predictor import fit_predictor
    from famc.progress import Reporter

    trained = load_trained(supernet)
    search = trained.data.search
    split = search if images is None else search.subset(range(min(images, len(search))))
    with Reporter.auto(progress).task("predictor", archs) as task:
        fitted = fit_predictor(trained.space, lambda a: trained.evaluator.correct(a, split),
                               archs=archs, seed=seed, advance=task.advance)  # fmt: skip
    fitted.save(out)
    typer.echo(f"Kendall τ on {fitted.info['n_heldout']} held-out architectures "
               f"{fitted.info['kendall_tau_heldout']}  → {out}")  # fmt: skip


@app.command()
@_clean_errors
def build(
    config: Annotated[Path, typer.Argument(help="family.yaml")],
    out: Annotated[
        Path | None, typer.Option(help="release directory (overrides the config)")
    ] = None,
    force: Annotated[bool, typer.Option(help="replace an existing release directory")] = False,
    gates: Annotated[bool, typer.Option(help="check the config's release gates (exit 3)")] = True,
    progress: Annotated[bool, typer.Option(help="show progress (bars, or lines in a log)")] = True,
    json_out: Annotated[
        bool, typer.Option("--json", help="print the build summary as one JSON document")
    ] = False,
    junit: Annotated[
        Path | None, typer.Option(help="write JUnit XML: a test case per gate and artifact")
    ] = None,
    allow_split_overlap: Annotated[
        bool, typer.Option(help="rank on images the supernet was trained on (not recommended)")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="evaluate candidates on N Ray workers: a local cluster, or the "
            "one --ray-address names (overrides evaluation.workers; needs famc[ray])",
        ),
    ] = None,  # fmt: skip
    ray_address: Annotated[
        str | None, typer.Option(help="join this Ray cluster (e.g. auto, or head-node:6379)")
    ] = None,
) -> None:
    """Search, export and report a nested model family (REG-NAS) plus the plain-NAS baseline."""
    from famc.build import build as run_build
    from famc.errors import GateFailure
    from famc.progress import Reporter

    failure: GateFailure | None = None
    try:
        release = run_build(config, out=out, force=force, gates=gates,
                            reporter=Reporter.auto(progress), allow_split_overlap=allow_split_overlap,
                            log=lambda line: err.print(escape(line), highlight=False),
                            workers=workers, ray_address=ray_address)  # fmt: skip
    except GateFailure as exc:  # the release exists: summarise it, then fail with the gates
        release, failure = exc.release, exc
    _summarise(release, json_out, junit)
    if failure is not None:
        raise failure


def _summarise(release: Path, json_out: bool, junit: Path | None) -> None:
    """The build's result for a person (stdout), a pipeline (``--json``, ``--junit``) and GitHub
    Actions (``$GITHUB_STEP_SUMMARY`` and ``::error`` annotations)."""
    import json
    import os

    from famc.io import write_text
    from famc.report import ci
    from famc.report.data import read_manifest

    manifest = read_manifest(release / "family.json")
    if junit is not None:
        write_text(junit, ci.junit_xml(manifest))
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as summary:
            summary.write((release / "report.md").read_text(encoding="utf-8") + "\n")
        for line in ci.github_annotations(manifest):  # stdout, unless it carries the JSON
            print(line, file=sys.stderr if json_out else sys.stdout, flush=True)
    if json_out:
        typer.echo(json.dumps(ci.build_summary(manifest, release), indent=2))
        return
    for m in manifest.members:
        lat = m.latency_ms.predicted
        typer.echo(
            f"{m.name:>8}: top1 {m.top1:.2f} %  {m.flops / 1e6:.2f} MFLOPs"
            + (f"  {lat:.3f} ms predicted" if lat is not None else "")
            + (f"  contains {m.contains}" if m.contains else "")
        )
    s = manifest.summary
    line = f"family: mean top1 {s.family.mean_top1:.2f} %, mean pairwise NFR {s.family.mean_pairwise_nfr:.2f} %"
    if s.baseline is not None:
        line += (
            f" | baseline: {s.baseline.mean_top1:.2f} %, NFR {s.baseline.mean_pairwise_nfr:.2f} %"
        )
    typer.echo(line)
    typer.echo(f"→ {release / 'family.json'}, {release / 'report.html'}")


@app.command()
@_clean_errors
def verify(release: Annotated[Path, typer.Argument(help="release or member directory")]) -> None:
    """Check a release against its records and re-run every artifact this host can run."""
    from famc.verify import verify as run_verify

    findings = run_verify(release)
    for name, r in findings:
        p = r.parity
        figures = f"agreement {p.top1_agreement:.4f} max_abs {p.max_abs:.2e}" if p else r.detail
        typer.echo(f"{name:>10} {r.subject:<18} {r.status:<12} {figures}")
    failed = [(name, r) for name, r in findings if r.status == "failed"]
    if failed:
        lines = [f"{name} {r.subject}: {r.detail}" for name, r in failed]
        raise FamcError("\n".join(["verification failed:", *lines]), exit_code=3)


@app.command()
@_clean_errors
def diff(
    old: Annotated[Path, typer.Argument(help="the release in use")],
    new: Annotated[Path, typer.Argument(help="the release that would replace it")],
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
) -> None:
    """Per shared member: Top-1 old/new, negative and positive flips old → new, latency change."""
    import json

    from famc.diff import diff_releases

    updates = diff_releases(old, new)
    if json_out:
        typer.echo(json.dumps([u.model_dump() for u in updates], indent=2))
        return
    for u in updates:
        lat = "" if u.latency_change_pct is None else f"  latency {u.latency_change_pct:+.1f} %"
        typer.echo(f"{u.name:>10}: top1 {u.top1_old:.2f} → {u.top1_new:.2f} %  "
                   f"NFR {u.nfr:.2f} %  PFR {u.pfr:.2f} %{lat}")  # fmt: skip


@app.command()
@_clean_errors
def export(
    member: Annotated[Path, typer.Argument(help="member directory (holds arch.json)")],
    fmt: Annotated[list[str], typer.Option("--format", help="onnx, coreml or tensorrt")],
    precision: Annotated[str, typer.Option(help="CoreML compute precision: fp32 or fp16")] = "fp32",
) -> None:
    """Export one family member, with parity checked on the test split of its dataset."""
    from famc.export.member import export_one

    records = export_one(member, fmt, precision).values()
    for rec in records:
        typer.echo(f"{rec.format:<9} {rec.status:<14} {rec.path or '-'}  {rec.detail}")
    failed = [r for r in records if r.status == "failed"]
    if failed:
        lines = [f"{r.format}: {r.status}: {r.detail}" for r in failed]
        raise FamcError("\n".join(lines), exit_code=3)


profile_app = typer.Typer(add_completion=False, help="Latency tables: measure, validate, re-fit.")
app.add_typer(profile_app, name="profile")


@profile_app.callback(invoke_without_command=True)
@_clean_errors
def profile(
    ctx: typer.Context,
    space: Annotated[
        str | None, typer.Option(help="search-space preset, e.g. fashion-mbv3")
    ] = None,
    runtime: Annotated[
        str | None, typer.Option(help="ort-cpu, ort-cuda, ort-trt, torch-cpu, torch-cuda, tensorrt")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="latency table to write (YAML)")] = None,
    threads: Annotated[int, typer.Option(help="intra-op threads of the runtime")] = 1,
    batch: Annotated[int, typer.Option(help="batch size of the timed graphs")] = 1,
    warmup: Annotated[int, typer.Option(help="untimed calls per graph")] = 10,
    repeats: Annotated[int, typer.Option(help="timed calls per layer graph")] = 100,
    validate: Annotated[int, typer.Option(help="score on N held-out whole sub-networks")] = 0,
    fit: Annotated[
        int | None,
        typer.Option(
            help="fit the correction on N whole sub-networks (default: as many as --validate)"
        ),
    ] = None,
    refit: Annotated[
        Path | None, typer.Option(help="re-fit this table for this host (with --validate N)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of graph weights and sampled sub-networks")] = 0,
    progress: Annotated[bool, typer.Option(help="report progress")] = True,
) -> None:
    """Measure a latency lookup table for every layer a space can produce (resumable), or with
    --refit re-fit an existing table's correction on this host."""
    if ctx.invoked_subcommand is not None:
        return
    from famc.latency.profile import refit as refit_table
    from famc.latency.profile import run_profile

    if refit is not None:
        given = [f"--{n}" for n, v in (("space", space), ("runtime", runtime)) if v is not None]
        if given:
            raise FamcError(f"--refit takes the setting from the table; drop {' and '.join(given)}")
        report = refit_table(refit, validate, fit=fit, out=out, seed=seed, progress=progress)
    else:
        absent = [f"--{n}" for n, v in (("space", space), ("runtime", runtime), ("out", out))
                  if v is None]  # fmt: skip
        if absent:
            raise FamcError(f"famc profile needs {', '.join(absent)} (or --refit TABLE)")
        assert space is not None and runtime is not None and out is not None
        report = run_profile(space, runtime, threads, out, batch=batch, warmup=warmup,
                             repeats=repeats, validate=validate, fit=fit, seed=seed,
                             progress=progress)  # fmt: skip
    typer.echo(report.summary())


@profile_app.command("export-kit")
@_clean_errors
def export_kit(
    space: Annotated[str, typer.Option(help="search-space preset, e.g. fashion-mbv3")],
    fmt: Annotated[str, typer.Option("--format", help="onnx or coreml")],
    out: Annotated[Path, typer.Option(help="kit directory to write")],
    batch: Annotated[int, typer.Option(help="batch size of the timed graphs")] = 1,
    threads: Annotated[int, typer.Option(help="intra-op threads the runner uses by default")] = 1,
    validate: Annotated[int, typer.Option(help="hold-out whole sub-networks to score on")] = 20,
    fit: Annotated[
        int | None,
        typer.Option(help="whole sub-networks to fit on (default: N of --validate)"),
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of graph weights and sampled sub-networks")] = 0,
    force: Annotated[bool, typer.Option(help="replace a kit famc wrote before")] = False,
    progress: Annotated[bool, typer.Option(help="report progress")] = True,
) -> None:
    """Write a latency kit for a device that cannot run Python (graphs, manifest.json, run.sh)."""
    from famc.latency.kit import export_kit as run_export

    report = run_export(space, fmt, out, batch=batch, threads=threads, validate=validate, fit=fit,
                        seed=seed, force=force, progress=progress)  # fmt: skip
    typer.echo(report.summary())


@profile_app.command("import")
@_clean_errors
def import_kit(
    space: Annotated[str, typer.Option(help="search-space preset of the kit")],
    kit: Annotated[Path, typer.Option("--from", help="kit directory holding results/<tool>/")],
    tool: Annotated[str, typer.Option(help="onnxruntime_perf_test, trtexec or csv")],
    out: Annotated[Path, typer.Option(help="latency table to write (YAML)")],
    runtime: Annotated[
        str | None,
        typer.Option(
            help="runtime the figures were taken on (default: ort-cpu for "
            "onnxruntime_perf_test, tensorrt for trtexec; csv needs it)"
        ),
    ] = None,
    runtime_version: Annotated[str, typer.Option(help="version of that runtime")] = "unknown",
    device: Annotated[
        str | None, typer.Option(help="device model (default: from the runner's host.txt)")
    ] = None,
    cores: Annotated[int | None, typer.Option(help="CPU cores of the device")] = None,
    force: Annotated[bool, typer.Option(help="replace an existing table")] = False,
) -> None:
    """Build a latency table from the output of a kit's tool (perf_test, trtexec or a CSV)."""
    from famc.latency.importers import import_kit as run_import

    report = run_import(space, kit, tool, out, runtime=runtime, runtime_version=runtime_version,
                        device=device, cores=cores, force=force)  # fmt: skip
    typer.echo(report.summary())


@app.command()
@_clean_errors
def validate(
    config: Annotated[Path, typer.Argument(help="family.yaml")],
    allow_split_overlap: Annotated[
        bool, typer.Option(help="rank on images the supernet was trained on (not recommended)")
    ] = False,
) -> None:
    """Check a family config without searching: config, data, checkpoint fit and split, table
    coverage, and that every budget admits a sub-network."""
    from famc.prepare import prepare

    p = prepare(config, allow_split_overlap)
    for note in p.notes:
        err.print(escape(note), highlight=False)
    for plan in p.plans:
        lo, hi = plan.cost_range(p.space)
        d = plan.cost_model.describe
        typer.echo(
            f"{plan.name:>10}: budget {d(plan.budget)}; sub-networks cost {d(lo)} to {d(hi)}"
        )
    typer.echo(
        f"ok: {config} — space {p.space.name}, {len(p.plans)} member(s) "
        f"({', '.join(pl.name for pl in p.plans)}), supernet {p.inputs.supernet_sha256[:12]}, "
        f"data {p.data.name} ({len(p.search_split)} search / {len(p.calib)} calibration images)"
    )
