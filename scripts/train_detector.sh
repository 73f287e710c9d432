#!/usr/bin/env bash
# Rebuild the shipped detector (models/detector.onnx + manifest, and the int8 variant) from
# scratch: render the datasets, train with the default recipe, export with parity checks,
# and score it on held-out sites. About 30 minutes on 2 free CPU cores (5 of them rendering).
#
#   bash scripts/train_detector.sh            # everything, into runs/detector and models/
#   RUN=runs/detector2 bash scripts/train_detector.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUN="${RUN:-runs/detector}"
RECIPE="${RECIPE:-default}"
# OpenMP threads that sleep instead of spinning while they wait: on a machine where other work
# runs too, spinning threads burned ~15x the CPU per step here (2 threads, 2 busy cores)
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

# the datasets the recipe names are rendered first when missing (resumable)
if [[ -f "$RUN/last.pt" ]]; then
    sitehawk-train detector --recipe "$RECIPE" --out "$RUN" --resume
else
    sitehawk-train detector --recipe "$RECIPE" --out "$RUN"
fi
sitehawk-export detector "$RUN/best.pt" --out models/detector.onnx --int8
sitehawk-train detector-eval --model models/detector.onnx --seeds 1000-1199 --num 1000 \
    --json "$RUN/eval_heldout.json"
# the same sites with helmets/vests taken off at random as in training: ~10x the bare heads
sitehawk-train detector-eval --model models/detector.onnx --seeds 1000-1199 --num 1000 \
    --attributes randomized --json "$RUN/eval_heldout_randomized.json"
