"""``python -m cowdb``: the same command line as the ``cowdb`` script."""
from cowdb.cli import main

if __name__ == "__main__":
    main()
