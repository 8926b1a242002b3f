"""``python -m empdg.chat_logs``: report on or delete opted-in chat logs (:mod:`empdg.commands.chat_logs`)."""

from empdg.commands.chat_logs import main

if __name__ == "__main__":
    main()
