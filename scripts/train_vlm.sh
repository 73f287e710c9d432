#!/usr/bin/env bash
# The shipped VLM (models/vlm): data from the virtual site, the base model pretrained on the
# general split, QLoRA on the hazard questions, the GGUF export with its parity check, and the
# held-out evaluations (docs/vlm.md, "Pipeline"). ~90 min of one core here.
#
#   bash scripts/train_vlm.sh            # RUN=runs/vlm by default; each finished step is skipped
#
# Finished steps are skipped (a dataset whose summary.json exists, a checkpoint whose config.json
# exists), so an interrupted run picks up at the step it stopped in.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUN="${RUN:-runs/vlm}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

data() { # data SPLIT NUM SEEDS OUT [extra args]
    local split="$1" num="$2" seeds="$3" out="$4"
    shift 4
    [[ -f "$RUN/$out/summary.json" ]] && return 0 # written last: the dataset is complete
    sitehawk-train dataset vqa --split "$split" --num "$num" --seeds "$seeds" --out "$RUN/$out" "$@"
}
data general 20000 0-299 general
data hazard 6000 300-599 hazard_train
data hazard 400 1000-1099 hazard_heldout
data hazard 400 1000-1099 hazard_heldout_gv --gate-views 1.0
data general 700 1000-1099 general_heldout

if [[ ! -f "$RUN/base/config.json" ]]; then
    sitehawk-train vlm-pretrain --data "$RUN/general" --out "$RUN/base" --steps 8000 --lr 1e-3 \
        --checkpoint-every 1000
fi
if [[ ! -f "$RUN/qlora/config.json" ]]; then
    sitehawk-train vlm-qlora --base "$RUN/base" --data "$RUN/hazard_train" \
        --eval-data "$RUN/hazard_heldout" --out "$RUN/qlora" --steps 3000 --lr 1e-3 --rank 16
fi
sitehawk-export vlm "$RUN/qlora" --out models/vlm --verify-data "$RUN/hazard_heldout"
sitehawk-train vlm-eval --model "$RUN/base" --data "$RUN/hazard_heldout" --json "$RUN/base.json"
sitehawk-train vlm-eval --model "$RUN/qlora" --data "$RUN/hazard_heldout" --json "$RUN/qlora.json"
sitehawk-train vlm-eval --model models/vlm --data "$RUN/hazard_heldout" --json "$RUN/gguf.json" \
    --reference "$RUN/qlora"
sitehawk-train vlm-eval --model "$RUN/base" --data "$RUN/general_heldout" \
    --json "$RUN/base_general.json"
