#!/usr/bin/env bash
# Set up .venv/ and run famc's main job on the built-in Fashion-MNIST example.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
.venv/bin/famc build examples/fashion/family.yaml --force "$@"
