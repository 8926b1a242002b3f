#!/usr/bin/env bash
# The ablation grid of EmpDG, 3 seeds each, then the comparison table grouped by ablation.
# usage: experiments/ablations/run.sh (DATA_ROOT | --smoke) [extra Hydra overrides for every run]
set -euo pipefail
# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
if [[ "$1" == "--smoke" ]]; then
  BASE=("${SMOKE_TRAIN[@]}")
else
  BASE=(data=empathetic_dialogues "data.root=$1")
fi
shift
EXP=ablations
GRID=none,no_emotion_encoder,no_feedback,vanilla_gan,woG
"$PYTHON" "$REPO/train.py" -m model=empdg "ablation=$GRID" seed=1,2,3 "${BASE[@]}" experiment_name=$EXP "$@"
# EmpDG_woD (no critics) is adversarial=none, not an ablation file; ablation.name keeps its label no_critics
"$PYTHON" "$REPO/train.py" -m model=empdg adversarial=none ablation.name=no_critics seed=1,2,3 "${BASE[@]}" \
  experiment_name=$EXP "$@"
"$PYTHON" -m empdg.compare experiment=$EXP group_by=ablation "order=[$GRID,no_critics]"
