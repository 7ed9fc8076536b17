"""Ship family members as ONNX / CoreML / TensorRT artifacts, each checked against PyTorch.

Every exporter validates what it wrote (structure always, numbers where this host can run the
format) because a silently wrong artifact is worse than a failed export. ``FORMATS`` is the table
of formats every other part of famc reads.
"""

from famc.data.preprocessing import METADATA_KEY, Preprocessing
from famc.export.formats import FORMATS, ExportJob, Format
from famc.export.member import TestInputs, export_member
from famc.export.onnx import export_onnx, onnx_model, read_onnx_preprocessing, run_onnx
from famc.export.parity import DEFAULT_ATOL, Parity, default_atol, parity, torch_logits
from famc.export.records import ArtifactRecord, Artifacts, ArtifactsManifest, artifact_records
from famc.export.verify import VerifyResult, read_golden, verify_member, write_golden

__all__ = [
    "DEFAULT_ATOL",
    "FORMATS",
    "METADATA_KEY",
    "ArtifactRecord",
    "Artifacts",
    "ArtifactsManifest",
    "ExportJob",
    "Format",
    "Parity",
    "Preprocessing",
    "VerifyResult",
    "artifact_records",
    "default_atol",
    "TestInputs",
    "export_member",
    "export_onnx",
    "onnx_model",
    "parity",
    "read_golden",
    "read_onnx_preprocessing",
    "run_onnx",
    "torch_logits",
    "verify_member",
    "write_golden",
]
