"""Latency lookup tables: per-layer measured latency, keyed by ``LayerSpec.signature()``.

A sub-network's latency is predicted from its layers' entries, summed per block kind and passed
through the table's ``correction`` (fitted on whole networks, scored on others: ``famc.latency.fit``),
so a search can score thousands of candidates without running any of them (nn-Meter / OFA style).
Every figure follows one definition: the median wall time of one inference call
(``famc.latency.measure``). Tables are YAML with sorted keys and one entry per line so a
re-measurement diffs cleanly; the format is documented in ``latency_tables/README.md``.
"""

from __future__ import annotations

import datetime as dt
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints

from famc.errors import FamcError
from famc.io import known, load_yaml, write_text
from famc.latency.fit import Correction
from famc.latency.runtimes import RUNTIMES, Device
from famc.latency.signatures import all_signatures
from famc.space import KINDS, Arch, SearchSpace, describe
from famc.space.layers import elastic_modules

Precision = Literal["fp32", "fp16", "int8"]
FIXED_TERM = "fixed"  # the stem and head layers' term of a prediction
SHOWN_MISSING = 3  # signatures are long; an error line names a few and counts the rest

_NonNegMs = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Signature = Annotated[
    str,
    StringConstraints(
        pattern=rf"^({'|'.join(KINDS)}):in\d+x\d+x\d+:out\d+x\d+x\d+"
        r":mid\d+:k\d+:s\d+:skip[01]:se[01]:[a-z_]+:exp[01]$"
    ),
]


class _Strict(BaseModel):
    # strict: a hand-edited "0.5" string or a misspelt key is an error, not silently coerced.
    model_config = ConfigDict(extra="forbid", strict=True)


class Validation(_Strict):
    """The correction's accuracy on ``n_holdout`` whole sub-networks it was not fitted on."""

    n_fit: int = Field(ge=2)
    n_holdout: int = Field(ge=2)
    mape: float = Field(ge=0, allow_inf_nan=False)
    within_10pct: float = Field(ge=0, le=1)
    spearman: float = Field(ge=-1, le=1)
    max_error_pct: float = Field(ge=0, allow_inf_nan=False)
    seed: int
    host: Device  # where the whole networks ran: the predictions are meant to hold there
    runtime_version: str
    date: dt.date


class Metadata(_Strict):
    """What was measured and how; a table is only valid for exactly this setting."""

    format: Literal[2] = 2  # bumped when the layout changes incompatibly (1: mean of fastest 25 %)
    space: str
    resolutions: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    runtime: Annotated[str, AfterValidator(known(RUNTIMES, "runtime"))]
    runtime_version: str
    threads: int = Field(ge=1)
    batch: int = Field(ge=1)
    precision: Precision
    device: Device
    famc_version: str
    date: dt.date
    warmup: int = Field(ge=0)
    repeats: int = Field(ge=1)
    call_overhead_ms: _NonNegMs  # per-call cost of an empty graph, subtracted from every entry
    correction: Correction | None = None  # None until validated: layer sum + one call's cost
    validation: Validation | None = None


class Entry(_Strict):
    """One layer alone: median and p90 of ``n`` one-call times, net of the per-call cost."""

    median_ms: _NonNegMs
    p90_ms: _NonNegMs
    n: int = Field(ge=1)


def profile_command(space: str, runtime: str, threads: int, out: str | Path, batch: int = 1) -> str:
    """The ``famc profile`` line that creates or completes a table."""
    cmd = (
        f"famc profile --space {shlex.quote(space)} --runtime {runtime} --threads {threads} "
        f"--out {shlex.quote(str(out))}"
    )
    return cmd + (f" --batch {batch}" if batch != 1 else "")


def default_table_path(space: str, runtime: str, threads: int) -> str:
    """Where famc's shipped tables live, named so the setting is visible in a directory listing."""
    return f"latency_tables/{space}_{runtime}_t{threads}.yaml"


