"""The ``famc`` command line: thin wrappers that parse arguments and call the library.

Every user-fixable problem surfaces as a ``FamcError`` and is printed as one line (exit code 2 unless
the error says otherwise); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from famc.errors import FamcError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def _clean_errors(fn: F) -> F:
    @wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FamcError as exc:
            for line in str(exc).splitlines():
                err.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

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
    resume: Annotated[bool, typer.Option(help="continue a killed run from its last epoch")] = False,
    force: Annotated[
        bool, typer.Option(help="overwrite an existing run in the output dir")
    ] = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Train a supernet with the sandwich rule and in-place distillation."""
    from famc.train import load_train_config
    from famc.train import train as run_train

    cfg = load_train_config(config)
    if out is not None:
        cfg = cfg.model_copy(update={"out": str(out)})
    metrics = run_train(cfg, resume=resume, force=force, progress=progress and sys.stderr.isatty())
    if metrics is not None:
        typer.echo(
            f"largest {metrics['largest']['top1']:.2f} %  smallest "
            f"{metrics['smallest']['top1']:.2f} %  random "
            + ", ".join(f"{r['top1']:.2f}" for r in metrics["random"])
            + f"  → {Path(cfg.out) / 'supernet.metrics.json'}"
        )


@app.command()
@_clean_errors
def build(
    config: Annotated[Path, typer.Argument(help="family.yaml")],
    out: Annotated[
        Path | None, typer.Option(help="release directory (overrides the config)")
    ] = None,
    force: Annotated[bool, typer.Option(help="replace an existing release directory")] = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Search and write a nested model family (REG-NAS) plus the plain-NAS baseline."""
    import json

    from famc.pipeline import build as run_build

    release = run_build(config, out=out, force=force, progress=progress and sys.stderr.isatty())
    manifest = json.loads((release / "family.json").read_text())
    for m in manifest["members"]:
        lat = m["latency_ms"]["predicted"]
        typer.echo(
            f"{m['name']:>8}: top1 {m['top1']:.2f} %  {m['flops'] / 1e6:.2f} MFLOPs"
            + (f"  {lat:.3f} ms predicted" if lat is not None else "")
            + (f"  contains {m['contains']}" if m["contains"] else "")
        )
    s = manifest["summary"]
    line = f"family: mean top1 {s['family']['mean_top1']:.2f} %, mean pairwise NFR {s['family']['mean_pairwise_nfr']:.2f} %"
    if "baseline" in s:
        line += (
            f" | baseline: {s['baseline']['mean_top1']:.2f} %, NFR "
            f"{s['baseline']['mean_pairwise_nfr']:.2f} %"
        )
    typer.echo(line)
    typer.echo(f"→ {release / 'family.json'}")


@app.command()
@_clean_errors
def validate(config: Annotated[Path, typer.Argument(help="family.yaml")]) -> None:
    """Check a family config without searching: config, data, checkpoint fit, table coverage."""
    from famc.pipeline import prepare

    p = prepare(config)
    typer.echo(
        f"ok: {config} — space {p.space.name}, {len(p.plans)} member(s) "
        f"({', '.join(pl.name for pl in p.plans)}), supernet {p.supernet_sha256[:12]}, "
        f"data {p.data.name} ({len(p.search_split)} search / {len(p.calib)} calibration images)"
    )
