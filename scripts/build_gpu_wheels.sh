#!/usr/bin/env bash
# Build .whl/: the wheels the GPU machine may lack (it has torch, Lightning, transformers, peft, torchmetrics,
# sacrebleu, sentence-transformers, but no Hydra, OmegaConf, MLflow, ...), for its Python 3.12 on x86-64 Linux,
# at the versions this checkout's .venv runs (the tests here passed with them). scripts/gpu_check.py installs
# on the device only those whose distribution is missing there. See docs/gpu.md.
#
#   bash scripts/build_gpu_wheels.sh            # PY=.venv/bin/python  WHEELS_DIR=.whl
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${WHEELS_DIR:-.whl}
LIMIT_MIB=${LIMIT_MIB:-45}  # the device call carries the working tree and this folder: 64 MiB in all

# not here, because the GPU machine has them (transformers needs PyYAML and regex; sentence-transformers
# Pillow, scikit-learn and so joblib): each would cost space the 64 MiB carry limit does not have
PACKAGES=(
  # configuration
  hydra-core omegaconf antlr4-python3-runtime
  # tracking and the served model: MLflow's skinny client (no UI, no SQL server; it contains mlflow-tracing)
  mlflow-skinny databricks-sdk google-auth pyasn1 pyasn1-modules rsa cachetools
  opentelemetry-api opentelemetry-sdk opentelemetry-proto opentelemetry-semantic-conventions protobuf
  sqlparse cloudpickle importlib_metadata zipp click gitpython gitdb smmap fastapi starlette annotated-doc
  uvicorn h11 python-dotenv
  # the data files' schemas
  pydantic pydantic_core annotated-types typing-inspection typing_extensions
  # text processing
  nltk nrclex textblob vaderSentiment
  # the served model's input frame, evaluation reports' plots
  pandas python-dateutil six tzdata narwhals matplotlib cycler kiwisolver fonttools contourpy pyparsing
  # Lightning under its pytorch_lightning name (the machine may have only the unified `lightning` package)
  pytorch-lightning lightning-utilities
  # the GPU tests themselves
  pytest pluggy iniconfig pygments
)

mkdir -p "$OUT"
for name in "${PACKAGES[@]}"; do
  # pinned to this checkout's version where .venv has it; else the newest (a dependency the project never imports)
  spec=$("$PY" -c "import importlib.metadata as m, sys; print(f'{sys.argv[1]}=={m.version(sys.argv[1])}')" "$name" \
    2>/dev/null || echo "$name")
  if ! "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$OUT" "$spec" 2>/dev/null; then  # its "no matching distribution" is answered below
    # no wheel published (antlr4-python3-runtime 4.9.3 is an sdist): build one, which must be pure Python
    "$PY" -m pip wheel -q --no-deps --no-binary=:all: -w "$OUT" "$spec"
  fi
done

if ls "$OUT"/*.whl | grep -v -E -- '-(py3|py2\.py3|cp312|cp312-abi3|cp38-abi3|cp39-abi3|cp37-abi3|cp310-abi3|cp311-abi3)-' \
    | grep -v -- '-none-any\.whl$'; then
  echo "error: the wheels above are not for Python 3.12; delete them and rerun" >&2
  exit 1
fi
size_kib=$(du -sk "$OUT" | cut -f1)
echo "$(ls "$OUT"/*.whl | wc -l) wheels in $OUT: $((size_kib / 1024)) MiB"
if (( size_kib > LIMIT_MIB * 1024 )); then
  echo "error: $OUT is over ${LIMIT_MIB} MiB; drop what the GPU machine has" >&2
  exit 1
fi
