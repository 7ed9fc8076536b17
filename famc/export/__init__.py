"""Ship family members as ONNX / CoreML / TensorRT artifacts, each checked against PyTorch.

Every exporter validates what it wrote (structure always, numbers where this host can run the
format) because a silently wrong artifact is worse than a failed export.
"""

from famc.export.coreml import check_coreml, export_coreml, read_coreml_preprocessing, run_coreml
from famc.export.member import FORMATS, ArtifactRecord, export_member
from famc.export.meta import METADATA_KEY, Preprocessing
from famc.export.onnx import check_onnx, export_onnx, read_onnx_preprocessing, run_onnx
from famc.export.parity import DEFAULT_ATOL, Parity, default_atol, parity, torch_logits
from famc.export.tensorrt import (
    TensorRTResult,
    export_tensorrt,
    run_tensorrt,
    tensorrt_unavailable_reason,
    trtexec_command,
)
from famc.export.verify import VerifyResult, read_golden, verify_dir, write_golden

__all__ = [
    "DEFAULT_ATOL",
    "FORMATS",
    "METADATA_KEY",
    "ArtifactRecord",
    "Parity",
    "Preprocessing",
    "TensorRTResult",
    "VerifyResult",
    "check_coreml",
    "check_onnx",
    "default_atol",
    "export_coreml",
    "export_member",
    "export_onnx",
    "export_tensorrt",
    "parity",
    "read_coreml_preprocessing",
    "read_golden",
    "read_onnx_preprocessing",
    "run_coreml",
    "run_onnx",
    "run_tensorrt",
    "tensorrt_unavailable_reason",
    "torch_logits",
    "trtexec_command",
    "verify_dir",
    "write_golden",
]
