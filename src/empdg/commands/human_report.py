"""``empdg-human-report study_dir=DIR annotations=[FILE,...]``: the report of a blind study's annotations.

The work is :func:`empdg.evaluation.human_report.report_study`; the settings are ``conf/human_report.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from empdg.config import CONFIG_DIR
from empdg.config.human_eval_schema import HumanReportConfig
from empdg.config.hydra_errors import reports_compose_errors
from empdg.config.schema import typed
from empdg.errors import ConfigError, exit_on_user_error, user_errors_from
from empdg.evaluation.human_report import log_report, report_study
from empdg.tracking.store import absolute_sqlite_uri


@reports_compose_errors  # Hydra's own composition errors: `error: <message>`, exit 2
@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="human_report")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():  # a malformed annotation file: `error: <file>: <record>: <problem>`, exit 2
        with user_errors_from():
            settings = typed(HumanReportConfig, cfg.report, "report")
        if not cfg.study_dir:
            raise ConfigError("study_dir=DIR is required (the folder empdg-human-export wrote)")
        if not cfg.annotations:
            raise ConfigError("annotations=[FILE,...] is required (Label Studio JSON exports or filled CSVs)")
        output_dir = Path(str(cfg.paths.output_dir)).expanduser().resolve()
        paths = [Path(str(p)).expanduser() for p in cfg.annotations]
        report, files = report_study(Path(str(cfg.study_dir)).expanduser(), paths, settings, output_dir)
    print(report.markdown())
    print(f"written: {', '.join(str(f) for f in files)}")
    if cfg.log_run:
        uri = absolute_sqlite_uri(str(cfg.tracking_uri))
        run_id = log_report(uri, str(cfg.experiment_name), Path(str(cfg.study_dir)), report, files)
        print(f"MLflow run {run_id} (tag empdg.role=human_evaluation) in experiment {cfg.experiment_name} at {uri}")
