#!/usr/bin/env bash
# Set up .venv/ (famc + test tools + optional exporters) and run the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FAMC_EXTRAS="dev,coreml" source scripts/setup.sh
.venv/bin/python -m pytest "$@"
