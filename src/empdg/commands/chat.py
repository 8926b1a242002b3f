"""``empdg-chat ckpt_path=PATH [chat.rerank=8 chat.verbose=true] [chat.log.enabled=true]``: talk to a trained model.

The session is :mod:`empdg.serving.chat_session`, the loop :mod:`empdg.serving.terminal`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from empdg.config import CONFIG_DIR
from empdg.config.hydra_errors import reports_compose_errors
from empdg.config.runtime import apply_runtime
from empdg.errors import exit_on_user_error, user_errors_from
from empdg.serving.chat_log import ChatLog
from empdg.serving.terminal import build_session, chat_loop, make_streams_forgiving


@reports_compose_errors  # Hydra's own composition errors: `error: <message>`, exit 2
@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="chat")
def main(cfg: DictConfig) -> None:
    make_streams_forgiving()
    with exit_on_user_error():  # configuration mistakes: `error: <message>`, exit 2, no traceback
        apply_runtime(cfg)
        session = build_session(cfg)
        log = None
        if cfg.chat.log.enabled:  # off by default: then nothing about the conversation is written anywhere
            with user_errors_from():
                log = ChatLog.open(cfg.chat.log)
    chat_loop(session, bool(cfg.chat.verbose), log=log)
