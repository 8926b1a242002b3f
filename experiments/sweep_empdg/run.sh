#!/usr/bin/env bash
# Optuna study over EmpDG's learning rates, adversarial game and regularisation (conf/sweep/empdg.yaml),
# then a comparison of the trials grouped by a swept parameter.
# usage: experiments/sweep_empdg/run.sh (DATA_ROOT | --smoke) [extra Hydra overrides: sweep.* or training]
set -euo pipefail
# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
if [[ "$1" == "--smoke" ]]; then
  # the small quickstart study (every phase, tiny budgets) on the built-in data
  STUDY=sweep_empdg_smoke; EXP=quickstart
  BASE=(sweep=quickstart sweep.study_name=$STUDY sweep.n_trials=6)
  GROUP=batch_size
else
  STUDY=sweep_empdg; EXP=sweep_empdg
  BASE=(sweep=empdg sweep.study_name=$STUDY data=empathetic_dialogues "data.root=$1" experiment_name=$EXP)
  GROUP=n_critic
fi
shift
"$PYTHON" "$REPO/sweep.py" "${BASE[@]}" "$@"
# completed trials only (pruned ones are KILLED, failed ones FAILED); compare leaves trials out unless asked
"$PYTHON" -m empdg.compare experiment=$EXP group_by=$GROUP "filter=\"tags.sweep = '$STUDY'\"" statuses=[FINISHED] \
  compare.include_sweep_trials=true
