#!/usr/bin/env bash
# Screenshots of MLflow's UI as a user meets it, for docs/images/ (README, "Comparing runs in MLflow").
#
#   docs/screenshots/take.sh [OUT_DIR]        # default OUT_DIR: docs/images
#
# Trains two tiny runs on the built-in corpus into a temporary SQLite store, starts `mlflow ui` on
# 127.0.0.1, and takes with headless Chromium:
#   mlflow-run.png          the run page behind the URL the end-of-run summary prints (Overview tab)
#   mlflow-run-metrics.png  the same run's "Model metrics" tab (the order of its chart sections)
#   mlflow-compare.png      the experiment's runs in the chart view (the compare view)
#   mlflow-default-view.png the experiment without the URL parameter, in a fresh browser (MLflow's default)
# Needs the project's .venv and Chromium (Debian: `apt-get install -y chromium`, about 2 minutes).
# Everything runs offline; the temporary folder and the server are removed at the end.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
MLFLOW=${MLFLOW:-$REPO/.venv/bin/mlflow}
CHROMIUM=${CHROMIUM:-chromium}
OUT=$(mkdir -p "${1:-$REPO/docs/images}" && cd "${1:-$REPO/docs/images}" && pwd)
PORT=${PORT:-5099}
WORK=$(mktemp -d)
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MLFLOW_DISABLE_TELEMETRY=true
STORE="sqlite:///$WORK/mlflow.db"

# two tiny runs (seconds each): the run page needs one, the compare view two
TINY=$(cd "$REPO/tests" && "$PY" -c "from tiny import tiny_overrides; print(' '.join(tiny_overrides()))")
for seed in 0 1; do
  # shellcheck disable=SC2086  # TINY is a list of overrides
  (cd "$WORK" && "$PY" "$REPO/train.py" $TINY seed=$seed run_name=tiny-seed$seed \
    training.phases.generator_pretrain=20 training.phases.critic_pretrain=4 training.phases.adversarial=4 \
    trainer.val_check_interval=10 training.sample_generations=1 paths.root_dir="$WORK" \
    paths.output_dir="$WORK/run$seed" logger.tracking_uri="$STORE" >"$WORK/train$seed.log" 2>&1) \
    || { tail -30 "$WORK/train$seed.log"; exit 1; }
done
# the URL as the summary printed it (the last run's)
URL=$(grep -o 'http://127.0.0.1:5000/#/experiments/[^ ]*' "$WORK/train1.log" | tail -1)
[ -n "$URL" ] || { echo "no run URL in the training summary" >&2; exit 1; }
URL=${URL/127.0.0.1:5000/127.0.0.1:$PORT}
EXPERIMENT=$(echo "$URL" | sed 's|.*/experiments/\([^/]*\)/runs/.*|\1|')
RUN_PAGE=${URL%%\?*}

"$MLFLOW" ui --backend-store-uri "$STORE" --host 127.0.0.1 --port "$PORT" --workers 1 >"$WORK/ui.log" 2>&1 &
SERVER=$!
for _ in $(seq 180); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/" && break
  kill -0 "$SERVER" 2>/dev/null || { tail -20 "$WORK/ui.log"; exit 1; }
  sleep 1
done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/" || { echo "mlflow ui did not answer in 180 s" >&2; exit 1; }

shot() {  # shot NAME URL: a fresh browser profile each time (no remembered view switch)
  "$CHROMIUM" --headless=new --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$WORK/profile-$1" \
    --window-size=1400,1000 --virtual-time-budget=30000 --screenshot="$OUT/$1.png" "$2" >/dev/null 2>&1
  echo "$OUT/$1.png  <-  $2"
}
shot mlflow-run "$URL"
shot mlflow-run-metrics "$RUN_PAGE/model-metrics?workflowType=machine_learning"
shot mlflow-compare "http://127.0.0.1:$PORT/#/experiments/$EXPERIMENT/runs?workflowType=machine_learning&compareRunsMode=CHART"
shot mlflow-default-view "http://127.0.0.1:$PORT/#/experiments/$EXPERIMENT"
# 128 colours: a tenth of the size, the text as legible
"$PY" -c "
import sys; from PIL import Image
for p in sys.argv[1:]: Image.open(p).convert('RGB').quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(p, optimize=True)
" "$OUT"/mlflow-run.png "$OUT"/mlflow-run-metrics.png "$OUT"/mlflow-compare.png "$OUT"/mlflow-default-view.png