class LatencyTable(_Strict):
    """Metadata plus ``signature -> Entry``; load/save keep the file the single source of truth."""

    metadata: Metadata
    entries: dict[_Signature, Entry] = {}
    _source: str | None = PrivateAttr(default=None)

    # --- I/O -----------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read and validate ``path``; any defect is one ``FamcError`` line naming the field."""
        table = load_yaml(
            cls, path, "latency table", "fix the field or re-measure with `famc profile`"
        )
        table._source = str(path)
        return table

    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file + ``os.replace``): a kill never leaves a torn table."""
        path = Path(path)
        meta: dict[str, Any] = self.model_dump(mode="json", include={"metadata"})
        meta["metadata"]["date"] = self.metadata.date  # a YAML date, not a quoted string
        if self.metadata.validation is not None:
            meta["metadata"]["validation"]["date"] = self.metadata.validation.date
        entries = {"entries": {s: _Flow(e.model_dump()) for s, e in self.entries.items()}}
        # metadata first for the reader; every mapping below the top level is key-sorted.
        text = "# famc latency table, format documented in latency_tables/README.md\n" + "".join(
            yaml.dump(part, Dumper=_Dumper, sort_keys=True, width=1000, allow_unicode=True)
            for part in (meta, entries)
        )
        write_text(path, text)
        self._source = str(path)
        return path

    # --- lookups -------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self._source or "<unsaved table>"

    @property
    def correction(self) -> Correction:
        """The fitted correction, or the plain layer sum plus one call's cost before a fit."""
        m = self.metadata
        return m.correction or Correction.plain(m.call_overhead_ms)

    @property
    def validated_on(self) -> Device:
        """The host whose whole-network timings the predictions were fitted to (the layer
        host until the table is validated)."""
        v = self.metadata.validation
        return v.host if v is not None else self.metadata.device

    def command(self) -> str:
        m = self.metadata
        return profile_command(m.space, m.runtime, m.threads, self.source, m.batch)

    def missing(self, signatures: list[str]) -> list[str]:
        return [s for s in signatures if s not in self.entries]

    def _check_space(self, space: SearchSpace) -> None:
        m = self.metadata
        if space.name != m.space:
            out = default_table_path(space.name, m.runtime, m.threads)
            raise FamcError(
                f"{self.source}: latency table measured for space {m.space!r}, not "
                f"{space.name!r}; use a table for {space.name} "
                f"(`{profile_command(space.name, m.runtime, m.threads, out, m.batch)}`)"
            )

    def _raise_missing(self, missing: list[str], what: str) -> None:
        shown = ", ".join(missing[:SHOWN_MISSING])
        more = f" (+{len(missing) - SHOWN_MISSING} more)" if len(missing) > SHOWN_MISSING else ""
        raise FamcError(
            f"{self.source}: {len(missing)} layer(s) of {what} not in the latency table: "
            f"{shown}{more}; fill them with `{self.command()}`"
        )

    def terms(self, arch: Arch, space: SearchSpace) -> dict[str, float]:
        """``arch``'s layer entries summed per block kind of its searchable stages, and the fixed
        stem and head layers as one term ``fixed`` (they vary with the resolution only, so one
        coefficient is all a fit can tell apart), in ms: what the correction weighs."""
        self._check_space(space)
        space.validate(arch)
        if arch.resolution not in self.metadata.resolutions:
            raise FamcError(
                f"{self.source}: resolution {arch.resolution} not in the table's resolutions "
                f"{self.metadata.resolutions}; re-profile with `{self.command()}`"
            )
        layers = describe(space, arch)
        sigs = [layer.signature() for layer in layers]
        missing = self.missing(list(dict.fromkeys(sigs)))
        if missing:
            self._raise_missing(missing, f"arch {arch}")
        elastic = elastic_modules(space.preset)
        out: dict[str, float] = {}
        for layer, sig in zip(layers, sigs, strict=True):
            term = layer.kind if layer.module in elastic else FIXED_TERM
            out[term] = out.get(term, 0.0) + self.entries[sig].median_ms
        return out

    def predict(self, arch: Arch, space: SearchSpace) -> float:
        """Predicted latency of ``arch`` in ms: the median of one inference call of its shipped
        artifact on this table's runtime and settings (``famc.latency.measure``)."""
        return self.correction.apply(self.terms(arch, space))

    def check_covers(self, space: SearchSpace) -> None:
        """Raise unless every layer any architecture of ``space`` can contain has an entry."""
        self._check_space(space)
        absent = sorted(set(space.preset.resolutions) - set(self.metadata.resolutions))
        if absent:
            raise FamcError(
                f"{self.source}: resolutions {absent} of {space.name} not in the table's "
                f"{self.metadata.resolutions}; re-profile with `{self.command()}`"
            )
        missing = self.missing(list(all_signatures(space)))
        if missing:
            self._raise_missing(missing, f"space {space.name}")
        small = space.smallest()
        floor = min(
            self.predict(replace(small, resolution=r), space) for r in space.preset.resolutions
        )
        if floor <= 0:
            raise FamcError(
                f"{self.source}: predicts {floor:.4f} ms for the smallest sub-network of "
                f"{space.name}: a latency must be positive; "
                f"re-measure with `{self.command()}`"
            )


class _Flow(dict[str, Any]):
    """A mapping written on one line (``{median_ms: .., n: .., p90_ms: ..}``): one entry, one line."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Flow, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True)
)
