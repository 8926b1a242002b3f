"""``python -m empdg.make_tiny_pretrained``: see :mod:`empdg.commands.make_tiny_pretrained`."""

from empdg.commands.make_tiny_pretrained import main

if __name__ == "__main__":
    main()
