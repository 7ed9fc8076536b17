#!/usr/bin/env bash
# The two GPU jobs of a lent CUDA machine, run from the repository root:
#
#   FAMC_DATA_DIR=/path/to/fashion-mnist scripts/gpu_jobs.sh [--wheels DIR] [train] [truth]
#
#   train  the demo AttentiveNAS supernet on cuda: examples/fashion-attentivenas/train.yaml with
#          --device cuda, into examples/fashion-attentivenas/supernet (log: train.log there)
#   truth  the stand-alone ground truth on cuda, resuming examples/fashion/standalone.json (its
#          log: examples/fashion/standalone.log)
#   (no step named: both, in that order)
#
# Every step resumes where an earlier call stopped (train: --resume from its last epoch checkpoint;
# truth: the file keeps every finished architecture), so a call cut short is simply made again. The
# script stops its steps itself after GPU_JOBS_BUDGET_S seconds (default 540, under a 10-minute call
# limit; 0: no limit) and then exits 3: "not finished, run me again". Exit 0: every step done.
#
# Environment: FAMC_DATA_DIR, a directory holding the four Fashion-MNIST files
# (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,
# t10k-labels-idx1-ubyte.gz; not needed where /usr/share/datasets/fashion-mnist has them);
# PYTHON, the interpreter with torch+CUDA (default .venv/bin/python, else python3); GPU_JOBS_COPY_TO
# (default $OUT), a directory that receives gpu_jobs_results.tar at exit (repository paths inside).
# Nothing is downloaded: famc runs from this checkout (PYTHONPATH), torch must be installed, and
# --wheels DIR installs famc's other dependencies offline from that wheel folder if they are missing.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY="${PYTHON:-}"
[ -n "$PY" ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python; } || PY=python3
BUDGET="${GPU_JOBS_BUDGET_S:-540}"
COPY_TO="${GPU_JOBS_COPY_TO:-${OUT:-}}"
SUPERNET=examples/fashion-attentivenas/supernet
TRUTH=examples/fashion/standalone.json
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

wheels="" steps=()
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) wheels="${2:?--wheels needs a directory}"; shift 2 ;;
    train|truth) steps+=("$1"); shift ;;
    *) echo "gpu_jobs: unknown argument $1 (use: [--wheels DIR] [train] [truth])" >&2; exit 2 ;;
  esac
done
[ ${#steps[@]} -gt 0 ] || steps=(train truth)

deps_missing() { ! "$PY" -c "import numpy, pydantic, yaml, safetensors, typer, rich, PIL" 2>/dev/null; }

preflight() {
  "$PY" -c "import torch" 2>/dev/null || { echo "gpu_jobs: $PY has no torch; set PYTHON" >&2; return 2; }
  if deps_missing && [ -n "$wheels" ]; then
    echo "gpu_jobs: installing famc's dependencies from $wheels (offline)"
    "$PY" -m pip install --no-index --find-links "$wheels" --disable-pip-version-check -q \
      numpy pydantic pyyaml safetensors typer rich pillow || return 2
  fi
  if deps_missing; then
    echo "gpu_jobs: famc's dependencies are missing; pass --wheels DIR (a folder of wheels)" >&2
    return 2
  fi
  "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" || {
    echo "gpu_jobs: torch sees no CUDA GPU here" >&2; return 2; }
  "$PY" -c "from famc.data.fashion import find_fashion_mnist as f; f(download=False)" || return 2
  GPU=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0), '| torch', torch.__version__)")
}

# CMD... under what is left of the budget; SIGINT lets famc and the bench end cleanly
budgeted() {
  [ "$BUDGET" -gt 0 ] || { "$@"; return; }
  local left=$((BUDGET - SECONDS - 15))
  [ "$left" -gt 20 ] || { echo "gpu_jobs: no time left in this call"; return 124; }
  timeout -s INT -k 30 "$left" "$@"
}

# LOG CMD...: the command's output on the terminal and appended to LOG, framed by wall times
logged() {
  local log=$1 t0=$SECONDS rc
  shift
  mkdir -p "$(dirname "$log")"
  printf '== %s %s | %s\n$ %s\n' "$(date -Is)" "$(hostname)" "$GPU" "$*" | tee -a "$log"
  budgeted "$@" 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  printf '== exit %s after %s s wall\n' "$rc" "$((SECONDS - t0))" | tee -a "$log"
  return "$rc"
}

train_step() {
  local metrics=$SUPERNET/supernet.metrics.json state=$SUPERNET/train_state.pt mode=--force
  if [ -f "$metrics" ] && { [ ! -f "$state" ] || [ "$metrics" -nt "$state" ]; }; then
    echo "gpu_jobs: train done already ($metrics); remove $SUPERNET to train again"
    return 0
  fi
  [ -f "$state" ] && mode=--resume
  logged "$SUPERNET/train.log" "$PY" -m famc train examples/fashion-attentivenas/train.yaml \
    --out "$SUPERNET" --device cuda "$mode"
}

truth_step() {
  if "$PY" -c "import json, sys; sys.exit(not json.load(open('$TRUTH')).get('complete'))"; then
    echo "gpu_jobs: truth done already ($TRUTH)"
    return 0
  fi
  logged "${TRUTH%.json}.log" "$PY" bench/standalone_truth.py --out "$TRUTH" --epochs 8 \
    --device cuda
}

# one tarball, repository paths inside (the device tool returns files at most two folders deep);
# restore with: tar -xf gpu_jobs_results.tar
copy_back() {
  [ -n "$COPY_TO" ] && [ -d "$COPY_TO" ] || return 0
  local paths=()
  for path in "$SUPERNET" "$TRUTH" "${TRUTH%.json}.log"; do
    [ -e "$path" ] && paths+=("$path")
  done
  [ ${#paths[@]} -gt 0 ] || return 0
  tar -cf "$COPY_TO/gpu_jobs_results.tar" "${paths[@]}"
  echo "gpu_jobs: results in $COPY_TO/gpu_jobs_results.tar (tar -xf it in the repository root)"
}

GPU=""
preflight || exit 2
trap copy_back EXIT
status=0
for step in "${steps[@]}"; do
  rc=0
  "${step}_step" || rc=$?
  case "$rc" in
    0) ;;
    124 | 130)
      echo "gpu_jobs: $step stopped by the time budget: run this script again"
      [ "$status" -ne 0 ] || status=3 ;;
    *) echo "gpu_jobs: $step failed (exit $rc)" >&2; status=1 ;;
  esac
done
exit "$status"
