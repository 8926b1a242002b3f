#!/usr/bin/env bash
# The GPU check (docs/gpu.md): on the GPU machine, `bash scripts/gpu_check.sh` with the wheels folder .whl/
# carried along; results in $GPU_CHECK_OUT (else $OUT, else ./gpu_check_out). Dry run on CPU:
#   PYTHON=.venv/bin/python bash scripts/gpu_check.sh --device cpu --quick
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" scripts/gpu_check.py "$@"
