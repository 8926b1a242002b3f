"""Optuna study over Hydra-composed training runs: ``python sweep.py [sweep=quickstart] [training overrides]``.

Everything lives in ``empdg.sweep``; see docs/sweeps_and_comparison.md. Training overrides given
here (``data=... trainer=ddp``) reach every trial; ``sweep.*`` overrides configure the study.
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from empdg.sweep.runner import run_sweep

CONFIG_DIR = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="sweep_root")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    summary = run_sweep(cfg, str(CONFIG_DIR), list(hydra_cfg.overrides.task), Path(hydra_cfg.runtime.output_dir))
    if summary["status"] == "KILLED":
        raise SystemExit(130)  # interrupted: scripts chaining sweep.py must not carry on as if it finished
    return summary["best_value"]


if __name__ == "__main__":
    main()
