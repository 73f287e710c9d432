#!/usr/bin/env bash
# The SiteHawk main job (see README): installs what it needs, renders the built-in virtual site
# and evaluates the PTZ search baselines on held-out sites. Outputs go to runs/demo/.
#
# Environment: SEEDS (default 1000-1009), OUT (default runs/demo), PYTHON (default python3),
# SITEHAWK_SKIP_INSTALL=1 to skip pip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
SEEDS="${SEEDS:-1000-1009}"
OUT="${OUT:-runs/demo}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

if [[ "${SITEHAWK_SKIP_INSTALL:-}" != 1 ]]; then
    # torch first and pinned: the local CPU wheel. A looser requirement would pull a CUDA build.
    "$PYTHON" -m pip install -q torch==2.13.0
    "$PYTHON" -m pip install -q -e '.[train]'
fi

mkdir -p "$OUT"
"$PYTHON" -m edge.cli render --seed 7 --out "$OUT/site.png"
"$PYTHON" -m trainer.cli baselines --seeds "$SEEDS" --out "$OUT"
echo
echo "Site picture:      $OUT/site.png"
echo "Baseline report:   $OUT/report.html  (table: $OUT/baselines.json)"
