# Sourced by every experiments/*/run.sh: repository root, Python, argument check, smoke budgets.
# shellcheck shell=bash
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# the project's virtualenv (make setup) unless PYTHON says otherwise
if [[ -z "${PYTHON:-}" ]]; then PYTHON=python; [[ -x "$REPO/.venv/bin/python" ]] && PYTHON="$REPO/.venv/bin/python"; fi
[[ $# -ge 1 ]] || { echo "usage: $0 (DATA_ROOT | --smoke) [hydra overrides...]" >&2; exit 2; }
# built-in demonstration data, tiny budgets: checks a study's pipeline in minutes, numbers mean nothing
SMOKE_TRAIN=(experiment=quickstart training.phases.generator_pretrain=30 training.phases.critic_pretrain=5
             training.phases.adversarial=5 trainer.val_check_interval=15 training.sample_generations=0
             trainer.enable_progress_bar=false)
