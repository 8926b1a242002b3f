"""``python -m empdg.human_export``: the same command as ``empdg-human-export`` (:mod:`empdg.commands.human_export`)."""

from empdg.commands.human_export import main

if __name__ == "__main__":
    main()
