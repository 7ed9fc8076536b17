"""``famc diff OLD NEW``: what a model update does to its users, member by member.

Negative flips were defined for model updates (Positive-Congruent Training): each member name
present in both releases is run, old and new, on the same held-out test split, and the flips from
the old model to the new one are counted, beside Top-1 and latency.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from famc.data import DataSplits, to_input
from famc.errors import FamcError
from famc.member import load_member, member_info
from famc.metrics import nfr, pfr, top1
from famc.report.data import read_manifest
from famc.report.release import FAMILY_JSON, MemberRecord, MemberUpdate


@torch.inference_mode()
def member_correct(directory: Path, data: DataSplits) -> torch.Tensor:
    """Which test images the shipped member classifies right, fed as family.json says."""
    model, pre = load_member(directory), member_info(directory).preprocessing
    correct = [
        model(to_input(x, pre.resolution, pre.mean, pre.std, channels_last=False)).argmax(1) == y
        for x, y in data.test.batches(1000, resolution=pre.resolution)
    ]
    return torch.cat(correct)


def _latency(m: MemberRecord) -> float | None:
    return m.latency_ms.measured if m.latency_ms.measured is not None else m.latency_ms.predicted


def diff_releases(old: Path, new: Path) -> list[MemberUpdate]:
    """Every member name the two releases share, in the new release's order."""
    return diff_members(old, read_manifest(new / FAMILY_JSON).members, new)


def diff_members(old: Path, members: Sequence[MemberRecord], new: Path) -> list[MemberUpdate]:
    """``members`` (of the release at ``new``) against the release at ``old``."""
    if not (old / FAMILY_JSON).is_file():
        raise FamcError(f"{old}: no {FAMILY_JSON}; point at a release written by famc build")
    before = {m.name: m for m in read_manifest(old / FAMILY_JSON).members}
    after = [m for m in members if m.name in before]
    if not after:
        raise FamcError(f"{old} and {new} share no member name: nothing to compare")
    updates, data = [], None
    for m in after:
        o = before[m.name]
        if o.path is None or m.path is None:
            raise FamcError(f"member {m.name} has no directory in one of the releases")
        old_dir, new_dir = old / o.path, new / m.path
        if data is None:
            data = member_info(new_dir).data.load()
        if member_info(old_dir).data.name != data.name:
            raise FamcError(f"{old_dir}: evaluated on another dataset than {new_dir}")
        a, b = member_correct(old_dir, data), member_correct(new_dir, data)
        lat_a, lat_b = _latency(o), _latency(m)
        change = None if not (lat_a and lat_b) else round(100 * (lat_b / lat_a - 1), 2)
        updates.append(MemberUpdate(
            name=m.name, top1_old=round(top1(a), 3), top1_new=round(top1(b), 3),
            nfr=round(nfr(a, b), 4), pfr=round(pfr(a, b), 4), latency_old_ms=lat_a,
            latency_new_ms=lat_b, latency_change_pct=change,
        ))  # fmt: skip
    return updates
