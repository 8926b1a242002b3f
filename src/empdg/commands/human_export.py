"""``empdg-human-export systems={A: FILE, B: FILE}``: a blind human evaluation of two or more systems.

The work is :func:`empdg.evaluation.human_export.export_study`; the settings are ``conf/human_export.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from empdg.config import CONFIG_DIR
from empdg.config.human_eval_schema import HumanStudyConfig
from empdg.config.hydra_errors import reports_compose_errors
from empdg.config.schema import typed
from empdg.errors import exit_on_user_error, user_errors_from
from empdg.evaluation.human_export import export_study


@reports_compose_errors  # Hydra's own composition errors: `error: <message>`, exit 2
@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="human_export")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():  # a missing file, one system, nothing shared: `error: <message>`, exit 2
        with user_errors_from():
            settings = typed(HumanStudyConfig, cfg.study, "study")
        systems = cfg.systems
        if isinstance(systems, DictConfig):
            systems = OmegaConf.to_container(systems, resolve=True)
        output_dir = Path(str(cfg.paths.output_dir)).expanduser().resolve()
        manifest, files = export_study(systems, settings, output_dir)
    kinds = [task["kind"] for task in manifest["tasks"]]
    print(
        f"study of {len(manifest['systems'])} systems on {len(manifest['dialogues'])} dialogues: "
        f"{kinds.count('pairwise')} pairwise tasks + {kinds.count('check')} attention checks, "
        f"{kinds.count('rating')} rating tasks + {kinds.count('rating_check')} attention checks\n"
        f"for the annotators: {output_dir / 'label_studio'} (tasks + labelling configs), {output_dir / 'csv'}\n"
        f"keep apart (the report reads them): {output_dir / 'study.json'}, {output_dir / 'system_key.json'}"
    )
