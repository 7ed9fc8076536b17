#!/usr/bin/env bash
# Create or reuse .venv/ and install famc into it. Sourced by scripts/demo.sh and scripts/test.sh.
# torch is pinned and installed first: an unpinned torch (even as another package's dependency) pulls
# gigabytes of CUDA wheels; with 2.13.0 present, every later requirement is already satisfied.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python_bin="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
pip_install() { .venv/bin/python -m pip install --disable-pip-version-check -q "$@"; }

if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  echo "famc setup: installing torch==2.13.0 (CPU)"
  pip_install "torch==2.13.0"
fi

extras="${FAMC_EXTRAS:-}"
stamp=".venv/.famc-installed-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)${extras:+-$extras}"
if [ ! -f "$stamp" ]; then
  echo "famc setup: installing famc${extras:+[$extras]} and its dependencies"
  pip_install -e ".${extras:+[$extras]}"
  if [[ ",$extras," == *",dev,"* ]]; then
    # Once-for-All's own code is the reference the conformance tests compare against; its declared
    # dependencies would pull an unpinned torch and torchvision, so it is installed without them.
    pip_install --no-deps "ofa==0.1.0.post202307202001"
  fi
  touch "$stamp"
fi

# Fashion-MNIST from Debian's package when it is missing and we may install system packages.
if [ -z "${FAMC_DATA_DIR:-}" ] && [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "famc setup: installing Debian package dataset-fashion-mnist"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
  else
    echo "famc setup: Fashion-MNIST not found; famc will download it on first use" \
         "(or: sudo apt-get install dataset-fashion-mnist, or set FAMC_DATA_DIR)"
  fi
fi
