"""``python -m empdg.compare experiment=NAME [group_by=ablation] [metrics=[val/ppl,val/emotion_acc]]``.

Thin Hydra entry; the logic is in :mod:`empdg.cli.compare`. The config is the repository's
``conf/compare.yaml`` (the package is installed in editable mode from the checkout).
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from empdg.cli.compare import run_compare


@hydra.main(version_base="1.3", config_path="../../conf", config_name="compare")
def main(cfg: DictConfig) -> None:
    run_compare(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
