"""``python sweep.py [sweep=quickstart] [training overrides]``: the checkout's ``empdg-sweep``."""

from empdg.commands.sweep import main

if __name__ == "__main__":
    main()
