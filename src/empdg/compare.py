"""``python -m empdg.compare``: the same command as ``empdg-compare`` (:mod:`empdg.commands.compare`)."""

from empdg.commands.compare import main

if __name__ == "__main__":
    main()
