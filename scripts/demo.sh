#!/usr/bin/env bash
# Set up .venv/ and run famc's main job on the built-in Fashion-MNIST example.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The example's targets ship ONNX, CoreML and TensorRT: install the CoreML exporter, and TensorRT
# where a GPU could run it (elsewhere its artifacts are unavailable and say how to build them).
extras="coreml"
command -v nvidia-smi >/dev/null 2>&1 && extras="coreml,tensorrt"
FAMC_EXTRAS="$extras" source scripts/setup.sh
.venv/bin/famc build examples/fashion/family.yaml --force "$@"
