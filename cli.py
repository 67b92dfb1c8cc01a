"""The `patsearch` command from a checkout (`python cli.py ...`); the command itself is :mod:`patsearch.cli`."""
from patsearch.cli import app, main  # noqa: F401

if __name__ == "__main__":
    main()
