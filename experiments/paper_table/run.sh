#!/usr/bin/env bash
# Paper table: Transformer, EmoPrepend, EmpDG_woD, EmpDG_woG, EmpDG; 3 seeds each; then the table.
# usage: experiments/paper_table/run.sh (DATA_ROOT | --smoke) [extra Hydra overrides for every run]
# Run it from the folder that should hold mlruns/ (the repository root is fine).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# the project's virtualenv (make setup) unless PYTHON says otherwise
if [[ -z "${PYTHON:-}" ]]; then PYTHON=python; [[ -x "$REPO/.venv/bin/python" ]] && PYTHON="$REPO/.venv/bin/python"; fi
[[ $# -ge 1 ]] || { echo "usage: $0 (DATA_ROOT | --smoke) [hydra overrides...]" >&2; exit 2; }
if [[ "$1" == "--smoke" ]]; then
  # built-in demonstration data, tiny budgets: checks the pipeline in minutes, numbers mean nothing
  BASE=(experiment=quickstart training.phases.generator_pretrain=30 training.phases.critic_pretrain=5
        training.phases.adversarial=5 trainer.val_check_interval=15 training.sample_generations=0
        trainer.enable_progress_bar=false)
else
  # the official EmpatheticDialogues files in DATA_ROOT; everything else is the paper's setting (conf/)
  BASE=(data=empathetic_dialogues "data.root=$1" optim=noam)
fi
shift
EXP=paper_table
SEEDS=seed=1,2,3
# one row each: run names are ${model.name}-${ablation.name}
ROWS=("model=transformer" "model=emoprepend" "model=empdg ablation=no_critics" "ablation=woG"
      "model=empdg ablation=none")
for row in "${ROWS[@]}"; do
  # shellcheck disable=SC2086  # a row is several overrides
  "$PYTHON" "$REPO/train.py" -m $row "${BASE[@]}" experiment_name=$EXP $SEEDS "$@"
done
"$PYTHON" -m empdg.compare experiment=$EXP group_by=run_name metrics=[val/ppl,val/emotion_acc] \
  "order=[transformer-none,emoprepend-none,empdg-no_critics,emoprepend-woG,empdg-none]"
