"""``python -m empdg.chat``: the same command as ``empdg-chat`` (:mod:`empdg.commands.chat`)."""

from empdg.commands.chat import main

if __name__ == "__main__":
    main()
