#!/usr/bin/env bash
# Paper table: Transformer, EmoPrepend, MoEL, EmpDG_woD, EmpDG_woG, EmpDG; 3 seeds each; then the table.
# usage: experiments/paper_table/run.sh (DATA_ROOT | --smoke) [extra Hydra overrides for every run]
# Run it from the folder that should hold mlruns/ (the repository root is fine).
set -euo pipefail
# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
if [[ "$1" == "--smoke" ]]; then
  BASE=("${SMOKE_TRAIN[@]}")
else
  # the official EmpatheticDialogues files in DATA_ROOT; everything else is the paper's setting (conf/)
  BASE=(data=empathetic_dialogues "data.root=$1" optim=noam)
fi
shift
EXP=paper_table
SEEDS=seed=1,2,3
# one row each: run names are ${model.name}-${ablation.name} (no critics: adversarial=none, labelled no_critics)
ROWS=("model=transformer" "model=emoprepend" "model=moel adversarial=none ablation.name=no_critics"
      "model=empdg adversarial=none ablation.name=no_critics"
      "ablation=woG"
      "model=empdg ablation=none")
for row in "${ROWS[@]}"; do
  # shellcheck disable=SC2086  # a row is several overrides
  "$PYTHON" "$REPO/train.py" -m $row "${BASE[@]}" experiment_name=$EXP $SEEDS "$@"
done
"$PYTHON" -m empdg.compare experiment=$EXP group_by=run_name metrics=[val/ppl,val/emotion_acc] \
  "order=[transformer-none,emoprepend-none,moel-no_critics,empdg-no_critics,emoprepend-woG,empdg-none]"
