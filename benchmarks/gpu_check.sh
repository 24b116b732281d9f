#!/usr/bin/env bash
# One command for a machine with a GPU (and no Ray, no network): saerec's Ray-free library code on
# the ML-20M-shaped synthetic log, at most 8 minutes, writing one JSON (benchmarks/gpu_check.py says
# what it measures). Also runs on a CPU: --small (the default where there is no GPU).
#
#   benchmarks/gpu_check.sh                                   # -> benchmarks/results/gpu_check.json
#   benchmarks/gpu_check.sh --small --out /tmp/gpu_check.json
#
# saerec comes from this checkout: installed with `pip install --no-deps -e .` if pip can do that
# offline (setuptools present), else put on PYTHONPATH; either way no package is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import saerec" 2>/dev/null; then
    pip install --quiet --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1 \
        || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
exec timeout "${GPU_CHECK_TIMEOUT_S:-480}" python benchmarks/gpu_check.py "$@"
