#!/usr/bin/env bash
# The ablation grid of EmpDG, 3 seeds each, then the comparison table grouped by ablation.
# usage: experiments/ablations/run.sh (DATA_ROOT | --smoke) [extra Hydra overrides for every run]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# the project's virtualenv (make setup) unless PYTHON says otherwise
if [[ -z "${PYTHON:-}" ]]; then PYTHON=python; [[ -x "$REPO/.venv/bin/python" ]] && PYTHON="$REPO/.venv/bin/python"; fi
[[ $# -ge 1 ]] || { echo "usage: $0 (DATA_ROOT | --smoke) [hydra overrides...]" >&2; exit 2; }
if [[ "$1" == "--smoke" ]]; then
  BASE=(experiment=quickstart training.phases.generator_pretrain=30 training.phases.critic_pretrain=5
        training.phases.adversarial=5 trainer.val_check_interval=15 training.sample_generations=0
        trainer.enable_progress_bar=false)
else
  BASE=(data=empathetic_dialogues "data.root=$1")
fi
shift
EXP=ablations
GRID=none,no_emotion_encoder,no_feedback,vanilla_gan,no_critics,woG
"$PYTHON" "$REPO/train.py" -m model=empdg "ablation=$GRID" seed=1,2,3 "${BASE[@]}" experiment_name=$EXP "$@"
"$PYTHON" -m empdg.compare experiment=$EXP group_by=ablation "order=[$GRID]"
