"""Experiment tracking: MLflow set-up, the local fallback store, run tags and the run record.

MLflow 3 sends usage telemetry unless told not to; empdg turns it off for every command (importing
``empdg.tracking`` happens before MLflow is imported) unless the user has set
``MLFLOW_DISABLE_TELEMETRY`` themselves (``MLFLOW_DISABLE_TELEMETRY=false`` turns it back on).
"""

import os

#: MLflow 3's switch, read when ``mlflow`` is imported; setdefault: an explicit user setting wins
TELEMETRY_SWITCH = "MLFLOW_DISABLE_TELEMETRY"
os.environ.setdefault(TELEMETRY_SWITCH, "true")
