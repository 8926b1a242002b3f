"""``python -m empdg.human_report``: the same command as ``empdg-human-report`` (:mod:`empdg.commands.human_report`)."""

from empdg.commands.human_report import main

if __name__ == "__main__":
    main()
