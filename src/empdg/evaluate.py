"""``python -m empdg.evaluate``: the same command as ``empdg-evaluate`` (:mod:`empdg.commands.evaluate`)."""

from empdg.commands.evaluate import main

if __name__ == "__main__":
    main()
