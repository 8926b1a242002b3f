"""``python -m empdg.train``: the same command as ``empdg-train`` (:mod:`empdg.commands.train`)."""

from empdg.commands.train import main

if __name__ == "__main__":
    main()
