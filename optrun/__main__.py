"""``python -m optrun``: the same as the ``optrun`` command."""

from optrun.cli import main

if __name__ == "__main__":
    main()
