"""Latency lookup tables: measure per-layer latency once, predict any sub-network's latency.

Measuring lives in ``famc.latency.profile`` (``run_profile``).
"""

from __future__ import annotations

from famc.latency.runtimes import RUNTIMES, Device, Runtime
from famc.latency.signatures import all_signatures
from famc.latency.stats import accuracy, spearman
from famc.latency.table import Entry, LatencyTable, Metadata, Validation
from famc.latency.target import Target, load_target

__all__ = [
    "RUNTIMES",
    "Device",
    "Entry",
    "LatencyTable",
    "Metadata",
    "Runtime",
    "Target",
    "Validation",
    "accuracy",
    "all_signatures",
    "load_target",
    "spearman",
]
