"""``python train.py [experiment=quickstart] [model=...] [key=value ...]``: the checkout's ``empdg-train``."""

from empdg.commands.train import main

if __name__ == "__main__":
    main()
