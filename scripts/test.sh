#!/usr/bin/env bash
# Set up .venv/ (famc + test tools + optional exporters + Ray) and run the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FAMC_EXTRAS="dev,coreml,ray" source scripts/setup.sh
.venv/bin/python -m pytest "$@"
