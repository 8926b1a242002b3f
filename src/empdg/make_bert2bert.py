"""``python -m empdg.make_bert2bert``: see :mod:`empdg.commands.make_bert2bert`."""

from empdg.commands.make_bert2bert import main

if __name__ == "__main__":
    main()
