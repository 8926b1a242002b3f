"""``empdg-sweep [sweep=quickstart] [training overrides]``: an Optuna study over Hydra-composed training runs.

Everything lives in :mod:`empdg.sweep`; see docs/sweeps_and_comparison.md. Training overrides given
here (``data=... trainer=ddp``) reach every trial; ``sweep.*`` overrides configure the study.
Exit status: 0 done, 1 every trial of this run failed, 2 invalid sweep configuration, 130 interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from empdg.config import CONFIG_DIR
from empdg.config.hydra_errors import reports_compose_errors
from empdg.config.runtime import apply_runtime
from empdg.errors import EXIT_USER_ERROR, exit_on_user_error, format_user_error
from empdg.sweep.runner import SweepConfigError, run_sweep


@reports_compose_errors  # Hydra's own composition errors: `error: <message>`, exit 2
@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="sweep_root")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    try:
        with exit_on_user_error():  # e.g. unusable data or runtime settings: `error: <message>`, exit 2
            apply_runtime(cfg)
            summary = run_sweep(cfg, list(hydra_cfg.overrides.task), Path(hydra_cfg.runtime.output_dir))
    except SweepConfigError as error:  # a configuration mistake: its message, not a traceback
        print(format_user_error(error, "invalid sweep configuration"), file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    if summary["status"] == "KILLED":
        raise SystemExit(130)  # interrupted: scripts chaining the sweep must not carry on as if it finished
    if summary["status"] == "FAILED":
        raise SystemExit(1)  # every trial failed: a script must not take the "best" of nothing
    return summary["best_value"]
