"""Latency lookup tables: measure per-layer latency once, predict any sub-network's latency.

Measuring lives in ``famc.latency.profile`` (``run_profile``), which imports ONNX Runtime and the
supernet; it is not imported here so loading a table or a target stays cheap.
"""

from __future__ import annotations

from famc.latency.signatures import all_signatures
from famc.latency.stats import accuracy, spearman
from famc.latency.table import RUNTIMES, Entry, LatencyTable, Metadata, Runtime, Validation
from famc.latency.target import Target, load_target

__all__ = [
    "RUNTIMES",
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
