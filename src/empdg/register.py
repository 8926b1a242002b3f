"""``python -m empdg.register``: the same command as ``empdg-register`` (:mod:`empdg.commands.register`)."""

from empdg.commands.register import main

if __name__ == "__main__":
    main()
