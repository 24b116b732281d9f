#!/usr/bin/env bash
# The main job on a fresh machine: make a venv, install torch (CPU wheel) and saerec, then run the
# whole pipeline on the default dataset with Ray starting locally.
#   bash scripts/main.sh                       # MovieLens-1M, downloaded from GroupLens (md5-checked, cached)
#   SAEREC_DATASET=ml-1m-users-1-2999 SAEREC_DATA_DIR=../shared/data bash scripts/main.sh
#   bash scripts/main.sh --set train.num_workers=2    # extra flags go to `saerec run`
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SAEREC_VENV:-.venv}"
if [ ! -x "$VENV/bin/saerec" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet torch==2.13.0
  "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e .   # the versions CI tests
fi
DATASET="${SAEREC_DATASET:-ml-1m}"
exec "$VENV/bin/saerec" run --dataset "$DATASET" --run "${SAEREC_RUN:-runs/$DATASET}" "$@"
