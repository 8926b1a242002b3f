"""``python -m empdg.chat_logs [action=report|delete] [session=ID] [chat.log.dir=DIR]``: the opted-in chat logs.

``report`` prints sessions, conversation-turns per session (CPS), the fallback rate and each session's emotion
trajectory (:mod:`empdg.serving.chat_log`); ``delete`` removes every record of one session. Both first delete
the records older than ``chat.log.retention_days``, as the chat does at its start.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from empdg.config import CONFIG_DIR
from empdg.config.hydra_errors import reports_compose_errors
from empdg.errors import ConfigError, exit_on_user_error, user_errors_from
from empdg.serving.chat_log import ChatLog, report, summarize

ACTIONS = ("report", "delete")


@reports_compose_errors  # Hydra's own composition errors: `error: <message>`, exit 2
@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="chat_logs")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        if cfg.action not in ACTIONS:
            raise ConfigError(f"action={cfg.action!r}: choose one of {ACTIONS}")
        if cfg.action == "delete" and not cfg.session:
            raise ConfigError("action=delete needs session=ID (the id the chat printed when it started)")
        with user_errors_from():
            log = ChatLog.open(cfg.chat.log, create=False)
            if cfg.action == "delete":
                print(f"deleted {log.delete(str(cfg.session))} record(s) of session {cfg.session} from {log.folder}")
            else:
                print(report(summarize(log.sessions()), log.folder))
        if log.expired:
            print(f"({log.expired} record(s) older than chat.log.retention_days={cfg.chat.log.retention_days} deleted)")
